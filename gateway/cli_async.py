"""The `faas` commands of asynchronous calls (docs/CLI.md): `faas invoke
NAME --async [--callback URL]` (the request part is cli.cmd_invoke's),
`faas calls [NAME] [--status S]` and `faas call CALL_ID`."""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any
from urllib.parse import quote

from gateway.client import GatewayClient, GatewayError, Response

from .cli_output import dump, fmt, table, write_body


def async_path(name: str, path: str | None) -> str:
    url = "/async-function/" + quote(name, safe="")
    if path and path != "/":
        url += path if path.startswith("/") else "/" + path
    return url


def print_accepted(resp: Response) -> None:
    """The call id of a 202, alone on its line (so `id=$(faas invoke f --async)` works)."""
    try:
        call_id = resp.json()["call_id"]
    except (ValueError, KeyError, TypeError):
        raise GatewayError(f"the gateway answered {resp.status} without a call id") from None
    print(call_id)


def _json(resp: Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise GatewayError(f"the gateway answered {resp.status} with a body that is not JSON") from None


def cmd_calls(args: argparse.Namespace, client: GatewayClient) -> int:
    params = {"function": args.name, "status": args.status, "limit": args.limit, "cursor": args.cursor}
    data = _json(client.call("GET", "/system/async", params=params))
    if args.json or not isinstance(data, dict):
        dump(data)
        return 0
    rows = [
        [
            str(c.get("call_id", "?")),
            str(c.get("function", "?")),
            str(c.get("status", "?")),
            fmt(c.get("attempts")),
            fmt(c.get("result_status")),
            str(c.get("created_at") or "-"),
        ]
        for c in data.get("calls", [])
        if isinstance(c, dict)
    ]
    print(table(["CALL_ID", "FUNCTION", "STATUS", "ATTEMPTS", "RESULT", "CREATED"], rows))
    if data.get("next_cursor") is not None:
        print(f"more: faas calls ... --cursor {data['next_cursor']}", file=sys.stderr)
    return 0


def cmd_call(args: argparse.Namespace, client: GatewayClient) -> int:
    data = _json(client.call("GET", "/system/async/" + quote(args.call_id, safe="")))
    if not args.body:
        dump(data)
        return 0
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, dict):
        raise GatewayError(f"call {args.call_id} has no result yet (status {data.get('status')})")
    write_body(base64.b64decode(result.get("body") or ""))
    return 0 if int(result.get("status", 500)) < 400 else 1


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("calls", parents=[common], help="list asynchronous calls")
    p.add_argument("name", metavar="NAME", nargs="?", help="only this function's")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", metavar="N", type=int, default=100, help="at most N calls (default 100)")
    p.add_argument(
        "--cursor", metavar="C", type=int, help="calls after this cursor (printed when more remain)"
    )
    p.add_argument("--json", action="store_true", help="print the JSON answer")
    p.set_defaults(command="calls")

    p = sub.add_parser("call", parents=[common], help="show an asynchronous call and its result")
    p.add_argument("call_id", metavar="CALL_ID")
    p.add_argument(
        "--body", action="store_true", help="print only the result's body (exit 1 for an error status)"
    )
    p.set_defaults(command="call")
