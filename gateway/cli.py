"""`faas`: the command line (docs/CLI.md).

Every command but `serve` is a thin HTTP client of the gateway. `serve` imports the
server lazily, so the client commands never pay for importing aiohttp.
Exit codes: 0 ok, 1 an error answer or failure, 2 bad usage or an unreachable gateway, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from gateway.bundle import BundleError, build_deploy_body, parse_env
from gateway.client import ApiError, GatewayClient, GatewayError, GatewayUnreachable, Response, error_message
from invoker.fields import DEPLOY_FIELDS

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
FOLLOW_INTERVAL_S = 0.5
# `logs --follow` asks for this many lines per poll, so a burst between two polls is not lost.
FOLLOW_TAIL = 1000
# How many of the previously seen lines must line up to place the new ones.
FOLLOW_OVERLAP = 20


class UsageError(Exception):
    """Bad input found after argparse accepted the command line; exit 2 like argparse's own."""


# ---------------------------------------------------------------- parser


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


def _deploy_flags(parser: argparse.ArgumentParser) -> None:
    """One option per deploy field that has one, named, typed and explained by the field table."""
    for f in DEPLOY_FIELDS:
        if f.cli_flag is None:
            continue
        unit = f", in {f.unit}" if f.unit else ""
        default = (
            ""
            if f.required or f.kind == "object"
            else f" (default {'none' if f.default is None else f.default})"
        )
        help_text = f"{f.description.rstrip('.')}{unit}{default}"
        if f.kind == "object":
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
                f.cli_flag, dest=f.name, metavar=f.cli_metavar, type=FLAG_TYPES[f.kind], help=help_text
            )


