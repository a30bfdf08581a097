"""The deploy-field table (invoker/fields.py) drives validation, the OpenAPI schema, the CLI
and the table in docs/HTTP-API.md: each is checked against it here."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway import cli
from gateway.routes.openapi_schemas import deploy_schema
from invoker import fields
from invoker.errors import BadRequest
from invoker.fields import DEPLOY_FIELDS, HOST_CORES, DeployField
from invoker.validate import Limits, validate_deploy

CORES = 3.0
HANDLER = base64.b64encode(b"def handle(event, context):\n    return 1\n").decode()


def test_docs_table_is_the_generated_one() -> None:
    documented = fields.documented_table(fields.DOC_PATH.read_text())
    assert documented == fields.markdown_table(), (
        "docs/HTTP-API.md is out of date: run `python -m invoker.fields --write`"
    )


def test_table_rewrite_replaces_only_what_lies_between_the_markers() -> None:
    stale = f"intro\n{fields.BEGIN_MARKER}\n| old |\n{fields.END_MARKER}\noutro\n"
    rewritten = fields.with_table(stale)
    assert rewritten.startswith(f"intro\n{fields.BEGIN_MARKER}\n")
    assert rewritten.endswith(f"{fields.END_MARKER}\noutro\n")
    assert fields.documented_table(rewritten) == fields.markdown_table()
    assert fields.with_table(rewritten) == rewritten


def test_every_field_has_one_row_and_the_cpu_maximum_is_the_hosts() -> None:
    rows = fields.markdown_table().splitlines()[2:]
    assert [row.split("|")[1].strip() for row in rows] == [f"`{f.name}`" for f in DEPLOY_FIELDS]
    cpu = fields.BY_NAME["cpu"]
    assert cpu.maximum is HOST_CORES and cpu.maximum_for(CORES) == CORES
    assert "0.05 to the host's cores" in fields.markdown_table()


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert fields.main([]) == 0
    assert capsys.readouterr().out == fields.markdown_table()
    assert fields.main(["--bogus"]) == 2


def number_fields() -> list[DeployField]:
    return [f for f in DEPLOY_FIELDS if f.is_number]


def deploy(**extra: Any) -> Any:
    body = {"name": "f", "files": {"handler.py": HANDLER}, **extra}
    config, _ = validate_deploy(body, Limits(host_cores=CORES), version=1, now=0.0)
    return config


def needed(field: DeployField) -> dict[str, Any]:
    """What the field needs set beside it (egress_mbit: network outbound)."""
    return {} if field.needs is None else {field.needs[0]: field.needs[1]}


@pytest.mark.parametrize("field", number_fields(), ids=lambda f: f.name)
def test_validation_applies_the_tables_default_and_range(field: DeployField) -> None:
    lo, hi = field.minimum, field.maximum_for(CORES)
    assert getattr(deploy(), field.name) == field.default
    assert getattr(deploy(**{field.name: lo}, **needed(field)), field.name) == lo
    assert getattr(deploy(**{field.name: hi}, **needed(field)), field.name) == hi
    assert lo is not None and hi is not None
    with pytest.raises(BadRequest, match=f"{field.name} must be from {lo:g} to {hi:g}"):
        deploy(**{field.name: hi + 1}, **needed(field))


@pytest.mark.parametrize("field", [f for f in DEPLOY_FIELDS if f.needs], ids=lambda f: f.name)
def test_a_field_that_needs_another_is_refused_without_it(field: DeployField) -> None:
    value = 8 if field.is_number else ["10.0.0.0/8"]
    assert field.needs is not None
    with pytest.raises(BadRequest, match=f"{field.name} needs {field.needs[0]}: {field.needs[1]}"):
        deploy(**{field.name: value})
    assert getattr(deploy(**{field.name: value}, **needed(field)), field.name) in (8, ("10.0.0.0/8",))


def test_openapi_schema_follows_the_table() -> None:
    schema = deploy_schema(CORES, 1024)
    assert list(schema["properties"]) == [f.name for f in DEPLOY_FIELDS]
    assert schema["required"] == [f.name for f in DEPLOY_FIELDS if f.required]
    for f in number_fields():
        prop = schema["properties"][f.name]
        assert (prop["type"], prop["minimum"], prop["maximum"]) == (f.kind, f.minimum, f.maximum_for(CORES))
        assert prop.get("default") == f.default


def test_cli_has_one_flag_per_field_and_builds_the_body_from_them() -> None:
    parser = cli.build_parser()
    argv = ["deploy", "x.py", "--name", "n", "--entry", "go", "--memory", "64", "--timeout", "2.5"]
    argv += ["--cpu", "0.5", "--cpu-ms-per-call", "7", "--env", "A=1", "--env", "B=2=3"]
    argv += ["--max-instances", "3", "--max-queue", "0", "--secret", "db", "--secret", "api-key"]
    argv += ["--async-retries", "0", "--max-event-age", "60"]
    argv += [
        "--network",
        "outbound",
        "--allow",
        "10.0.0.0/8",
        "--allow",
        "10.1.2.3:5432",
        "--egress-mbit",
        "8",
    ]
    options = cli.deploy_options(parser.parse_args(argv))
    assert options == {
        "name": "n",
        "entry": "go",
        "memory_mb": 64,
        "timeout_s": 2.5,
        "cpu": 0.5,
        "cpu_ms_per_call": 7,
        "env": {"A": "1", "B": "2=3"},
        "max_instances": 3,
        "max_queue": 0,
        "secrets": ["db", "api-key"],
        "handler": None,
        "async_retries": 0,
        "max_event_age_s": 60,
        "network": "outbound",
        "allow": ["10.0.0.0/8", "10.1.2.3:5432"],
        "egress_mbit": 8.0,
    }
    assert set(options) == {f.name for f in DEPLOY_FIELDS if f.cli_flag}
    assert set(fields.FIELD_NAMES) - set(options) == {"files"}  # files come from PATH
    assert cli.deploy_options(parser.parse_args(["deploy", "x.py"])) == dict.fromkeys(options)
