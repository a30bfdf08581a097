"""One HTTP/1.1 exchange over a raw socket, for tests that send what a
client library would not (slow bodies, odd targets, Expect)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestServer


async def exchange(
    srv: TestServer, data: bytes, *more: bytes, pause_s: float = 0.0
) -> tuple[int, dict[str, str], Any]:
    """Send `data`, then each of `more` after `pause_s`; read to the close.
    (status, headers lower-cased, body as JSON) of the final answer: an
    interim 100 Continue is skipped."""
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    writer.write(data)
    for part in more:
        await asyncio.sleep(pause_s)
        writer.write(part)
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if head.split(b" ", 2)[1] == b"100":
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body.startswith(b"{") else body
