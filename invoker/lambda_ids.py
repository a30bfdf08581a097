"""The names AWS Lambda gives a function, made the same way on both sides of
the sandbox: its ARN, in the Lambda API's answers and in a handler's context."""

from __future__ import annotations

# Functions belong to no AWS account here: the ARNs carry this placeholder.
ACCOUNT_ID = "000000000000"


def function_arn(region: str, name: str, qualifier: str | None = None) -> str:
    """`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`."""
    arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn
