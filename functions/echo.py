"""Echo the request back as JSON: method, path, query, headers and body."""

import base64


def handle(event, context):
    try:
        body = event.body.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        body = base64.b64encode(event.body).decode("ascii")
        encoding = "base64"
    return {
        "method": event.method,
        "path": event.path,
        "query": dict(event.query),
        "headers": dict(event.headers),
        "body": body,
        "body_encoding": encoding,
        "request_id": context.request_id,
    }
