"""The Lambda API's error shape, in one place: the runtime's errors (and the
API's own) become a status, an `x-amzn-ErrorType` header and a JSON body
`{"Type", "Message"}`, which botocore turns into `client.exceptions.<Type>`.
Errors of calling a function (a timeout, a crash) are not these: Invoke
answers them as function errors (gateway/lambda_api/invoke.py)."""

from __future__ import annotations

import logging

from aiohttp import web

from invoker.errors import (
    BadRequest,
    Conflict,
    FaasError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
)

from ..errors import Handler, http_status

log = logging.getLogger("faas.lambda")


class InvalidRequestContent(BadRequest):
    """An Invoke payload that is not JSON."""


class MissingAuthenticationToken(FaasError):
    """A request without a SigV4 signature, on a server that requires one."""


class UnrecognizedClient(FaasError):
    """A signature made with an access key this server does not know."""


class InvalidSignature(FaasError):
    """A signature that does not match the request, or that is too old."""


class UnsupportedOperation(BadRequest):
    """What the Lambda API has but this server does not do."""


# The kind of each error, most specific first; a kind not here is a ServiceException.
LAMBDA_ERRORS: tuple[tuple[type[FaasError], int, str], ...] = (
    (InvalidRequestContent, 400, "InvalidRequestContentException"),
    (BadRequest, 400, "InvalidParameterValueException"),
    (MissingAuthenticationToken, 403, "MissingAuthenticationTokenException"),
    (UnrecognizedClient, 403, "UnrecognizedClientException"),
    (InvalidSignature, 403, "InvalidSignatureException"),
    (NotFound, 404, "ResourceNotFoundException"),
    (Conflict, 409, "ResourceConflictException"),
    (PayloadTooLarge, 413, "RequestTooLargeException"),
    (TooManyRequests, 429, "TooManyRequestsException"),
    (Unavailable, 503, "ServiceException"),
)
# aiohttp's own answers (no such route, wrong method, a body over client_max_size).
HTTP_ERRORS = {
    404: "ResourceNotFoundException",
    405: "InvalidParameterValueException",
    413: "RequestTooLargeException",
}


def lambda_error(exc: FaasError) -> tuple[int, str]:
    for kind, status, name in LAMBDA_ERRORS:
        if isinstance(exc, kind):
            return status, name
    status = http_status(exc)
    return status, "InvalidParameterValueException" if status < 500 else "ServiceException"


def error_response(status: int, error_type: str, message: str, request_id: str) -> web.Response:
    return web.json_response(
        {"Type": "User" if status < 500 else "Service", "Message": message},
        status=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": request_id},
    )


@web.middleware
async def lambda_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id: str = request["call_id"]
    try:
        response = await handler(request)
    except FaasError as exc:
        status, error_type = lambda_error(exc)
        return error_response(status, error_type, exc.message, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_type = HTTP_ERRORS.get(exc.status, "ServiceException")
        return error_response(exc.status, error_type, exc.reason, request_id)
    if not response.prepared:
        response.headers.setdefault("x-amzn-RequestId", request_id)
    return response
