"""Deploy validation, without a server."""

from __future__ import annotations

import base64

import pytest

from invoker.errors import BadRequest
from invoker.validate import Limits, validate_deploy

LIMITS = Limits(host_cores=2.0, code_limit_bytes=1024)


def body(
    code: str = "def handle(e, c):\n    return 1\n", filename: str = "handler.py", **extra: object
) -> dict:
    return {"name": "fn", "files": {filename: base64.b64encode(code.encode()).decode()}, **extra}


def error(b: object) -> str:
    with pytest.raises(BadRequest) as err:
        validate_deploy(b, LIMITS, version=0, now=0.0)
    return err.value.message


def test_defaults() -> None:
    config, files = validate_deploy(body(), LIMITS, version=0, now=0.0)
    assert (config.memory_mb, config.timeout_s, config.cpu, config.max_instances, config.max_queue) == (
        128,
        30.0,
        1.0,
        10,
        1000,
    )
    assert config.cpu_ms_per_call is None and config.handler_module == "handler" and config.entry == "handle"
    assert files == {"handler.py": b"def handle(e, c):\n    return 1\n"}


def test_single_file_of_any_name_is_the_module() -> None:
    config, _ = validate_deploy(body(filename="hello.py"), LIMITS, version=0, now=0.0)
    assert config.handler_module == "hello"


def test_entry_may_name_the_module() -> None:
    b = body(entry="mod.run")
    b["files"]["mod.py"] = base64.b64encode(b"def run(e, c):\n    pass\n").decode()
    config, _ = validate_deploy(b, LIMITS, version=0, now=0.0)
    assert (config.handler_module, config.entry) == ("mod", "run")


def test_entry_defined_conditionally_or_imported_counts() -> None:
    code = "try:\n    from json import dumps as handle\nexcept ImportError:\n    pass\n"
    validate_deploy(body(code), LIMITS, version=0, now=0.0)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"memory_mb": 31}, "memory_mb"),
        ({"memory_mb": True}, "memory_mb"),
        ({"memory_mb": 64.5}, "memory_mb"),
        ({"timeout_s": 901}, "timeout_s"),
        ({"cpu": 3.0}, "cpu"),
        ({"cpu_ms_per_call": 0}, "cpu_ms_per_call"),
        ({"max_queue": -1}, "max_queue"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"OK": 1}}, "env"),
        ({"surprise": 1}, "unknown field"),
        ({"name": "x" * 64}, "name"),
        ({"name": "UPPER"}, "name"),
    ],
)
def test_rejections(change: dict, expected: str) -> None:
    assert expected in error({**body(), **change})


def test_syntax_error_names_file_and_line() -> None:
    msg = error(body("x = 1\ndef handle(:\n", filename="app.py"))
    assert msg.startswith("syntax error in app.py line 2")


def test_paths_must_stay_inside() -> None:
    for bad in ("../x.py", "/abs.py", "a/../../b.py", "a//b.py", "a\\b.py", ""):
        b = body()
        b["files"][bad] = base64.b64encode(b"").decode()
        assert "path" in error(b) or "file name" in error(b)


def test_size_limit() -> None:
    assert "size limit" in error(body("#" * 2000))


def test_ambiguous_module() -> None:
    b = body(filename="a.py")
    b["files"]["b.py"] = b["files"]["a.py"]
    assert "handler.py" in error(b)


def test_not_an_object() -> None:
    assert "JSON object" in error([1, 2])
