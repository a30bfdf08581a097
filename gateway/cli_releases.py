"""The `faas` commands of releases: `versions`, `alias`, `rollback` and
`secret create|list|delete` (docs/CLI.md). Their grammar is in cli_args.py."""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .cli_common import UsageError, client, function_path, json_answer, read_stdin
from .cli_output import dump, fmt, table


def parse_weight(item: str) -> tuple[str, float]:
    """`4=0.1` or `4=10%`: the share of calls version 4 gets."""
    version, sep, share = item.partition("=")
    try:
        if not sep or not version.isdigit():
            raise ValueError
        weight = float(share[:-1]) / 100 if share.endswith("%") else float(share)
    except ValueError:
        raise UsageError(f"invalid --weight {item!r}: expected VERSION=SHARE, e.g. 4=0.1 or 4=10%") from None
    if not 0 <= weight <= 1:
        raise UsageError(f"invalid --weight {item!r}: the share must be from 0 to 1 (0% to 100%)")
    return version, weight


def describe_alias(alias: dict[str, Any]) -> str:
    """`version 3` or `version 3 (90%), version 4 (10%)`, and whether it follows the newest."""
    weights = alias.get("weights") or {}
    canary = sum(weights.values())
    text = f"version {alias.get('version')}"
    if weights:
        text += f" ({1 - canary:.0%}), " + ", ".join(f"version {v} ({w:.0%})" for v, w in weights.items())
    if alias.get("follows_newest"):
        text += ", following the newest"
    return text


def cmd_versions(args: argparse.Namespace) -> int:
    data = json_answer(client(args).call("GET", function_path(args.name) + "/versions"))
    if args.json or not isinstance(data, dict):
        dump(data)
        return 0
    rows = [
        [
            fmt(v.get("version")),
            str(v.get("updated_at", "-")),
            str(v.get("code_sha256", ""))[:12] or "-",
            fmt(v.get("memory_mb")) + "MB" if v.get("memory_mb") is not None else "-",
            ",".join(v.get("secrets") or []) or "-",
            fmt(v.get("instances")),
            ",".join(v.get("aliases") or []) or "-",
        ]
        for v in data.get("versions", [])
        if isinstance(v, dict)
    ]
    print(table(["VERSION", "CREATED", "CODE", "MEMORY", "SECRETS", "INSTANCES", "ALIASES"], rows))
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    gateway = client(args)
    path = function_path(args.name) + "/aliases"
    if args.alias is None or (args.version is None and not args.delete):
        if args.weight or args.delete:
            raise UsageError("give the alias and the version: faas alias NAME ALIAS VERSION [--weight V=W]")
        aliases = json_answer(gateway.call("GET", path)).get("aliases", [])
        if args.alias is not None:
            aliases = [a for a in aliases if a.get("name") == args.alias]
            if not aliases:
                raise UsageError(f"function {args.name} has no alias {args.alias!r}")
        rows = [[str(a.get("name")), describe_alias(a)] for a in aliases if isinstance(a, dict)]
        print(table(["ALIAS", "POINTS AT"], rows))
        return 0
    path += "/" + quote(args.alias, safe="")
    if args.delete:
        if args.version is not None or args.weight:
            raise UsageError("--delete takes no version or --weight")
        answer = json_answer(gateway.call("DELETE", path))
        if "deleted" in answer:
            print(f"deleted alias {args.alias} of {args.name}")
        else:
            print(f"{args.alias} of {args.name} -> {describe_alias(answer)}")
        return 0
    body: dict[str, Any] = {"version": args.version}
    if args.weight:
        body["weights"] = dict(parse_weight(item) for item in args.weight)
    alias = json_answer(gateway.call("PUT", path, json_body=body))
    print(f"{args.alias} of {args.name} -> {describe_alias(alias)}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    body = {} if args.to is None else {"to": args.to}
    answer = json_answer(client(args).call("POST", function_path(args.name) + "/rollback", json_body=body))
    live = answer.get("live", {})
    print(f"rolled back {args.name}: live -> version {live.get('version')} (was {answer.get('previous')})")
    return 0


def _secret_value(args: argparse.Namespace) -> bytes:
    if args.from_file is not None:
        try:
            with open(args.from_file, "rb") as f:
                return f.read()
        except OSError as exc:
            raise UsageError(f"cannot read {args.from_file}: {exc.strerror or exc}") from None
    if args.from_literal is not None:
        return args.from_literal.encode()
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("give the value: --from-file F, --from-literal V, or pipe it on stdin")
    return read_stdin()


def cmd_secret(args: argparse.Namespace) -> int:
    gateway = client(args)
    if args.secret_command == "create":
        value = _secret_value(args)
        body = {"name": args.name, "value_base64": base64.b64encode(value).decode("ascii")}
        resp = gateway.call("POST", "/system/secrets", json_body=body)
        how = "created" if resp.status == 201 else "updated (new sandboxes read the new value)"
        print(f"secret {args.name} {how}, {len(value)} bytes")
    elif args.secret_command == "delete":
        gateway.call("DELETE", "/system/secrets/" + quote(args.name, safe=""))
        print(f"deleted secret {args.name}")
    else:
        data = json_answer(gateway.call("GET", "/system/secrets"))
        if args.json or not isinstance(data, list):
            dump(data)
            return 0
        rows = [
            [
                str(s.get("name")),
                fmt(s.get("size_bytes")),
                str(s.get("updated_at", "-")),
                "yes" if s.get("encrypted") else "no",
                ",".join(f"{f}@{'+'.join(map(str, v))}" for f, v in (s.get("used_by") or {}).items()) or "-",
            ]
            for s in data
            if isinstance(s, dict)
        ]
        print(table(["NAME", "BYTES", "UPDATED", "ENCRYPTED", "USED BY"], rows, right=frozenset({1})))
    return 0


RELEASE_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "versions": cmd_versions,
    "alias": cmd_alias,
    "rollback": cmd_rollback,
    "secret": cmd_secret,
}