def deploy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The deploy body's optional fields from the parsed flags (None: not given, the server's default)."""
    options: dict[str, Any] = {}
    for f in DEPLOY_FIELDS:
        if f.cli_flag is None:
            continue
        value = getattr(args, f.name)
        # The only object-valued flag is --env K=V, repeated.
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
        "--deploy",
        metavar="PATH",
        nargs="+",
        action="extend",
        default=[],
        help="deploy these .py files or function directories at start",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("deploy", parents=[common], help="create or update a function")
    p.add_argument("path", metavar="PATH", help="a .py file or a directory")
    _deploy_flags(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("invoke", parents=[common], help="call a function")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--data", metavar="TEXT|@FILE", help="request body; @FILE reads a file, @- stdin")
    p.add_argument("--method", metavar="M", help="HTTP method (default POST with a body, else GET)")
    p.add_argument("--path", metavar="P", help="path after /function/NAME, may hold a ?query")
    p.add_argument("--header", metavar="K:V", action="append", default=[], help="request header (repeatable)")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("list", parents=[common], help="list functions")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", parents=[common], help="show a function record")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("delete", parents=[common], help="delete a function")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("logs", parents=[common], help="show a function's logs")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--tail", metavar="N", type=_non_negative, help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("usage", parents=[common], help="usage and cost per function")
    p.add_argument("--function", metavar="NAME", help="only this function")
    p.add_argument("--since", metavar="T", help="from T (ISO 8601 or Unix seconds)")
    p.add_argument("--until", metavar="T", help="until T (ISO 8601 or Unix seconds)")
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(func=cmd_usage)
    return parser


# ---------------------------------------------------------------- helpers


def _gateway_url(args: argparse.Namespace) -> str:
    return getattr(args, "gateway", None) or os.environ.get("FAAS_GATEWAY") or DEFAULT_GATEWAY


def _token(args: argparse.Namespace) -> str | None:
    return getattr(args, "token", None) or os.environ.get("FAAS_TOKEN") or None


def _client(args: argparse.Namespace) -> GatewayClient:
    try:
        return GatewayClient(_gateway_url(args), _token(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _json(resp: Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise GatewayError(f"the gateway answered {resp.status} with a body that is not JSON") from None


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _fn_path(name: str) -> str:
    return "/system/functions/" + quote(name, safe="")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> str:
    everything = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in everything) for i in range(len(header))]
    lines = []
    for row in everything:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _fmt(value: Any, spec: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return format(value, spec)


def _write_body(body: bytes) -> None:
    """The body as bytes, untouched; a newline only to keep a terminal prompt off the last line."""
    out = sys.stdout
    out.flush()
    if body and not body.endswith(b"\n") and out.isatty() and _is_text(body):
        body += b"\n"
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(body.decode("utf-8", errors="replace"))
    else:
        buffer.write(body)
    out.flush()
    if buffer is not None:
        buffer.flush()


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# What a log line may not send to a terminal as is: C0 controls but tab, DEL,
# C1 controls (U+0080-U+009F: 8-bit CSI and OSC to some terminals), and the
# bidirectional overrides that make text display in another order.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(line: str) -> str:
    """A log line, which a function wrote, made safe to print: escape
    sequences could move the cursor and rewrite earlier lines (a forged
    REPORT line), retitle the terminal or set the clipboard (OSC 52). Each
    such character is shown as a visible \\xNN (or \\uNNNN) escape."""
    return _UNPRINTABLE.sub(_escape, line)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _read_stdin() -> bytes:
    stream = sys.stdin
    try:
        if stream is None or stream.isatty():
            return b""
        buffer = getattr(stream, "buffer", None)
        return buffer.read() if buffer is not None else stream.read().encode()
    except (OSError, ValueError):  # closed or unreadable stdin: same as none
        return b""


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
        deploy_paths=list(args.deploy),
    )
    return int(code or 0)


def cmd_deploy(args: argparse.Namespace) -> int:
    # Check everything local before building a possibly large body or touching the network.
    body = build_deploy_body(args.path, **deploy_options(args))
    resp = _client(args).call("POST", "/system/functions", json_body=body)
    record = _json(resp)
    record = record if isinstance(record, dict) else {}
    how = "created" if resp.status == 201 else "updated"
    print(f"deployed {record.get('name', body['name'])} version {record.get('version', '?')} ({how})")
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
    method = (args.method or ("POST" if has_body else "GET")).upper()
    path = "/function/" + quote(args.name, safe="")
    if args.path and args.path != "/":
        path += args.path if args.path.startswith("/") else "/" + args.path
    resp = _client(args).request(method, path, data=body if has_body else None, headers=headers)
    if resp.status >= 400:
        print(f"error: {resp.status} {error_message(resp)}", file=sys.stderr)
        return 1
    _write_body(resp.body)
    return 0


def _instances(value: Any) -> str:
    # The record may carry a count or a breakdown by state; show either compactly.
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return _fmt(value)


def cmd_list(args: argparse.Namespace) -> int:
    data = _json(_client(args).call("GET", "/system/functions"))
    if args.json:
        _dump(data)
        return 0
    records = data.get("functions", []) if isinstance(data, dict) else data
    rows = [
        [
            str(r.get("name", "?")),
            _fmt(r.get("version")),
            _fmt(r.get("memory_mb")) + "MB" if r.get("memory_mb") is not None else "-",
            _fmt(r.get("timeout_s"), "g") + "s" if r.get("timeout_s") is not None else "-",
            _fmt(r.get("cpu"), "g"),
            _instances(r.get("instances")),
        ]
        for r in records
        if isinstance(r, dict)
    ]
    print(_table(["NAME", "VERSION", "MEMORY", "TIMEOUT", "CPU", "INSTANCES"], rows))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    _dump(_json(_client(args).call("GET", _fn_path(args.name))))
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
            cells.append(_fmt(value, spec))
        except ValueError:
            cells.append(_fmt(value))
    return cells


def cmd_usage(args: argparse.Namespace) -> int:
    params = {"function": args.function, "since": args.since, "until": args.until}
    data = _json(_client(args).call("GET", "/system/usage", params=params))
    if args.json or not isinstance(data, dict):
        _dump(data)
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
    print(_table(header, rows, right=frozenset(range(1, len(header)))))
    return 0


# ---------------------------------------------------------------- main


def _error(message: str) -> None:
    print("error: " + " ".join(message.split()), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse has printed it already
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    # One line and an exit code for everything: a traceback is never the answer to a user.
    try:
        return args.func(args)
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
