"""The deploy fields: one table that validation, the OpenAPI schema, the CLI's
deploy flags and the table in docs/HTTP-API.md are all built from.

Standard library only: the CLI imports it and must start fast.
`python -m invoker.fields` prints the markdown table; `--write` puts it into
docs/HTTP-API.md between the two marker comments.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class HostCores:
    """A maximum that is the host's cores, known only where the server runs."""

    def __repr__(self) -> str:
        return "HOST_CORES"


HOST_CORES = HostCores()

# What a field's `kind` is in JSON Schema terms, and how to read it from a command line.
NUMBER_KINDS = ("integer", "number")


@dataclass(frozen=True)
class DeployField:
    name: str
    # JSON Schema type: "string", "object", "array" (of strings), "integer" or "number".
    kind: str
    default: Any = None
    minimum: float | None = None
    maximum: float | HostCores | None = None
    unit: str = ""
    # The `faas deploy` option, with its metavar; None: not an option (files come from PATH).
    cli_flag: str | None = None
    cli_metavar: str = ""
    required: bool = False
    description: str = ""
    # The values a string field may take (None: any).
    choices: tuple[str, ...] | None = None
    # (field, value): this field may be set only where that field has that value.
    needs: tuple[str, str] | None = None

    @property
    def is_number(self) -> bool:
        return self.kind in NUMBER_KINDS

    @property
    def full_description(self) -> str:
        """The description, and the field it needs if any."""
        if self.needs is None:
            return self.description
        return f"{self.description} Only with `{self.needs[0]}: {self.needs[1]}`."

    def maximum_for(self, host_cores: float) -> float | None:
        """The maximum on a host with `host_cores` cores."""
        if isinstance(self.maximum, HostCores):
            return host_cores
        return self.maximum

    def range_text(self) -> str:
        if self.choices is not None:
            return " or ".join(f"`{choice}`" for choice in self.choices)
        if not self.is_number:
            return ""
        maximum = "the host's cores" if isinstance(self.maximum, HostCores) else f"{self.maximum:g}"
        return f"{self.minimum:g} to {maximum}"


