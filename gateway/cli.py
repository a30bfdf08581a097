"""`faas`: the command line (docs/CLI.md).

Every command but `serve` is a thin HTTP client of the gateway. `serve` imports the
server lazily, so the client commands never pay for importing aiohttp.
Exit codes: 0 ok, 1 an error answer or failure, 2 bad usage or an unreachable gateway, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from gateway.bundle import BundleError, build_deploy_body
from gateway.client import ApiError, GatewayClient, GatewayError, GatewayUnreachable, error_message

from . import cli_async
from .cli_args import build_parser, deploy_options
from .cli_async import async_path, print_accepted
from .cli_common import UsageError
from .cli_common import client as _client
from .cli_common import function_path as _fn_path
from .cli_common import json_answer as _json
from .cli_common import read_stdin as _read_stdin
from .cli_common import token as _token
from .cli_output import Progress, dump, fmt, printable, size_text, table, write_body
from .cli_releases import RELEASE_COMMANDS

FOLLOW_INTERVAL_S = 0.5
# A function's requirements: a deploy that has it waits for its layer.
REQUIREMENTS = "requirements.txt"
# `logs --follow` asks for this many lines per poll, so a burst between two polls is not lost.
FOLLOW_TAIL = 1000
# How many of the previously seen lines must line up to place the new ones.
FOLLOW_OVERLAP = 20


# ---------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from gateway.serve import run_server
    except ImportError as exc:
        raise GatewayError(f"cannot start the server: {exc}") from None
    code = run_server(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        config_file=args.config,
        # Only an explicit --token: the server itself reads FAAS_TOKEN, ranked above its config file.
        token=getattr(args, "token", None),
        keepalive_s=args.keepalive,
        database=args.database,
        queue=args.queue,
        deploy_paths=list(args.deploy),
        role=args.role,
        cluster_token=args.cluster_token,
        advertise=args.advertise,
        workers=args.workers,
    )
    return int(code or 0)


def cmd_deploy(args: argparse.Namespace) -> int:
    # Check everything local before building a possibly large body or touching the network.
    body = build_deploy_body(args.path, **deploy_options(args))
    client = _client(args)
    if REQUIREMENTS in body["files"]:
        # The server answers once the layer is built: seconds, minutes for large packages.
        with Progress(f"installing {REQUIREMENTS} into a layer"):
            resp = client.call("POST", "/system/functions", json_body=body)
    else:
        resp = client.call("POST", "/system/functions", json_body=body)
    record = _json(resp)
    record = record if isinstance(record, dict) else {}
    layer = record.get("layer")
    if isinstance(layer, dict) and record.get("changed") is not False:
        packages = layer.get("packages") if isinstance(layer.get("packages"), dict) else {}
        took = record.get("build_ms")
        print(
            f"layer {layer.get('id', '?')}: {len(packages)} packages, {size_text(layer.get('size_bytes'))}"
            + (f", ready in {took / 1000:.1f} s" if isinstance(took, int | float) else "")
        )
    how = "created" if resp.status == 201 else "unchanged" if record.get("changed") is False else "updated"
    print(f"deployed {record.get('name', body['name'])} version {record.get('version', '?')} ({how})")
    live = next((a for a in record.get("aliases") or [] if a.get("name") == "live"), None)
    if live and not live.get("follows_newest") and live.get("version") != record.get("version"):
        print(
            f"live stays pinned to version {live.get('version')}: faas alias {record.get('name')} live VERSION"
        )
    return 0


def _parse_header(item: str) -> tuple[str, str]:
    key, sep, value = item.partition(":")
    if not sep or not key.strip():
        raise UsageError(f"invalid --header {item!r}: expected NAME:VALUE")
    return key.strip(), value.strip()


def _read_data(data: str) -> bytes:
    if not data.startswith("@"):
        return data.encode()
    source = data[1:]
    if source == "-":
        return _read_stdin()
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None


def cmd_invoke(args: argparse.Namespace) -> int:
    headers = [_parse_header(h) for h in args.header]
    if args.data is not None:
        body, has_body = _read_data(args.data), True  # --data '' is still an explicit (empty) body
    else:
        body = _read_stdin()
        has_body = bool(body)
    if args.run_async or args.callback:
        if not args.run_async or (args.method or "POST").upper() != "POST":
            raise UsageError("--callback goes with --async, and an asynchronous call is a POST")
        if args.callback:
            headers.append(("X-Callback-Url", args.callback))
        resp = _client(args).call("POST", async_path(args.name, args.path), data=body, headers=headers)
        print_accepted(resp)
        return 0
    method = (args.method or ("POST" if has_body else "GET")).upper()
    path = "/function/" + quote(args.name, safe="")
    if args.path and args.path != "/":
        path += args.path if args.path.startswith("/") else "/" + args.path
    resp = _client(args).request(method, path, data=body if has_body else None, headers=headers)
    if resp.status >= 400:
        print(f"error: {resp.status} {error_message(resp)}", file=sys.stderr)
        return 1
    write_body(resp.body)
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    data = _json(_client(args).call("GET", "/system/layers"))
    if args.json or not isinstance(data, list):
        dump(data)
        return 0
    rows = []
    for layer in data:
        if not isinstance(layer, dict):
            continue
        packages = layer.get("packages") if isinstance(layer.get("packages"), dict) else {}
        cache = layer.get("import_cache") if isinstance(layer.get("import_cache"), dict) else {}
        rows.append(
            [
                str(layer.get("id", "?")),
                size_text(layer.get("size_bytes")),
                ", ".join(f"{name}=={version}" for name, version in sorted(packages.items())) or "-",
                ", ".join(str(f) for f in layer.get("functions") or []) or "-",
                str(cache.get("state", "-")),
            ]
        )
    print(table(["ID", "SIZE", "PACKAGES", "FUNCTIONS", "IMPORT CACHE"], rows, right=frozenset({1})))
    return 0


def _instances(value: Any) -> str:
    # The record may carry a count or a breakdown by state; show either compactly.
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return fmt(value)


def cmd_list(args: argparse.Namespace) -> int:
    data = _json(_client(args).call("GET", "/system/functions"))
    if args.json:
        dump(data)
        return 0
    records = data.get("functions", []) if isinstance(data, dict) else data
    rows = [
        [
            str(r.get("name", "?")),
            fmt(r.get("version")),
            fmt(r.get("memory_mb")) + "MB" if r.get("memory_mb") is not None else "-",
            fmt(r.get("timeout_s"), "g") + "s" if r.get("timeout_s") is not None else "-",
            fmt(r.get("cpu"), "g"),
            _instances(r.get("instances")),
        ]
        for r in records
        if isinstance(r, dict)
    ]
    print(table(["NAME", "VERSION", "MEMORY", "TIMEOUT", "CPU", "INSTANCES"], rows))
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    data = _json(_client(args).call("GET", "/system/nodes"))
    if args.json:
        dump(data)
        return 0
    rows = [
        [
            str(n.get("node_id", "?")),
            "yes" if n.get("healthy") else "no",
            fmt(n.get("in_flight")),
            fmt(n.get("sandboxes")),
            fmt(n.get("cores")),
            fmt(n.get("memory_mb")) + "MB",
        ]
        for n in (data if isinstance(data, list) else [])
        if isinstance(n, dict)
    ]
    print(
        table(
            ["NODE", "HEALTHY", "IN-FLIGHT", "SANDBOXES", "CORES", "MEMORY"],
            rows,
            right=frozenset({2, 3, 4, 5}),
        )
    )
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    dump(_json(_client(args).call("GET", _fn_path(args.name))))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _client(args).call("DELETE", _fn_path(args.name))
    print(f"deleted {args.name}")
    return 0


def _log_lines(client: GatewayClient, name: str, tail: int | None) -> list[str]:
    data = _json(client.call("GET", "/system/logs", params={"name": name, "tail": tail}))
    lines = data.get("lines", []) if isinstance(data, dict) else data
    return [str(line) for line in lines or []]


def new_lines(seen: Sequence[str], current: Sequence[str]) -> list[str]:
    """The lines of `current` after those already printed (`seen` ends with the last one printed).

    The server only returns a sliding window of lines, so the window's previous end is found
    by matching the last few seen lines; if they scrolled out of the window, all of it is new.
    """
    if not seen:
        return list(current)
    last = seen[-1]
    for i in range(len(current) - 1, -1, -1):
        if current[i] != last:
            continue
        k = min(len(seen), i + 1, FOLLOW_OVERLAP)
        if list(current[i - k + 1 : i + 1]) == list(seen[-k:]):
            return list(current[i + 1 :])
    return list(current)


def cmd_logs(args: argparse.Namespace) -> int:
    client = _client(args)
    lines = _log_lines(client, args.name, args.tail)
    for line in lines:
        print(printable(line))
    if not args.follow:
        return 0
    sys.stdout.flush()
    seen = lines[-FOLLOW_OVERLAP:]
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL_S)
            current = _log_lines(client, args.name, max(FOLLOW_TAIL, args.tail or 0))
            fresh = new_lines(seen, current)
            if fresh:
                # flush per batch: `faas logs -f | grep x` should see lines as they come.
                print("\n".join(printable(line) for line in fresh), flush=True)
            if current:
                seen = current[-FOLLOW_OVERLAP:]
    except KeyboardInterrupt:
        return 0


USAGE_COLUMNS = [  # (key, header, format)
    ("requests", "REQUESTS", "d"),
    ("errors", "ERRORS", "d"),
    ("billed_ms", "BILLED_MS", "d"),
    ("gb_seconds", "GB_SECONDS", ".6f"),
    ("cpu_seconds", "CPU_SECONDS", ".3f"),
    ("net_rx_bytes", "NET_RX_BYTES", "d"),
    ("net_tx_bytes", "NET_TX_BYTES", "d"),
    ("cost", "COST", ".8f"),  # per-request prices are 2e-7: fewer decimals would show 0
]


def _usage_cells(entry: dict[str, Any]) -> list[str]:
    cells = []
    for key, _, spec in USAGE_COLUMNS:
        value = entry.get(key)
        # Integers may come as floats (e.g. 12.0) from a JSON encoder: format by kind.
        if spec == "d" and isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            cells.append(fmt(value, spec))
        except ValueError:
            cells.append(fmt(value))
    return cells


def cmd_usage(args: argparse.Namespace) -> int:
    params = {"function": args.function, "since": args.since, "until": args.until}
    data = _json(_client(args).call("GET", "/system/usage", params=params))
    if args.json or not isinstance(data, dict):
        dump(data)
        return 0
    rows = [
        [str(f.get("function", "?")), *_usage_cells(f)]
        for f in data.get("functions", [])
        if isinstance(f, dict)
    ]
    totals = data.get("totals")
    if isinstance(totals, dict):
        rows.append(["TOTAL", *_usage_cells(totals)])
    if data.get("since") is not None or data.get("until") is not None:
        print(f"usage from {data.get('since') or '-'} to {data.get('until') or '-'}")
    header = ["FUNCTION", *(h for _, h, _ in USAGE_COLUMNS)]
    print(table(header, rows, right=frozenset(range(1, len(header)))))
    return 0


# ---------------------------------------------------------------- main


def _error(message: str) -> None:
    print("error: " + " ".join(message.split()), file=sys.stderr)


COMMANDS = {
    "serve": cmd_serve,
    "deploy": cmd_deploy,
    "invoke": cmd_invoke,
    "list": cmd_list,
    "nodes": cmd_nodes,
    "describe": cmd_describe,
    "delete": cmd_delete,
    "logs": cmd_logs,
    "layers": cmd_layers,
    "usage": cmd_usage,
    **RELEASE_COMMANDS,
    "calls": lambda args: cli_async.cmd_calls(args, _client(args)),
    "call": lambda args: cli_async.cmd_call(args, _client(args)),
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse has printed it already
        return exc.code if isinstance(exc.code, int) else 2
    command = COMMANDS.get(getattr(args, "command", ""))
    if command is None:
        parser.print_help(sys.stderr)
        return 2
    # One line and an exit code for everything: a traceback is never the answer to a user.
    try:
        return command(args)
    except GatewayUnreachable as exc:
        _error(f"cannot reach the gateway at {exc.url} (is `faas serve` running?)")
        return 2
    except (UsageError, BundleError) as exc:
        _error(str(exc))
        return 2
    except ApiError as exc:
        hint = " (pass --token or set FAAS_TOKEN)" if exc.status == 401 and not _token(args) else ""
        _error(exc.message + hint)
        return 1
    except GatewayError as exc:
        _error(exc.message)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`faas logs x | head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as exc:
        _error(f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
