"""Connecting the NATS asynchronous queue (invoker/async_queue_nats.py) to
its server, creating its stream, bucket and consumers, and NATS's failures
as the invoker's errors: every request within a deadline, a failure or a
timeout (NATS down, reconnecting) Unavailable (503), never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StreamConfig
from nats.js.kv import KeyValue

from .errors import Unavailable

log = logging.getLogger("faas.async")

# Each NATS request's deadline.
REQUEST_TIMEOUT_S = 5.0


@contextlib.asynccontextmanager
async def nats_errors(what: str) -> AsyncIterator[None]:
    """NATS's failures (and timeouts) as Unavailable, within a deadline; a
    compare-and-set that lost and a missing key are the caller's to handle."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S * 2):
            yield
    except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.NotFoundError):
        raise
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        raise Unavailable(
            f"the asynchronous queue (NATS) could not {what}: {type(exc).__name__} {exc}"
        ) from None


async def connect(url: str, on_reconnect: Callable[[], None]) -> Client:
    """A connection that reconnects for as long as it is open (and then calls `on_reconnect`)."""

    async def reconnected() -> None:
        log.info("NATS: reconnected")
        on_reconnect()

    try:
        # Within a deadline: nats-py keeps trying a server it cannot reach.
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await nats.connect(
                url, connect_timeout=REQUEST_TIMEOUT_S, max_reconnect_attempts=-1,
                reconnect_time_wait=0.5, error_cb=_log_error, reconnected_cb=reconnected, name="faas-invoker",
            )  # fmt: skip
    except TimeoutError:
        raise Unavailable(f"cannot connect to NATS at {url} within {REQUEST_TIMEOUT_S:g} s") from None
    except (nats.errors.Error, OSError) as exc:
        raise Unavailable(f"cannot connect to NATS at {url}: {type(exc).__name__} {exc}") from None


async def stream_and_bucket(js: JetStreamContext, namespace: str) -> KeyValue:
    """The work stream (created if missing) and the calls' bucket."""
    async with nats_errors("create its stream and bucket"):
        name = f"{namespace}_async"
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            # Work-queue retention: a message is gone once acked (a call finished).
            config = StreamConfig(
                name=name, subjects=[f"{namespace}.async.*"], retention=RetentionPolicy.WORK_QUEUE
            )
            await js.add_stream(config)
        try:
            return await js.key_value(f"{namespace}_async_calls")
        except nats.js.errors.BucketNotFoundError:
            return await js.create_key_value(bucket=f"{namespace}_async_calls", history=1)


async def function_consumer(
    js: JetStreamContext, stream: str, name: str, subject: str, ack_wait_s: float
) -> None:
    """A function's durable pull consumer, shared by every invoker; one made
    by an invoker with another ack wait is used as it is."""
    config = ConsumerConfig(
        durable_name=name, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait_s, max_deliver=-1, max_ack_pending=-1,
    )  # fmt: skip
    async with nats_errors("create a consumer"):
        try:
            await js.add_consumer(stream, config)
        except nats.js.errors.BadRequestError as exc:
            await js.consumer_info(stream, name)  # it exists: use it
            log.warning("consumer %s exists with other settings (%s): used as it is", name, exc)


async def _log_error(exc: Exception) -> None:
    log.warning("NATS: %s: %s", type(exc).__name__, exc)
