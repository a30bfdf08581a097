"""The one error hierarchy of the runtime. Each error knows its HTTP status;
gateway/errors.py is the one place that turns them into responses."""

from __future__ import annotations


class FaasError(Exception):
    status = 500
    headers: dict[str, str] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(FaasError):
    status = 400


class Unauthorized(FaasError):
    status = 401


class NotFound(FaasError):
    status = 404


class PayloadTooLarge(FaasError):
    status = 413


class TooManyRequests(FaasError):
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class FunctionError(FaasError):
    """The function itself failed: its init raised or it has no entry."""

    status = 500


class SandboxFailed(FaasError):
    """The sandbox died: out of memory, crashed, exited or broke the protocol."""

    status = 502


class Unavailable(FaasError):
    status = 503


class CallTimeout(FaasError):
    status = 504
