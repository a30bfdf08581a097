"""Invocation bodies in the gateway's memory: read only once a call can be
taken, bounded all together, and the memory given back.

Every call holds its body from the moment it is read until it is answered
(a call waiting for a sandbox too). `BufferedBodies` bounds what all calls
hold together (`max_buffered_bytes`, 503 past it), so held connections
cannot grow the server without bound. Large bodies are allocated outside
the heap (glibc's mmap threshold fixed low) and the heap is trimmed after
them, so the memory goes back to the system once they are answered.
"""

from __future__ import annotations

import contextlib
import ctypes
import time

from aiohttp import web

from invoker.errors import PayloadTooLarge, Unavailable

M_MMAP_THRESHOLD = -3
# Allocations from this size up get their own mapping, given back on free.
MMAP_THRESHOLD_BYTES = 256 * 1024
# After this many bytes of bodies were let go, trim the heap (at most once a second).
TRIM_AFTER_BYTES = 8 * 1024 * 1024
TRIM_INTERVAL_S = 1.0

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)
    _LIBC.mallopt  # noqa: B018 - glibc only
except (OSError, AttributeError):
    _LIBC = None


def give_large_allocations_back() -> None:
    """Fix glibc's mmap threshold (else it grows after the first large free
    and later bodies stay on the heap for good). Once, at server start."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


class BufferedBodies:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self._released_since_trim = 0
        self._last_trim = 0.0

    def _take(self, size: int) -> None:
        if self.held_bytes + size > self.limit_bytes:
            raise Unavailable(
                f"no capacity: request bodies held by calls in progress are at the limit of "
                f"{self.limit_bytes} bytes (max_buffered_bytes); try again shortly"
            )
        self.held_bytes += size

    def _give(self, size: int) -> None:
        self.held_bytes -= size
        self._released_since_trim += size
        now = time.monotonic()
        if (
            _LIBC is not None
            and self._released_since_trim >= TRIM_AFTER_BYTES
            and now - self._last_trim >= TRIM_INTERVAL_S
        ):
            self._released_since_trim = 0
            self._last_trim = now
            _LIBC.malloc_trim(0)

    @contextlib.asynccontextmanager
    async def read(self, request: web.Request, limit: int):  # type: ignore[no-untyped-def]
        """The request's body, counted against the bound until the block ends.
        413 over `limit`; 503 when all bodies together would pass the bound
        (decided from Content-Length before reading, when there is one)."""
        declared = request.content_length
        if declared is not None and declared > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit} bytes")
        held = 0
        try:
            if declared:
                self._take(declared)
                held = declared
            chunks = []
            size = 0
            async for chunk in request.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
                if size > held:
                    self._take(size - held)
                    held = size
                chunks.append(chunk)
            body = b"".join(chunks)
            del chunks
            yield body
        finally:
            self._give(held)
