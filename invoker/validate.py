"""Deploy validation: a JSON request body -> a FunctionConfig and its files.

Pure: no I/O. Every rejection is a BadRequest with a precise message.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from sandbox.api import MAX_ALLOW_ENTRIES as MAX_ALLOW_ENTRIES  # for the OpenAPI schema
from sandbox.api import parse_allow_list

from .errors import BadRequest
from .fields import BY_NAME, DEPLOY_FIELDS, FIELD_NAMES, DeployField
from .model import FunctionConfig
from .release_validate import validate_secret_names

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_CODE_LIMIT_BYTES = 20 * 1024 * 1024
MAX_FILES = 1000
# What a Linux filesystem takes: a name of 255 bytes, a path of 4096 (less
# the directory the code is stored in).
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 3072

FIELDS = FIELD_NAMES


@dataclass(frozen=True)
class Limits:
    """What bounds a deploy beyond the field table: the host's cores (`cpu`) and the code's size."""

    host_cores: float
    code_limit_bytes: int = DEFAULT_CODE_LIMIT_BYTES


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest(
            f"invalid function name {name!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _number(body: dict[str, Any], field: DeployField, host_cores: float) -> Any:
    """The numeric field of the body, or its default, in the field's range."""
    key = field.name
    value = body.get(key, field.default)
    if value is None and field.default is None:
        return None
    lo, hi, integer = field.minimum, field.maximum_for(host_cores), field.kind == "integer"
    kind = "an integer" if integer else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not float(value).is_integer())
    ):
        raise BadRequest(f"{key} must be {kind} from {lo:g} to {hi:g}, got {value!r}")
    if not lo <= value <= hi:
        raise BadRequest(f"{key} must be from {lo:g} to {hi:g}, got {value:g}")
    return int(value) if integer else float(value)


def _network(body: dict[str, Any], numbers: dict[str, Any]) -> dict[str, Any]:
    """network, allow (canonical entries) and egress_mbit; a field that
    needs another's value (allow and egress_mbit need network: outbound)
    is refused without it."""
    field = BY_NAME["network"]
    network = body.get("network")
    if network is None:
        network = field.default
    if network not in (field.choices or ()):
        choices = " or ".join(repr(c) for c in field.choices or ())
        raise BadRequest(f"network must be {choices}, got {network!r}")
    raw_allow = body.get("allow")
    try:
        allow = () if raw_allow is None else parse_allow_list(raw_allow)
    except ValueError as exc:
        raise BadRequest(f"allow: {exc}") from None
    given = {"network": network, "allow": allow, "egress_mbit": numbers.get("egress_mbit")}
    for f in DEPLOY_FIELDS:
        if f.needs is not None and given.get(f.name) not in (None, ()) and given[f.needs[0]] != f.needs[1]:
            raise BadRequest(
                f"{f.name} needs {f.needs[0]}: {f.needs[1]} (the function has {given[f.needs[0]]})"
            )
    return {"network": network, "allow": tuple(str(rule) for rule in allow)}


def _safe_path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise BadRequest(f"file name {path!r} is not a relative path")
    norm = posixpath.normpath(path)
    if (
        path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or norm != path.removeprefix("./")
        or norm.startswith("..")
        or any(part in ("", ".", "..") for part in norm.split("/"))
    ):
        raise BadRequest(
            f"file name {path!r} must be a plain relative path inside the function (no '..', no leading '/')"
        )
    if len(norm.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES or any(
        len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in norm.split("/")
    ):
        raise BadRequest(
            f"file name {path[:80]!r}... is too long: at most {MAX_NAME_BYTES} bytes a name "
            f"and {MAX_PATH_BYTES} bytes a path"
        )
    return norm


def _check_no_collisions(paths: list[str]) -> None:
    """No file may also be a directory of another (`a` and `a/b`): both
    cannot exist on disk."""
    names = set(paths)
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in names:
                raise BadRequest(f"file {parent!r} is also the directory of {path!r}")


def decode_files(raw: Any, code_limit_bytes: int) -> dict[str, bytes]:
    if not isinstance(raw, dict) or not raw:
        raise BadRequest("files must be a non-empty object of relative path to base64 content")
    if len(raw) > MAX_FILES:
        raise BadRequest(f"too many files: {len(raw)} (at most {MAX_FILES})")
    files: dict[str, bytes] = {}
    total = 0
    for path, content in raw.items():
        name = _safe_path(path)
        if not isinstance(content, str):
            raise BadRequest(f"files[{path!r}] must be a base64 string")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"files[{path!r}] is not valid base64") from None
        total += len(data)
        if total > code_limit_bytes:
            raise BadRequest(f"code is over the size limit of {code_limit_bytes} bytes")
        if name in files:
            raise BadRequest(f"file {name!r} is given twice")
        files[name] = data
    _check_no_collisions(list(files))
    return files


def _pick_module(files: dict[str, bytes], entry: str) -> tuple[str, str]:
    """(module, function) from `entry` ("handle" or "module.handle") and the files."""
    if "." in entry or ":" in entry:
        module, _, func = entry.replace(":", ".").rpartition(".")
        if f"{module.replace('.', '/')}.py" not in files:
            raise BadRequest(
                f"entry {entry!r} names module {module!r}, but there is no {module.replace('.', '/')}.py"
            )
    else:
        func = entry
        top = sorted(p for p in files if p.endswith(".py") and "/" not in p)
        if len(top) == 1:
            module = top[0][:-3]
        elif "handler.py" in top:
            module = "handler"
        elif "main.py" in top:
            module = "main"
        else:
            raise BadRequest(
                "cannot tell which file holds the handler: name it handler.py or give entry as module.function"
            )
    if not IDENT_RE.match(func) or not all(IDENT_RE.match(p) for p in module.split(".")):
        raise BadRequest(f"entry {entry!r} is not a Python identifier")
    return module, func


