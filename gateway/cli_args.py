"""The `faas` command line's grammar: every command, its flags, and the deploy
flags made from the table of deploy fields (invoker/fields.py)."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.bundle import parse_env
from invoker.fields import DEPLOY_FIELDS

from . import cli_async

DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def _global_options(with_gateway: bool = True) -> argparse.ArgumentParser:
    # SUPPRESS: an option absent after the subcommand must not overwrite one given before it.
    parent = argparse.ArgumentParser(add_help=False)
    if with_gateway:
        parent.add_argument(
            "--gateway",
            metavar="URL",
            default=argparse.SUPPRESS,
            help=f"gateway URL (env FAAS_GATEWAY, default {DEFAULT_GATEWAY})",
        )
    parent.add_argument("--token", metavar="T", default=argparse.SUPPRESS, help="API token (env FAAS_TOKEN)")
    return parent


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 0 to 65535, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


# How a deploy field of each kind is read from the command line.
FLAG_TYPES: dict[str, type] = {"integer": int, "number": float, "string": str}
# Kinds given by repeating the flag: --env K=V (object), --secret NAME (array).
REPEATED_KINDS = ("object", "array")


def _deploy_flags(parser: argparse.ArgumentParser) -> None:
    """One option per deploy field that has one, named, typed and explained by the field table."""
    for f in DEPLOY_FIELDS:
        if f.cli_flag is None:
            continue
        unit = f", in {f.unit}" if f.unit else ""
        default = (
            ""
            if f.required or f.kind in REPEATED_KINDS
            else f" (default {'none' if f.default is None else f.default})"
        )
        help_text = f"{f.full_description.rstrip('.')}{unit}{default}"
        if f.kind in REPEATED_KINDS:
            # append, not nargs="+": a greedy --env would swallow a PATH written after it.
            parser.add_argument(
                f.cli_flag,
                dest=f.name,
                metavar=f.cli_metavar,
                action="append",
                help=help_text + " (repeatable)",
            )
        else:
            parser.add_argument(
                f.cli_flag,
                dest=f.name,
                metavar=f.cli_metavar,
                type=FLAG_TYPES[f.kind],
                choices=f.choices,
                help=help_text,
            )


def deploy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The deploy body's optional fields from the parsed flags (None: not given, the server's default)."""
    options: dict[str, Any] = {}
    for f in DEPLOY_FIELDS:
        if f.cli_flag is None:
            continue
        value = getattr(args, f.name)
        # The only object-valued flag is --env K=V, repeated; an array is its flag's values in order.
        options[f.name] = parse_env(value) if f.kind == "object" and value is not None else value
    return options


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = argparse.ArgumentParser(
        prog="faas", description="Run and manage Python functions.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # serve has no use for --gateway; its --token is the token the server requires.
    p = sub.add_parser("serve", parents=[_global_options(with_gateway=False)], help="run the gateway")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=_port, help="listen port (default 8080)")
    p.add_argument("--data-dir", metavar="DIR", help="state directory")
    p.add_argument("--config", metavar="FILE", help="configuration file")
    p.add_argument("--keepalive", metavar="S", type=float, help="seconds an idle sandbox is kept")
    p.add_argument(
        "--database",
        metavar="URL",
        help="postgresql://... for the registry and usage ledger (default SQLite)",
    )
    p.add_argument(
        "--role",
        choices=("all", "gateway", "invoker"),
        help="all (default): one machine; gateway: route to the cluster's invokers; invoker: run sandboxes",
    )
    p.add_argument(
        "--cluster-token",
        metavar="TOKEN",
        help="shared by a cluster's gateways and invokers (or env FAAS_CLUSTER_TOKEN)",
    )
    p.add_argument(
        "--advertise", metavar="HOST:PORT", help="where gateways reach this invoker (default --host:--port)"
    )
    p.add_argument(
        "--workers", metavar="N", type=_positive, help="gateway processes sharing the port (role gateway)"
    )
    p.add_argument(
        "--queue",
        metavar="URL",
        help="nats://HOST:PORT: the asynchronous queue in NATS JetStream (default SQLite)",
    )
    p.add_argument(
        "--deploy",
        metavar="PATH",
        nargs="+",
        action="extend",
        default=[],
        help="deploy these .py files or function directories at start",
    )
    p.set_defaults(command="serve")

    p = sub.add_parser("deploy", parents=[common], help="create or update a function")
    p.add_argument("path", metavar="PATH", help="a .py file or a directory")
    _deploy_flags(p)
    p.set_defaults(command="deploy")

    p = sub.add_parser("invoke", parents=[common], help="call a function")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--data", metavar="TEXT|@FILE", help="request body; @FILE reads a file, @- stdin")
    p.add_argument("--method", metavar="M", help="HTTP method (default POST with a body, else GET)")
    p.add_argument("--path", metavar="P", help="path after /function/NAME, may hold a ?query")
    p.add_argument("--header", metavar="K:V", action="append", default=[], help="request header (repeatable)")
    p.add_argument(
        "--async",
        dest="run_async",
        action="store_true",
        help="queue the call; print its call id (see faas call)",
    )
    p.add_argument(
        "--callback", metavar="URL", help="with --async: where the result is POSTed when the call ends"
    )
    p.set_defaults(command="invoke")

    p = sub.add_parser("nodes", parents=[common], help="list the invokers serving calls")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(command="nodes")

    p = sub.add_parser("list", parents=[common], help="list functions")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(command="list")

    p = sub.add_parser("describe", parents=[common], help="show a function record")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(command="describe")

    p = sub.add_parser("delete", parents=[common], help="delete a function")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(command="delete")

    p = sub.add_parser("logs", parents=[common], help="show a function's logs")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--tail", metavar="N", type=_non_negative, help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    p.set_defaults(command="logs")

    p = sub.add_parser("layers", parents=[common], help="list layers (installed requirements)")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(command="layers")

    p = sub.add_parser("usage", parents=[common], help="usage and cost per function")
    p.add_argument("--function", metavar="NAME", help="only this function")
    p.add_argument("--since", metavar="T", help="from T (ISO 8601 or Unix seconds)")
    p.add_argument("--until", metavar="T", help="until T (ISO 8601 or Unix seconds)")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(command="usage")
    _release_commands(sub, common)
    cli_async.add_parsers(sub, common)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _release_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """versions, alias, rollback, secret (gateway/cli_releases.py)."""
    p = sub.add_parser("versions", parents=[common], help="list a function's versions and aliases")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(command="versions")

    p = sub.add_parser("alias", parents=[common], help="list, set or delete a function's aliases")
    p.add_argument("name", metavar="NAME")
    p.add_argument("alias", metavar="ALIAS", nargs="?", help="the alias (live: what /function/NAME calls)")
    p.add_argument("version", metavar="VERSION", nargs="?", type=_positive, help="the version it points at")
    p.add_argument(
        "--weight", metavar="V=W", action="append", default=[], help="send a share W of calls to version V"
    )
    p.add_argument("--delete", action="store_true", help="delete the alias (live: unpin it)")
    p.set_defaults(command="alias")

    p = sub.add_parser("rollback", parents=[common], help="pin live to an earlier version")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--to", metavar="N", type=_positive, help="the version (default: the one before live's)")
    p.set_defaults(command="rollback")

    p = sub.add_parser("secret", parents=[common], help="create, list or delete secrets")
    secret = p.add_subparsers(dest="secret_command", metavar="create|list|delete", required=True)
    s = secret.add_parser("create", parents=[common], help="create or rotate a secret")
    s.add_argument("name", metavar="NAME")
    source = s.add_mutually_exclusive_group()
    source.add_argument("--from-file", metavar="F", help="the value is this file's bytes")
    source.add_argument(
        "--from-literal", metavar="V", help="the value (visible to `ps`: prefer a file or stdin)"
    )
    s = secret.add_parser("list", parents=[common], help="list secrets (never their values)")
    s.add_argument("--json", action="store_true", help="print the JSON answer")
    s = secret.add_parser("delete", parents=[common], help="delete a secret")
    s.add_argument("name", metavar="NAME")
    p.set_defaults(command="secret")


# ---------------------------------------------------------------- helpers
