"""Lambda handlers in the shape of AWS's own samples and blueprints, and a
boto3 client for a test server."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

import boto3
from botocore.config import Config

from tests.helpers import Server

# The "hello-world-python" blueprint: prints the event's values, echoes a key.
HELLO_WORLD = """
import json

print('Loading function')


def lambda_handler(event, context):
    print("value1 = " + event['key1'])
    print("value2 = " + event['key2'])
    return event['key1']  # Echo back the first key value
"""

# An echo of the whole event and context, as debugging handlers do.
ECHO_EVENT = """
import json
import os


def lambda_handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({
            "event": event,
            "context": {
                "aws_request_id": context.aws_request_id,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "invoked_function_arn": context.invoked_function_arn,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
                "client_context": None if context.client_context is None else context.client_context.custom,
                "remaining_ms": context.get_remaining_time_in_millis(),
            },
            "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDA_", "GREETING"))},
        }),
    }
"""

# The "microservice-http-endpoint" blueprint's shape: a JSON API over HTTP
# methods, answering with a string statusCode as API Gateway samples do.
JSON_API = """
import json

ITEMS = {"1": {"id": "1", "name": "apple"}}


def respond(err, res=None):
    return {
        'statusCode': '400' if err else '200',
        'body': str(err) if err else json.dumps(res),
        'headers': {'Content-Type': 'application/json'},
        'cookies': ['session=abc; HttpOnly'],
    }


def lambda_handler(event, context):
    operations = {
        'GET': lambda params, body: ITEMS.get((params or {}).get('id', ''), {}),
        'POST': lambda params, body: {**json.loads(body), 'created': True},
    }
    method = event['requestContext']['http']['method']
    if method in operations:
        return respond(None, operations[method](event.get('queryStringParameters'), event.get('body')))
    return respond(ValueError('Unsupported method "{}"'.format(method)))
"""

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

# A binary answer: an image, base64 with isBase64Encoded, as the samples for binary media types do.
IMAGE = f"""
import base64

PNG = base64.b64decode({base64.b64encode(PNG).decode()!r})


def lambda_handler(event, context):
    return {{
        "statusCode": 200,
        "headers": {{"Content-Type": "image/png"}},
        "body": base64.b64encode(PNG).decode("utf-8"),
        "isBase64Encoded": True,
    }}
"""

# The error-handling samples: a custom exception the handler raises.
RAISES = """
class CustomError(Exception):
    pass


def lambda_handler(event, context):
    print("about to fail")
    raise CustomError("Something went wrong")
"""


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def lambda_client(server: Server, key: str = "AKIDTEST", secret: str = "secret", **config: Any) -> Any:
    """boto3's Lambda client for `server`, without retries (a 429 is seen as it is)."""
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )
