"""What the Lambda API says and takes, in its own terms: a function record
as Lambda's FunctionConfiguration, a function name as Lambda accepts it
(a name, `name:qualifier`, or an ARN), a zip as deploy files, and Lambda's
settings as the fields of a deploy body (invoker/fields.py)."""

from __future__ import annotations

import base64
import io
import math
import sys
import zipfile
from datetime import UTC, datetime
from typing import Any

from invoker.errors import BadRequest, PayloadTooLarge
from invoker.fields import DEPLOY_FIELDS
from invoker.lambda_ids import ACCOUNT_ID, function_arn
from invoker.model import FunctionConfig

LATEST = "$LATEST"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
# Written by hand or by the deploy itself, not a setting of the function.
NOT_CARRIED = frozenset({"name", "files", "entry", "handler"})


def split_name(function_name: str, qualifier: str | None) -> tuple[str, str | None]:
    """The function a Lambda FunctionName names and its qualifier: `NAME`,
    `NAME:QUALIFIER`, or an ARN `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`;
    a `Qualifier` parameter wins over one in the name. The qualifier is None
    for none, else `$LATEST`, a version number or an alias name."""
    name, _, named_qualifier = function_name.partition(":")
    if function_name.startswith("arn:"):
        parts = function_name.split(":")
        if len(parts) not in (7, 8) or parts[5] != "function":
            raise BadRequest(f"{function_name!r} is not a function ARN")
        name, named_qualifier = parts[6], parts[7] if len(parts) == 8 else ""
    return name, qualifier or named_qualifier or None


def lambda_time(ts: float) -> str:
    """Lambda's LastModified: 2026-11-29T12:00:00.000+0000."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def handler_string(config: FunctionConfig) -> str:
    return f"{config.handler_module.replace('.', '/')}.{config.entry}"


def function_configuration(config: FunctionConfig, region: str, version: str = LATEST) -> dict[str, Any]:
    """FunctionConfiguration of CreateFunction, GetFunction, ListFunctions and
    the updates (`$LATEST`), or of one version (its number)."""
    digest = bytes.fromhex(config.code_sha256) if config.code_sha256 else b""
    return {
        "FunctionName": config.name,
        "FunctionArn": function_arn(region, config.name, None if version == LATEST else version),
        "Runtime": RUNTIME,
        "Role": f"arn:aws:iam::{ACCOUNT_ID}:role/faas",
        "Handler": handler_string(config),
        "CodeSize": config.code_size_bytes,
        "Description": "",
        "Timeout": math.ceil(config.timeout_s),
        "MemorySize": config.memory_mb,
        "LastModified": lambda_time(config.updated_at),
        "CodeSha256": base64.b64encode(digest).decode("ascii"),
        "Version": version,
        "Environment": {"Variables": dict(config.env)},
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "RevisionId": config.code_sha256[:8] + f"-{config.version}",
    }


def unzip(data: Any, code_limit_bytes: int) -> dict[str, str]:
    """Code.ZipFile (base64 in the JSON body) as deploy files (path to base64)."""
    if not isinstance(data, str):
        raise BadRequest("Code.ZipFile must be a zip archive (base64 in JSON)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(data, validate=True)))
    except (ValueError, zipfile.BadZipFile) as exc:
        raise BadRequest(f"Could not unzip uploaded file: {exc}") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        # Sizes are checked before anything is inflated: a zip bomb stops here.
        if sum(m.file_size for m in members) > code_limit_bytes:
            raise PayloadTooLarge(f"Unzipped size must be smaller than {code_limit_bytes} bytes")
        files = {}
        for member in members:
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise BadRequest(f"the zip holds a symbolic link ({member.filename}): only regular files")
            try:
                files[member.filename] = base64.b64encode(archive.read(member)).decode("ascii")
            except (RuntimeError, zipfile.BadZipFile, ValueError) as exc:  # encrypted, corrupt
                raise BadRequest(f"Could not unzip {member.filename}: {exc}") from None
    return files


def deploy_fields(settings: dict[str, Any]) -> dict[str, Any]:
    """Lambda's Handler, MemorySize, Timeout and Environment as deploy fields;
    a Runtime other than Python, or an image, is refused."""
    runtime = settings.get("Runtime")
    if runtime is not None and not str(runtime).startswith("python"):
        raise BadRequest(f"runtime {runtime!r} is not supported: this server runs {RUNTIME}")
    if settings.get("PackageType", "Zip") != "Zip":
        raise BadRequest("only PackageType Zip is supported")
    fields: dict[str, Any] = {}
    for lambda_name, field in (("Handler", "handler"), ("MemorySize", "memory_mb"), ("Timeout", "timeout_s")):
        if settings.get(lambda_name) is not None:
            fields[field] = settings[lambda_name]
    environment = settings.get("Environment")
    if environment is not None:
        if not isinstance(environment, dict):
            raise BadRequest("Environment must be an object with Variables")
        fields["env"] = environment.get("Variables") or {}
    return fields


def redeploy_body(config: FunctionConfig, files: dict[str, str]) -> dict[str, Any]:
    """A deploy body that gives `config` again with these files: every deploy
    field the record carries, and its handler in its own convention."""
    body: dict[str, Any] = {"name": config.name, "files": files}
    for field in DEPLOY_FIELDS:
        value = getattr(config, field.name, None)
        if field.name in NOT_CARRIED or value is None:
            continue
        # As JSON has them: env an object, the names of secrets a list.
        body[field.name] = (
            dict(value) if field.name == "env" else list(value) if isinstance(value, tuple) else value
        )
    if config.flavour == "lambda":
        body["handler"] = handler_string(config)
    else:
        body["entry"] = f"{config.handler_module}.{config.entry}"
    return body


def encoded(files: dict[str, bytes]) -> dict[str, str]:
    return {path: base64.b64encode(data).decode("ascii") for path, data in files.items()}
