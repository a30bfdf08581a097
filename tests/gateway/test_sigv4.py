"""SigV4 checks of the Lambda API, against requests signed the way boto3
signs them (botocore's signer): right key pair, wrong secret, unknown key,
changed body, stale or future time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from gateway.lambda_api.errors import InvalidSignature, MissingAuthenticationToken, UnrecognizedClient
from gateway.lambda_api.sigv4 import verify

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
HOST = "127.0.0.1:8080"
PATH = "/2015-03-31/functions/my-fn%3Alive/invocations?Qualifier=live&b=2&a=1"
SIGNED_AT = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def signed(
    body: bytes = b'{"a": 1}', secret: str = SECRET, key: str = KEY, at: datetime = SIGNED_AT
) -> CIMultiDict[str]:
    request = AWSRequest(
        method="POST", url=f"http://{HOST}{PATH}", data=body, headers={"X-Amz-Log-Type": "Tail"}
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(request)
    headers = CIMultiDict((k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items())
    headers["Host"] = HOST
    headers["User-Agent"] = "Boto3/1.34 (not signed)"
    return headers


def check(headers: CIMultiDict[str], body: bytes = b'{"a": 1}', now: datetime = SIGNED_AT) -> None:
    verify("POST", PATH, headers, body, KEY, SECRET, now=now)


def test_a_request_signed_with_the_key_pair_passes() -> None:
    check(signed())
    check(signed(body=b""), body=b"")


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        check(signed(secret="not-the-secret"))


def test_an_unknown_key_is_refused() -> None:
    with pytest.raises(UnrecognizedClient):
        check(signed(key="AKIDOTHER"))


def test_a_changed_body_or_header_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        check(signed(), body=b'{"a": 2}')
    headers = signed()
    headers["X-Amz-Log-Type"] = "None"
    with pytest.raises(InvalidSignature, match="does not match"):
        check(headers)


def test_a_body_hash_header_that_lies_is_refused() -> None:
    headers = signed()
    headers["X-Amz-Content-SHA256"] = "0" * 64
    with pytest.raises(InvalidSignature, match="hash of the body"):
        check(headers)


@pytest.mark.parametrize("minutes", [16, -16])
def test_a_signature_more_than_15_minutes_off_is_refused(minutes: int) -> None:
    with pytest.raises(InvalidSignature, match="expired"):
        check(signed(), now=SIGNED_AT + timedelta(minutes=minutes))
    check(signed(), now=SIGNED_AT + timedelta(minutes=minutes * 14 // 16))


def test_no_signature_is_refused() -> None:
    with pytest.raises(MissingAuthenticationToken):
        check(CIMultiDict({"Host": HOST}))
    with pytest.raises(InvalidSignature, match="not an AWS4-HMAC-SHA256"):
        check(CIMultiDict({"Host": HOST, "Authorization": "Bearer token"}))
