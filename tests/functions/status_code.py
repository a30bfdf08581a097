"""Answers with the status ?code= names (docs/HANDLER.md: only 200 to 599 are allowed)."""


def handle(event, context):
    return {"statusCode": int(event.query.get("code", "200")), "body": "as asked"}
