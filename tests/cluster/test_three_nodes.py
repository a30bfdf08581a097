"""Three invokers, each in its own network namespace with its own address,
data directory and cgroups, and two gateways, on a real PostgreSQL
(tests/cluster/topology.py draws the network). The tests run in order on
one cluster; the last one kills an invoker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import pytest

from tests.helpers import REPO, Response, Server, wait_until
from tests.services import nats_server, postgres_at

from .topology import HUB, INVOKER_PORT, ClusterNet

pytestmark = pytest.mark.root

TOKEN = "cluster-token-for-the-three-node-test"
ACK_WAIT_S = 3
NODE = "X-Faas-Node"
HELLO = 'def handle(event, context):\n    return "hi from " + context.function_name\n'
SLEEPY = (
    "import time\n\n\ndef handle(event, context):\n"
    "    time.sleep(float(event.query.get('s', '0.3')))\n    return 'slept'\n"
)


@dataclass
class Cluster:
    invokers: list[Server]
    gateways: list[Server]
    database: str  # its unix-socket URL, for the test's own queries

    def node_of(self, server: Server) -> str:
        return f"{server.host}:{server.port}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("three-nodes")
    net = ClusterNet(3)
    servers: list[Server] = []
    try:
        with postgres_at(HUB, net.hub.path) as pg, nats_server(listen=HUB, netns=net.hub) as nats:
            with psycopg.connect(pg.local_url(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE faas")
            config = base / "invoker.toml"
            # A call whose invoker died is redelivered ACK_WAIT_S later.
            config.write_text(f"queue_ack_wait_s = {ACK_WAIT_S}\n")
            common = ("--database", pg.url("faas"), "--cluster-token", TOKEN, "--queue", nats)
            invokers = [
                Server(
                    base / f"invoker{i}" / "data",  # its log beside: serve-8080.log
                    netns=net.nodes[i],
                    host=net.address(i),
                    port=INVOKER_PORT,
                    extra_args=("--role", "invoker", *common, "--config", str(config)),
                )
                for i in range(3)
            ]
            # The second gateway is two processes on one port (--workers 2, SO_REUSEPORT).
            gateways = [
                Server(
                    base / f"gateway{i}", netns=net.hub, extra_args=("--role", "gateway", *common, *workers)
                )
                for i, workers in enumerate([(), ("--workers", "2")])
            ]
            for server in [*invokers, *gateways]:
                servers.append(server.start(timeout_s=60))
            cluster = Cluster(invokers, gateways, pg.local_url("faas"))
            wait_until(
                lambda: len(cluster.gateways[0].request("GET", "/system/nodes").json()) == 3, 5, "3 nodes"
            )
            yield cluster
            for server in servers:
                server.stop()
            servers.clear()
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.stop(signal.SIGKILL)
        net.close()


def test_an_invoker_refuses_everything_but_its_probes_without_the_cluster_token(cluster: Cluster) -> None:
    invoker = cluster.invokers[0]
    assert invoker.request("GET", "/healthz").status == 200
    assert invoker.request("GET", "/readyz").status == 200
    for method, path in (("GET", "/system/functions"), ("GET", "/internal/channel"), ("GET", "/function/x")):
        assert invoker.request(method, path).status == 401, path
        wrong = invoker.request(method, path, headers={"X-Faas-Cluster-Token": TOKEN + "x"})
        assert wrong.status == 401, path
    right = invoker.request("GET", "/system/functions", headers={"X-Faas-Cluster-Token": TOKEN})
    assert right.status == 200


def test_calls_spread_over_invokers_by_function_and_stick_to_their_home(cluster: Cluster) -> None:
    gw0, gw1 = cluster.gateways
    assert gw1.proc is not None
    with open(f"/proc/{gw1.proc.pid}/task/{gw1.proc.pid}/children") as f:
        assert len(f.read().split()) == 2  # its two workers: each call below reaches either
    names = [f"fn{i}" for i in range(8)]
    for name in names:
        gw0.deploy_ok(name, HELLO)
    homes = {}
    for name in names:
        seen = set()
        for gateway in (gw0, gw1, gw0, gw1, gw1, gw1):
            resp = gateway.invoke(name)
            assert resp.status == 200, resp.body
            assert resp.body == f"hi from {name}".encode()
            seen.add(resp.headers[NODE])
        assert len(seen) == 1, f"{name} served by {seen}"  # both gateways route it alike
        homes[name] = seen.pop()
    assert len(set(homes.values())) >= 2, homes
    assert set(homes.values()) <= {cluster.node_of(s) for s in cluster.invokers}


def test_a_deploy_through_one_gateway_is_callable_through_the_other_within_a_second(cluster: Cluster) -> None:
    gw0, gw1 = cluster.gateways
    gw0.deploy_ok("fresh", HELLO)
    t0 = time.monotonic()
    wait_until(
        lambda: gw1.invoke("fresh").status == 200, 1.0, "the deploy callable through the other gateway"
    )
    assert time.monotonic() - t0 < 1.0


def test_system_nodes_and_faas_nodes_list_the_invokers(cluster: Cluster) -> None:
    gw0 = cluster.gateways[0]
    nodes = gw0.request("GET", "/system/nodes").json()
    assert sorted(n["node_id"] for n in nodes) == sorted(cluster.node_of(s) for s in cluster.invokers)
    for node in nodes:
        assert node["healthy"] and node["ready"] and node["cores"] >= 1 and node["memory_mb"] > 0
        assert node["sandboxes"] >= 0 and node["in_flight"] >= 0
    hub = gw0.netns
    assert hub is not None
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{_holder_pid(gw0)}/ns/net", sys.executable, "-m", "gateway.cli",
         "--gateway", gw0.url, "nodes"],
        capture_output=True, text=True, cwd=REPO, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == [
        "NODE",
        "HEALTHY",
        "IN-FLIGHT",
        "SANDBOXES",
        "CORES",
        "MEMORY",
    ]
    for server in cluster.invokers:
        assert cluster.node_of(server) in out.stdout


def test_logs_and_instances_through_a_gateway_cover_every_invoker(cluster: Cluster) -> None:
    gw0, gw1 = cluster.gateways
    gw0.deploy_ok(
        "logged", "def handle(event, context):\n    print('mark', event.query['m'])\n    return 'ok'\n"
    )
    # Each invoker serves one call (the gateways would send them all home):
    # its logs hold that call's lines only.
    for i, server in enumerate(cluster.invokers):
        wait_until(
            lambda server=server, i=i: server.request(
                "GET", f"/function/logged?m={i}", headers={"X-Faas-Cluster-Token": TOKEN}
            ).status == 200,
            5,
            "a direct call",
        )  # fmt: skip
        time.sleep(0.01)  # distinct stamps, so the expected order is the calls' order
    for gateway in (gw0, gw1):
        resp = gateway.request("GET", "/system/logs?name=logged&tail=100")
        assert resp.status == 200, resp.text
        marks = [line.split()[-1] for line in resp.json()["lines"] if " mark " in line]
        assert marks == ["0", "1", "2"], resp.json()["lines"]
        stamps = [line.split()[0] for line in resp.json()["lines"]]
        assert stamps == sorted(stamps)
        assert sorted(resp.headers[NODE].split(", ")) == sorted(cluster.node_of(s) for s in cluster.invokers)
    last = gw0.request("GET", "/system/logs?name=logged&tail=1").json()["lines"]
    assert len(last) == 1 and "REPORT" in last[0]  # each call's REPORT line comes after its output
    assert gw0.request("GET", "/system/logs?name=nobody").status == 404
    assert gw0.request("GET", "/system/logs?name=logged&tail=x").status == 400
    # Each invoker keeps the sandbox that served its call warm: 3 in all.
    assert gw1.request("GET", "/system/functions/logged").json()["instances"] == 3
    listed = {r["name"]: r for r in gw0.request("GET", "/system/functions").json()}
    assert listed["logged"]["instances"] == 3
    assert gw0.request("GET", "/system/functions/nobody").status == 404


def test_a_full_home_spills_over_to_the_next_invokers(cluster: Cluster) -> None:
    gw0 = cluster.gateways[0]
    gw0.deploy_ok("sleepy", SLEEPY)
    home = gw0.invoke("sleepy", "?s=0").headers[NODE]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: gw0.invoke("sleepy", "?s=1"), range(12)))
    assert all(a.status == 200 for a in answers), [a.body for a in answers]
    served = Counter(a.headers[NODE] for a in answers)
    assert len(served) >= 2, served
    # The bound: ceil(1.25 * 12 / 3) = 5 calls at most on one invoker at once.
    assert served[home] <= 5 and max(served.values()) <= 5, served


def test_a_draining_invoker_finishes_its_calls_while_new_ones_go_elsewhere(cluster: Cluster) -> None:
    gw0, gw1 = cluster.gateways
    gw0.deploy_ok("patient", SLEEPY)
    home_node = gw0.invoke("patient", "?s=0").headers[NODE]
    home = next(s for s in cluster.invokers if cluster.node_of(s) == home_node)
    running: list[Response] = []
    call = threading.Thread(target=lambda: running.append(gw0.invoke("patient", "?s=3")))
    call.start()
    # Heartbeats are up to 1 s old when read (0.5 s beat, 0.5 s watch): past
    # that, in_flight on the home is this call, not the one that found it.
    time.sleep(1.2)
    wait_until(
        lambda: any(
            n["in_flight"] for n in gw1.request("GET", "/system/nodes").json() if n["node_id"] == home_node
        ),
        5,
        "the call running on its home",
    )
    assert home.proc is not None
    home.proc.send_signal(signal.SIGTERM)  # a rolling upgrade: drain, then exit
    # New calls of the same function go elsewhere while the home drains ...
    wait_until(
        lambda: gw1.invoke("patient", "?s=0").headers.get(NODE) not in (None, home_node), 3, "calls elsewhere"
    )
    for _ in range(5):
        resp = gw1.invoke("patient", "?s=0")
        assert resp.status == 200 and resp.headers[NODE] != home_node, resp.body
    # ... and the call it was running ends well.
    call.join(30)
    assert running and running[0].status == 200 and running[0].headers[NODE] == home_node, running
    assert home.proc.wait(30) == 0  # drained and exited on its own
    home.stop()
    home.start(timeout_s=60)
    wait_until(lambda: len(gw0.request("GET", "/system/nodes").json()) == 3, 5, "the invoker back")


def test_an_async_call_on_a_killed_invoker_runs_again_on_another(cluster: Cluster) -> None:
    gw0, gw1 = cluster.gateways
    gw0.deploy_ok("later", SLEEPY)
    queued = gw0.request("POST", "/async-function/later?s=4", body=b"")
    assert queued.status == 202, queued.body
    call_id = queued.json()["call_id"]

    def running_on() -> str | None:
        busy = [n["node_id"] for n in gw1.request("GET", "/system/nodes").json() if n["in_flight"]]
        return busy[0] if busy else None

    time.sleep(1.2)  # heartbeats older than the call's start are gone (see the draining test)
    seen: list[str | None] = [None]
    wait_until(lambda: seen.__setitem__(0, running_on()) or seen[0], 10, "the asynchronous call running")
    victim_node = seen[0]
    victim = next(s for s in cluster.invokers if cluster.node_of(s) == victim_node)
    victim.stop(signal.SIGKILL)
    killed = time.monotonic()

    def status() -> dict[str, object]:
        return gw1.request("GET", f"/system/async/{call_id}").json()

    wait_until(
        lambda: status()["status"] == "succeeded", ACK_WAIT_S + 20, "the call run again", detail=status
    )
    done = status()
    assert done["attempts"] == 2 and done["result_status"] == 200, done
    print(f"async redelivered and done {time.monotonic() - killed:.2f} s after the kill")
    with psycopg.connect(cluster.database) as conn:
        attempts = conn.execute(
            "SELECT attempt, status FROM usage WHERE call_id = %s ORDER BY attempt", (call_id,)
        )
        assert [row[0] for row in attempts.fetchall()][-1] == 2
    victim.start(timeout_s=60)
    wait_until(lambda: len(gw0.request("GET", "/system/nodes").json()) == 3, 5, "the invoker back")


def test_a_killed_invoker_is_routed_around_within_3_s(cluster: Cluster) -> None:
    gw0, gw1 = cluster.gateways
    gw0.deploy_ok("slow", SLEEPY)
    victim_node = gw0.invoke("slow", "?s=0").headers[NODE]
    victim = next(s for s in cluster.invokers if cluster.node_of(s) == victim_node)
    others = [f"fn{i}" for i in range(8)]
    answered: list[Response] = []
    failures: list[tuple[str, int, float]] = []  # (function, status, when the call started)
    stop = threading.Event()
    dead = float("inf")

    def keep_calling() -> None:  # calls of every function, through the other gateway, all along
        while not stop.is_set():
            for name in others:
                started = time.monotonic()
                resp = gw1.invoke(name)
                if resp.status == 200:
                    answered.append(resp)
                else:
                    failures.append((name, resp.status, started))

    in_flight: list[Response] = []
    slow_call = threading.Thread(target=lambda: in_flight.append(gw0.invoke("slow", "?s=5")))
    caller = threading.Thread(target=keep_calling)
    slow_call.start()
    caller.start()
    try:
        time.sleep(1.0)  # the slow call is running on the victim
        killed = time.monotonic()
        victim.stop(signal.SIGKILL)
        dead = time.monotonic()  # the process is gone (reaped)
        slow_call.join(30)
        assert in_flight and in_flight[0].status == 502, in_flight and in_flight[0].body
        # Calls of the victim's functions go elsewhere at once (its port refuses connections) ...
        resp = gw0.invoke("slow", "?s=0")
        assert resp.status == 200 and resp.headers[NODE] != victim_node, resp.body
        # ... and every gateway has dropped it from the live invokers within 3 s.
        for gateway in cluster.gateways:
            wait_until(
                lambda g=gateway: (
                    victim_node not in {n["node_id"] for n in g.request("GET", "/system/nodes").json()}
                ),
                3.0 - (time.monotonic() - killed),
                "the dead invoker gone from /system/nodes",
            )
        dropped_after = time.monotonic() - killed
        time.sleep(0.5)
    finally:
        stop.set()
        caller.join(60)
    # Only calls that were running on the victim until it died fail, with 502.
    assert all(status == 502 and started < dead for _, status, started in failures), failures
    assert len(answered) > 10
    print(
        f"failover: dead invoker dropped after {dropped_after:.2f} s; {len(answered)} calls answered meanwhile"
    )
    # Every answered call has exactly one usage record.
    call_ids = [a.headers["X-Call-Id"] for a in answered] + [resp.headers["X-Call-Id"]]
    with psycopg.connect(cluster.database) as conn:
        counts = dict(
            conn.execute(
                "SELECT call_id, count(*) FROM usage WHERE call_id = ANY(%s) GROUP BY call_id", (call_ids,)
            ).fetchall()
        )
    assert counts == dict.fromkeys(call_ids, 1)
    # Restarted, the invoker rejoins (and clears what its dead self left), and its functions come home.
    victim.start(timeout_s=60)
    wait_until(lambda: len(gw0.request("GET", "/system/nodes").json()) == 3, 5, "the invoker back")
    wait_until(lambda: gw0.invoke("slow", "?s=0").headers[NODE] == victim_node, 5, "slow back on its home")


def _holder_pid(server: Server) -> int:
    netns = server.netns
    proc = getattr(netns, "proc", None)
    assert proc is not None
    return int(proc.pid)