# A deploy without entry or handler whose lambda_function.py defines
# lambda_handler is a Lambda function, as the Lambda console makes them.
LAMBDA_MODULE, LAMBDA_ENTRY = "lambda_function", "lambda_handler"


def _lambda_handler(handler: Any, files: dict[str, bytes]) -> tuple[str, str]:
    """(module, function) of Lambda's handler string: `file.function`, the
    file's path with '/' or '.' between directories (`src/app.handler`)."""
    if not isinstance(handler, str) or "." not in handler:
        raise BadRequest(
            f"handler must be Lambda's MODULE.FUNCTION (e.g. lambda_function.lambda_handler), got {handler!r}"
        )
    path, _, func = handler.rpartition(".")
    module = path.replace("/", ".")
    if not all(IDENT_RE.match(p) for p in [*module.split("."), func]):
        raise BadRequest(f"handler {handler!r} is not MODULE.FUNCTION of Python identifiers")
    if f"{module.replace('.', '/')}.py" not in files:
        raise BadRequest(f"handler {handler!r} names {module.replace('.', '/')}.py, which is not in files")
    return module, func


def _defines(files: dict[str, bytes], module: str, func: str) -> bool:
    """Whether `module`.py is among the files and defines `func` at its top level."""
    source = files.get(f"{module}.py")
    if source is None:
        return False
    try:
        return func in _top_level_names(ast.parse(source).body)
    except (SyntaxError, ValueError):
        return False  # check_code reports it


def _top_level_names(stmts: list[ast.stmt]) -> set[str]:
    """Names a module defines at its top level, under if/try/with too."""
    names: set[str] = set()
    for node in stmts:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {sub.id for t in targets for sub in ast.walk(t) if isinstance(sub, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.If):
            names |= _top_level_names(node.body) | _top_level_names(node.orelse)
        elif isinstance(node, ast.Try):
            names |= _top_level_names(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                names |= _top_level_names(handler.body)
        elif isinstance(node, ast.With):
            names |= _top_level_names(node.body)
    return names


def check_code(files: dict[str, bytes], module: str, func: str) -> None:
    trees: dict[str, ast.Module] = {}
    for path, data in files.items():
        if not path.endswith(".py"):
            continue
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{path} is not UTF-8 text: {exc}") from None
        try:
            trees[path] = ast.parse(source, filename=path)
        except SyntaxError as exc:
            raise BadRequest(f"syntax error in {path} line {exc.lineno}: {exc.msg}") from None
        except ValueError as exc:  # e.g. null bytes
            raise BadRequest(f"{path} cannot be parsed: {exc}") from None
    module_path = module.replace(".", "/") + ".py"
    if func not in _top_level_names(trees[module_path].body):
        raise BadRequest(f"{module_path} defines no function {func!r}")


def validate_deploy(
    body: Any, limits: Limits, version: int, now: float
) -> tuple[FunctionConfig, dict[str, bytes]]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}")
    name = validate_name(body.get("name"))
    given_entry, lambda_handler = body.get("entry"), body.get("handler")
    entry = BY_NAME["entry"].default if given_entry is None else given_entry
    if not isinstance(entry, str) or not entry:
        raise BadRequest(f"entry must be a non-empty string, got {entry!r}")
    # The numeric fields are FunctionConfig's fields of the same names.
    numbers = {f.name: _number(body, f, limits.host_cores) for f in DEPLOY_FIELDS if f.is_number}
    network = _network(body, numbers)
    env = body.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise BadRequest("env must be an object of NAME to string value")
    for key, value in env.items():
        if not ENV_NAME_RE.match(key) or not isinstance(value, str) or "\x00" in value:
            raise BadRequest(f"env {key!r}: names must match [A-Za-z_][A-Za-z0-9_]* and values be strings")
    secrets = validate_secret_names(body.get("secrets"))
    files = decode_files(body.get("files"), limits.code_limit_bytes)
    flavour = "faas"
    if lambda_handler is not None:
        if given_entry is not None:
            raise BadRequest("give entry (this runtime's convention) or handler (Lambda's), not both")
        module, func = _lambda_handler(lambda_handler, files)
        flavour = "lambda"
    elif given_entry is None and _defines(files, LAMBDA_MODULE, LAMBDA_ENTRY):
        module, func, flavour = LAMBDA_MODULE, LAMBDA_ENTRY, "lambda"
    else:
        module, func = _pick_module(files, entry)
    check_code(files, module, func)
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path] + b"\0")
    config = FunctionConfig(
        name=name,
        version=version,
        handler_module=module,
        entry=func,
        env=tuple(sorted(env.items())),
        **numbers,
        **network,
        code_size_bytes=sum(len(d) for d in files.values()),
        code_sha256=digest.hexdigest(),
        files=tuple(sorted(files)),
        created_at=now,
        updated_at=now,
        secrets=secrets,
        flavour=flavour,
    )
    return config, files


def host_cores() -> float:
    return float(len(os.sched_getaffinity(0)))
