"""Validation of what versions, aliases and secrets requests carry: alias
names and bodies, rollback bodies, secret names and values.

Pure: no I/O. Every rejection is a BadRequest with a precise message that
never quotes a secret's value.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from .errors import BadRequest
from .model import Alias

# Lambda's rule: letters, digits, '-' and '_', not all digits (a number is a version).
ALIAS_NAME_RE = re.compile(r"^(?![0-9]+$)[A-Za-z0-9_-]{1,64}$")
# A file name in /var/openfaas/secrets: no '/', no leading '.'.
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_SECRETS_PER_FUNCTION = 32
# As AWS Secrets Manager: 64 KiB a value.
MAX_SECRET_BYTES = 64 * 1024
MAX_VERSION = 2**31 - 1


def validate_alias_name(name: Any) -> str:
    if not isinstance(name, str) or not ALIAS_NAME_RE.match(name):
        raise BadRequest(
            f"invalid alias name {name!r}: use 1-64 letters, digits, '-' and '_', not only digits"
        )
    return name


def validate_secret_name(name: Any) -> str:
    if not isinstance(name, str) or not SECRET_NAME_RE.match(name):
        raise BadRequest(
            f"invalid secret name {name!r}: use 1-63 letters, digits, '.', '-' and '_', "
            "starting with a letter or digit"
        )
    return name


def validate_secret_names(raw: Any) -> tuple[str, ...]:
    """The deploy field `secrets`: distinct names, sorted (their order means nothing)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadRequest("secrets must be a list of secret names")
    names = [validate_secret_name(name) for name in raw]
    if len(set(names)) != len(names):
        raise BadRequest("secrets names a secret twice")
    if len(names) > MAX_SECRETS_PER_FUNCTION:
        raise BadRequest(f"too many secrets: {len(names)} (at most {MAX_SECRETS_PER_FUNCTION})")
    return tuple(sorted(names))


def _version(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise BadRequest(f"{what} must be a version number (an integer from 1), got {value!r}")
    return value


def _only(body: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return body


def parse_alias(name: str, body: Any) -> Alias:
    """`{"version": 3}` or `{"version": 3, "weights": {"4": 0.1}}`: 10% of the calls to 4."""
    body = _only(body, {"version", "weights"}, "an alias")
    if "version" not in body:
        raise BadRequest("an alias needs version: the version it points at")
    version = _version(body["version"], "version")
    weights = body.get("weights") or {}
    if not isinstance(weights, dict):
        raise BadRequest('weights must be an object of version to share, e.g. {"4": 0.1}')
    if len(weights) > 1:
        raise BadRequest("weights may name one other version: an alias splits calls between two")
    if not weights:
        return Alias(name, version)
    (key, weight), *_ = weights.items()
    if not isinstance(key, str) or not key.isascii() or not key.isdigit():
        raise BadRequest(f"weights must be keyed by version numbers, got {key!r}")
    canary = _version(int(key), "a weights key")
    if canary == version:
        raise BadRequest(f"weights name version {canary}, which the alias points at already")
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or not 0 <= weight <= 1
    ):
        raise BadRequest(f"the weight of version {canary} must be a number from 0 to 1, got {weight!r}")
    return Alias(name, version, canary, float(weight))


def parse_rollback(body: Any) -> int | None:
    """`{"to": N}`, or `{}`: the version before the one live points at."""
    body = _only(body if body is not None else {}, {"to"}, "a rollback")
    to = body.get("to")
    return None if to is None else _version(to, "to")


def parse_secret(body: Any) -> tuple[str, bytes]:
    """`{"name": N, "value": TEXT}` or `{"name": N, "value_base64": B64}`."""
    body = _only(body, {"name", "value", "value_base64"}, "a secret")
    name = validate_secret_name(body.get("name"))
    if ("value" in body) == ("value_base64" in body):
        raise BadRequest("a secret needs exactly one of value (text) and value_base64")
    if "value" in body:
        text = body["value"]
        if not isinstance(text, str):
            raise BadRequest("value must be a string (value_base64 for bytes)")
        try:
            value = text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("value must be valid UTF-8 text (value_base64 for bytes)") from None
    else:
        encoded = body["value_base64"]
        if not isinstance(encoded, str):
            raise BadRequest("value_base64 must be a base64 string")
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("value_base64 is not valid base64") from None
    if len(value) > MAX_SECRET_BYTES:
        raise BadRequest(f"a secret's value is at most {MAX_SECRET_BYTES} bytes, got {len(value)}")
    return name, value
