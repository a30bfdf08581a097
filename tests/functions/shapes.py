"""Returns each shape of value the return table of docs/HANDLER.md lists, by ?kind=."""


def handle(event, context):
    kind = event.query.get("kind", "none")
    return {
        "none": None,
        "str": "text",
        "bytes": b"\x00\x01binary",
        "dict": {"a": 1},
        "list": [1, 2],
        "proxy": {"statusCode": 201, "headers": {"X-Thing": "yes"}, "body": {"made": True}},
        "proxy_text": {"statusCode": 418, "body": "teapot", "headers": {"Content-Type": "text/x-tea"}},
    }[kind]
