"""Callbacks of asynchronous calls: the egress policy, delivery with the
section's headers to a real receiver on 127.0.0.1, retries with backoff,
and giving up (recorded, counted, logged) without holding anything up."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import generate_latest

from invoker import async_worker, callbacks
from invoker.callback_policy import CallbackPolicy, as_address
from invoker.callbacks import CallbackRefused, CheckedResolver
from invoker.errors import BadRequest
from invoker.invoker import Invoker

from .fakes import FakeFactory
from .test_async_worker import deploy_body, ended, eventually, invocation, make_invoker

HOST = frozenset({ipaddress.ip_address("203.0.113.7")})


def policy(*allow: str) -> CallbackPolicy:
    return CallbackPolicy(allow, host_addresses=lambda: HOST)


@pytest.mark.parametrize(
    ("address", "allow", "refused"),
    [
        ("169.254.169.254", (), "link-local"),
        ("169.254.169.254", ("169.254.0.0/16",), "link-local"),  # never, whatever is allowed
        ("fe80::1", ("::/0",), "link-local"),
        ("::ffff:169.254.169.254", (), "link-local"),
        ("224.0.0.1", (), "multicast"),
        ("127.0.0.1", (), "private or loopback"),
        ("10.1.2.3", (), "private or loopback"),
        ("100.64.0.1", (), "private or loopback"),
        ("fd00::1", (), "private or loopback"),
        ("203.0.113.7", (), "this host"),
        ("127.0.0.1", ("127.0.0.0/8",), None),
        ("203.0.113.7", ("203.0.113.7/32",), None),
        ("93.184.216.34", (), None),
    ],
)
def test_the_policy(address: str, allow: tuple[str, ...], refused: str | None) -> None:
    parsed = as_address(address)
    assert parsed is not None
    reason = policy(*allow).refusal(parsed)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("http:///nohost", "http:// or https://"),
        ("http://user:pw@example.com/", "user:password"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]:8080/", "private or loopback"),
        ("http://example.com:99999/", "not a URL"),
        ("http://example.com/" + "x" * 3000, "over 2048"),
    ],
)
def test_bad_callback_urls_are_refused_up_front(url: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        policy().check_url(url)


async def test_a_name_is_checked_on_what_it_resolves_to() -> None:
    with pytest.raises(CallbackRefused, match="private or loopback"):
        await CheckedResolver(policy()).resolve("localhost", 80)
    allowed = await CheckedResolver(policy("127.0.0.0/8", "::1/128")).resolve("localhost", 80)
    assert allowed and all(ipaddress.ip_address(r["host"]).is_loopback for r in allowed)


class Receiver:
    """A callback receiver on 127.0.0.1 that answers with the statuses it is given."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver([])
    app = web.Application()
    app.router.add_post("/cb", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    target.url = f"http://127.0.0.1:{port}/cb"
    yield target
    await runner.cleanup()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(callbacks, "FIRST_BACKOFF_S", 0.01)
    monkeypatch.setattr(async_worker, "FIRST_BACKOFF_S", 0.01)


@pytest.fixture
async def invoker(tmp_path: Path) -> AsyncIterator[Invoker]:
    factory = FakeFactory()
    async with make_invoker(tmp_path, factory, callback_allow=("127.0.0.0/8",), callback_retries=2) as inv:
        await inv.deploy(deploy_body())
        yield inv


def metric(invoker: Invoker, name: str) -> float:
    for line in generate_latest(invoker.metrics.registry).decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_the_result_is_posted_with_the_call_headers(invoker: Invoker, receiver: Receiver) -> None:
    call_id = await invoker.enqueue_async(invocation("a-1"), callback_url=receiver.url)
    await ended(invoker, call_id)
    await eventually(_delivered(invoker, call_id), "the callback to be delivered")
    ((headers, body),) = receiver.received
    assert body == b"hello from fake-1"
    assert headers["X-Call-Id"] == "a-1" and headers["X-Function-Name"] == "f"
    assert headers["X-Function-Status"] == "200" and float(headers["X-Duration-Seconds"]) >= 0
    assert headers["Content-Type"] == "text/plain"  # the function's own headers travel too


async def test_a_failing_callback_is_retried_then_recorded_failed(
    invoker: Invoker, receiver: Receiver
) -> None:
    receiver.statuses = [503, 200]
    await invoker.enqueue_async(invocation("a-1"), callback_url=receiver.url)
    await eventually(_delivered(invoker, "a-1"), "the callback to be delivered on its second try")
    assert len(receiver.received) == 2
    receiver.statuses = [500] * 10
    await invoker.enqueue_async(invocation("a-2"), callback_url=receiver.url)
    await eventually(_callback_is(invoker, "a-2", "failed"), "the callback to be given up")
    assert len(receiver.received) == 2 + 3  # the first try and callback_retries=2 more
    assert metric(invoker, "faas_async_callback_failures_total") == 1
    assert any("a-2 callback to" in line and "failed after 3 tries" in line for line in invoker.logs("f", 50))


async def test_a_dead_receiver_holds_up_no_other_call(invoker: Invoker, receiver: Receiver) -> None:
    dead = "http://127.0.0.1:9/never"  # the discard port: nothing listens
    await invoker.enqueue_async(invocation("to-dead"), callback_url=dead)
    await invoker.enqueue_async(invocation("to-live"), callback_url=receiver.url)
    await eventually(_delivered(invoker, "to-live"), "the live callback")
    await eventually(_callback_is(invoker, "to-dead", "failed"), "the dead callback to be given up")


async def test_a_name_resolving_to_loopback_is_refused_without_callback_allow(tmp_path: Path) -> None:
    async with make_invoker(tmp_path, FakeFactory()) as invoker:
        await invoker.deploy(deploy_body())
        with pytest.raises(BadRequest, match="private or loopback"):
            await invoker.enqueue_async(invocation("a-0"), callback_url="http://127.0.0.1:9/cb")
        await invoker.enqueue_async(invocation("a-1"), callback_url="http://localhost:9/cb")
        await eventually(_callback_is(invoker, "a-1", "failed"), "the callback to be refused")
        assert any("private or loopback" in line for line in invoker.logs("f", 50))


def _delivered(invoker: Invoker, call_id: str) -> Any:
    return _callback_is(invoker, call_id, "delivered")


def _callback_is(invoker: Invoker, call_id: str, status: str) -> Any:
    async def check() -> bool:
        return (await invoker.async_call(call_id)).callback_status == status

    return check


def test_receiver_fixture_is_loopback_only(receiver: Receiver) -> None:
    assert receiver.url.startswith("http://127.0.0.1:")


async def test_policy_does_not_block_the_loop_reading_host_addresses() -> None:
    reads = []
    checked = CallbackPolicy((), host_addresses=lambda: reads.append(1) or HOST)
    for _ in range(100):
        checked.refusal(ipaddress.ip_address("93.184.216.34"))
    await asyncio.sleep(0)
    assert len(reads) == 1  # read once, kept for HOST_ADDRESSES_TTL_S
