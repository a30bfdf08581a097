"""The AWS Lambda API under /2015-03-31/ (docs/LAMBDA.md): enough of it that
`boto3.client("lambda", endpoint_url=...)` works against this server."""
