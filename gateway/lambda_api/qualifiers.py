"""What a Lambda qualifier names: `$LATEST` (the newest version), a version
number or an alias name; none is the function itself (its `live` alias for
a call, the newest version for a configuration)."""

from __future__ import annotations

from typing import Any

from invoker.errors import NotFound
from invoker.invoker import Invoker
from invoker.model import FunctionConfig

from .shapes import LATEST


def target(invoker: Invoker, name: str, qualifier: str | None) -> str:
    """The Invocation.function a qualified call runs: `NAME` (its live
    alias), `NAME@VERSION` (`$LATEST`: the newest) or `NAME@ALIAS`."""
    if qualifier is None:
        return name
    if qualifier == LATEST:
        return f"{name}@{invoker.get(name).version}"
    return f"{name}@{qualifier}"


def qualified_config(invoker: Invoker, name: str, qualifier: str | None) -> tuple[FunctionConfig, str]:
    """The configuration a qualifier names, and the `Version` Lambda shows for it."""
    if qualifier is None or qualifier == LATEST:
        return invoker.get(name), LATEST
    version = qualifier if qualifier.isascii() and qualifier.isdigit() else None
    if version is None:
        version = str(alias_record(invoker, name, qualifier)["version"])
    for config, _ in invoker.versions(name):
        if str(config.version) == version:
            return config, version
    raise NotFound(f"Function not found: {name}:{qualifier}")


def alias_record(invoker: Invoker, name: str, alias: str) -> dict[str, Any]:
    for record in invoker.aliases(name):
        if record["name"] == alias:
            return record
    raise NotFound(f"Alias not found: {name}:{alias}")