DEPLOY_FIELDS: tuple[DeployField, ...] = (
    DeployField(
        "name",
        "string",
        required=True,
        cli_flag="--name",
        cli_metavar="N",
        description="The function's name: 1 to 63 lowercase letters, digits and '-', starting and "
        "ending with a letter or digit; `faas deploy` defaults it to the file's stem or the "
        "directory's name.",
    ),
    DeployField(
        "files",
        "object",
        required=True,
        description="Relative path (no '..', no leading '/', no backslash) to base64 content. "
        "`faas deploy PATH` reads them from a .py file or a directory.",
    ),
    DeployField(
        "entry",
        "string",
        default="handle",
        cli_flag="--entry",
        cli_metavar="F",
        description="The handler function, or module.function to pick its file.",
    ),
    DeployField(
        "memory_mb",
        "integer",
        default=128,
        minimum=32,
        maximum=10240,
        unit="MiB",
        cli_flag="--memory",
        cli_metavar="MB",
        description="Memory limit of one sandbox, no swap.",
    ),
    DeployField(
        "timeout_s",
        "number",
        default=30,
        minimum=0.1,
        maximum=900,
        unit="s",
        cli_flag="--timeout",
        cli_metavar="S",
        description="Wall-clock limit of one call.",
    ),
    DeployField(
        "cpu",
        "number",
        default=1.0,
        minimum=0.05,
        maximum=HOST_CORES,
        unit="cores",
        cli_flag="--cpu",
        cli_metavar="CORES",
        description="CPU quota of one sandbox.",
    ),
    DeployField(
        "cpu_ms_per_call",
        "integer",
        minimum=1,
        maximum=900000,
        unit="ms",
        cli_flag="--cpu-ms-per-call",
        cli_metavar="MS",
        description="CPU-time budget of one call, enforced from outside the sandbox.",
    ),
    DeployField(
        "env",
        "object",
        cli_flag="--env",
        cli_metavar="K=V",
        description="Environment variables (string values); names match `[A-Za-z_][A-Za-z0-9_]*`.",
    ),
    DeployField(
        "max_instances",
        "integer",
        default=10,
        minimum=1,
        maximum=1000,
        cli_flag="--max-instances",
        cli_metavar="N",
        description="Sandboxes of the function at once.",
    ),
    DeployField(
        "max_queue",
        "integer",
        default=1000,
        minimum=0,
        maximum=100000,
        cli_flag="--max-queue",
        cli_metavar="N",
        description="Calls waiting for a sandbox, first in first out.",
    ),
    DeployField(
        "secrets",
        "array",
        cli_flag="--secret",
        cli_metavar="NAME",
        description="Secrets (made with `faas secret create`) the function reads from the file "
        "/var/openfaas/secrets/NAME, readable only by its sandboxes. Deploying with one that does "
        "not exist is a 400.",
    ),
    # -- the Lambda convention and asynchronous calls
    DeployField(
        "handler",
        "string",
        cli_flag="--handler",
        cli_metavar="MODULE.FUNCTION",
        description="AWS Lambda's handler string (`lambda_function.lambda_handler`, `src/app.handler`): "
        "the function gets Lambda's calling convention. Without it, a top-level lambda_function.py "
        "defining lambda_handler gets it too. Not together with entry.",
    ),
    DeployField(
        "async_retries",
        "integer",
        default=2,
        minimum=0,
        maximum=10,
        cli_flag="--async-retries",
        cli_metavar="N",
        description="Retries of an asynchronous call that ended in a 5xx or a timeout, "
        "with exponential backoff from 1 s.",
    ),
    DeployField(
        "max_event_age_s",
        "integer",
        minimum=1,
        maximum=21600,
        unit="s",
        cli_flag="--max-event-age",
        cli_metavar="S",
        description="An asynchronous call not done this long after it was queued is dropped as failed; "
        "none: the server's max_event_age_s.",
    ),
    DeployField(
        "network",
        "string",
        default="none",
        choices=("none", "outbound"),
        cli_flag="--network",
        cli_metavar="MODE",
        description="`none`: loopback only. `outbound`: `eth0` with an address, a default route and the "
        "host's resolvers, under the server's egress policy (never the host itself, other sandboxes, "
        "link-local or multicast; private ranges only as `allow` lists them).",
    ),
    DeployField(
        "allow",
        "array",
        cli_flag="--allow",
        cli_metavar="CIDR[:PORT]",
        needs=("network", "outbound"),
        description="Networks the function may reach besides public addresses: private ranges (10/8, "
        "172.16/12, 192.168/16, 100.64/10, fc00::/7), or public ones when the server's egress_default "
        "is deny; each CIDR or address optionally with one TCP/UDP port (`10.0.0.5:5432`, "
        "`[fd00::/8]:443`); at most 64.",
    ),
    DeployField(
        "egress_mbit",
        "number",
        minimum=0.1,
        maximum=10000,
        unit="Mbit/s",
        cli_flag="--egress-mbit",
        cli_metavar="N",
        needs=("network", "outbound"),
        description="Bandwidth cap of one sandbox, each direction.",
    ),
)

FIELD_NAMES = frozenset(f.name for f in DEPLOY_FIELDS)
BY_NAME = {f.name: f for f in DEPLOY_FIELDS}

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "HTTP-API.md"
BEGIN_MARKER = "<!-- deploy-fields:begin (generated by python -m invoker.fields --write) -->"
END_MARKER = "<!-- deploy-fields:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The deploy fields as the markdown table of docs/HTTP-API.md."""
    lines = [
        "| field | type | default | range | unit | `faas deploy` | description |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in DEPLOY_FIELDS:
        default = (
            "required" if f.required else ("none" if f.default is None else f"`{json.dumps(f.default)}`")
        )
        flag = f"`{f.cli_flag} {f.cli_metavar}`" if f.cli_flag else ""
        cells = [f"`{f.name}`", f.kind, default, f.range_text(), f.unit, flag, _cell(f.full_description)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def documented_table(text: str) -> str:
    """What lies between the two markers of `text`."""
    begin = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    return text[begin : text.index(END_MARKER, begin)].strip("\n") + "\n"


def with_table(text: str) -> str:
    """`text` with the generated table between its markers."""
    begin = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER, begin)
    return text[:begin] + "\n" + markdown_table() + text[end:]


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        DOC_PATH.write_text(with_table(DOC_PATH.read_text()))
        print(f"wrote the deploy-field table into {DOC_PATH}")
    elif not argv:
        print(markdown_table(), end="")
    else:
        print("usage: python -m invoker.fields [--write]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
