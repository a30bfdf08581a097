"""What every command of the `faas` CLI needs: its client of the gateway,
JSON answers, paths, stdin, and the usage error."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any
from urllib.parse import quote

from gateway.client import GatewayClient, GatewayError, Response

from .cli_args import DEFAULT_GATEWAY


class UsageError(Exception):
    """Bad input found after argparse accepted the command line; exit 2 like argparse's own."""


def gateway_url(args: argparse.Namespace) -> str:
    return getattr(args, "gateway", None) or os.environ.get("FAAS_GATEWAY") or DEFAULT_GATEWAY


def token(args: argparse.Namespace) -> str | None:
    return getattr(args, "token", None) or os.environ.get("FAAS_TOKEN") or None


def client(args: argparse.Namespace) -> GatewayClient:
    try:
        return GatewayClient(gateway_url(args), token(args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def json_answer(resp: Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise GatewayError(f"the gateway answered {resp.status} with a body that is not JSON") from None


def function_path(name: str) -> str:
    return "/system/functions/" + quote(name, safe="")


def read_stdin() -> bytes:
    stream = sys.stdin
    try:
        if stream is None or stream.isatty():
            return b""
        buffer = getattr(stream, "buffer", None)
        return buffer.read() if buffer is not None else stream.read().encode()
    except (OSError, ValueError):  # closed or unreadable stdin: same as none
        return b""
