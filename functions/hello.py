"""The smallest function: GET /function/hello -> "Hello, world!"."""


def handle(event, context):
    name = event.query.get("name", "world")
    return f"Hello, {name}!"
