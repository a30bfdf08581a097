"""Checking AWS Signature Version 4 on Lambda API requests.

The signature is recomputed with botocore's own signer (the code boto3
signs with) over the request as it arrived: its method, raw path and query,
the headers the client says it signed, and the body. The access key must
be the server's `lambda_access_key_id`, the service `lambda`, the time
within 15 minutes of ours, and a signed X-Amz-Content-SHA256 must be the
body's; anything else is a 403 in Lambda's error shape.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .errors import InvalidSignature, MissingAuthenticationToken, UnrecognizedClient

MAX_SKEW_S = 15 * 60
SERVICE = "lambda"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<headers>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def verify(
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    secret_access_key: str,
    now: datetime | None = None,
) -> None:
    """Return if the request is signed with this key pair; raise the 403 that says why not.

    `headers`: case-insensitive, as received (aiohttp's request.headers);
    `raw_path`: the path and query string exactly as sent."""
    authorization = headers.get("Authorization")
    if not authorization:
        raise MissingAuthenticationToken("the Lambda API of this server needs requests signed with AWS SigV4")
    parsed = AUTHORIZATION.fullmatch(authorization.strip())
    if parsed is None:
        raise InvalidSignature("the Authorization header is not an AWS4-HMAC-SHA256 signature")
    if not hmac.compare_digest(parsed["key"].encode(), access_key_id.encode()):
        raise UnrecognizedClient("The security token included in the request is invalid.")
    if parsed["service"] != SERVICE:
        raise InvalidSignature(f"the credential scope names service {parsed['service']!r}, not {SERVICE!r}")
    amz_date = headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidSignature("X-Amz-Date is missing or not of the form 20260101T000000Z") from None
    if amz_date[:8] != parsed["date"]:
        raise InvalidSignature("the credential scope's date is not X-Amz-Date's")
    now = now or datetime.now(UTC)
    if abs((now - signed_at).total_seconds()) > MAX_SKEW_S:
        raise InvalidSignature(
            f"Signature expired: {amz_date} is more than 15 minutes from the server's time "
            f"{now.strftime(SIGV4_TIMESTAMP)}"
        )
    content_sha256 = headers.get("X-Amz-Content-SHA256")
    if content_sha256 is not None and content_sha256 != hashlib.sha256(body).hexdigest():
        raise InvalidSignature("X-Amz-Content-SHA256 is not the hash of the body")
    names = parsed["headers"].split(";")
    if "host" not in names:
        raise InvalidSignature("the Host header must be signed")
    missing = [name for name in names if name not in headers]
    if missing:
        raise InvalidSignature(f"signed headers missing from the request: {', '.join(missing)}")
    signed = {
        name: ",".join(headers.getall(name)) if hasattr(headers, "getall") else headers[name]
        for name in names
    }
    request = AWSRequest(method=method, url=f"http://{headers['Host']}{raw_path}", headers=signed, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key_id, secret_access_key), SERVICE, parsed["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, parsed["signature"]):
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
