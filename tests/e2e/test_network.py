"""Outbound network, end to end, in a made-up internet of network namespaces
(tests/nettopo.py): `faas serve` runs in a namespace of its own whose
default route leads to an "internet" namespace (an HTTP server on
203.0.113.10, DNS for internet.test, a private host on 10.20.0.10, a
metadata host on 169.254.169.254). No packet leaves the machine; the
host's own namespace is never touched.

From deployed functions: `none` reaches nothing; `outbound` reaches the
internet by address and by name (source-NATed to the server's address),
never the server itself, other sandboxes, the metadata host or the private
host (until `allow` lists it); refusals are immediate (an errno, never a
timeout); the bandwidth cap holds; usage records count the bytes; stop, and
SIGKILL then restart, leave no veth, address or rule behind.

The tools (nft, dnsmasq, ip) are installed if missing, as .ci/run does;
skipped only where that fails outside CI.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TEST_FUNCTIONS, Server, wait_until
from tests.nettopo import (
    DNS,
    METADATA,
    NAME,
    PRIVATE,
    PUBLIC,
    SERVER_UPLINK,
    Internet,
    NamedNamespace,
    install_tools,
    internet,
)

TOKEN = "net-test-token"
PROBE = TEST_FUNCTIONS / "net_probe.py"
REFUSED = {"ECONNREFUSED", "EHOSTUNREACH"}
MB = 1024 * 1024
# A TCP segment without data on the wire: Ethernet, IPv4, TCP with options.
BARE_SEGMENT_BYTES = 80


@pytest.fixture(scope="module")
def net() -> Iterator[Internet]:
    missing = install_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing {', '.join(missing)} and CI is set: .ci/run should have installed them")
        pytest.skip(
            f"missing {', '.join(missing)} and cannot install them (apt-get install nftables dnsmasq-base)"
        )
    with internet() as topology:
        yield topology
        # Every server has stopped: nothing of theirs is left in the namespace.
        assert topology.server_state() == {"links": [], "addresses": [], "rules": []}
        assert topology.server_ns.run("sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def firewall(request: pytest.FixtureRequest) -> str:
    """Every test on each: nftables, and iptables (what holds the policy where nftables is missing)."""
    return str(request.param)


def start_server(net: Internet, base: Path, firewall: str, settings: str = "") -> Server:
    config = base / "faas.toml"
    config.write_text(f'prewarm = 2\nnameservers = ["{DNS}"]\nfirewall = "{firewall}"\n{settings}')
    # On every address of its namespace (so with a token): the sandboxes'
    # gateways included, where only the egress policy keeps them out.
    args = ("--host", "0.0.0.0", "--config", str(config))
    return Server(base / "data", token=TOKEN, extra_args=args, netns=net.server_ns).start()


def stop_server(server: Server) -> None:
    code = server.stop()
    assert code == 0, f"faas serve exited with {code}:\n{server.log()[-4000:]}"


@pytest.fixture(scope="module")
def server(net: Internet, firewall: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(net, tmp_path_factory.mktemp("net"), firewall, "[pricing]\nper_gb_transfer = 1.0\n")
    yield srv
    stop_server(srv)


def probe(server: Server, name: str, **request: Any) -> dict[str, Any]:
    resp = server.invoke(name, method="POST", json_body=request)
    assert resp.status == 200, resp.text
    return resp.json()


def deploy(server: Server, name: str, **options: Any) -> None:
    server.deploy_ok(name, PROBE, **options)


def own_objects(net: Internet, server: Server) -> dict[str, Any]:
    """What of the server's own is in its namespace: veths (name: ifindex) and its rules."""
    tag = hashlib.sha256(os.path.realpath(server.data_dir).encode()).hexdigest()[:6]
    links = {name: index for name, index in net.links().items() if name.startswith(f"fx{tag}")}
    return {"links": links, "rules": net.rules(tag)}


def test_none_reaches_nothing(server: Server) -> None:
    deploy(server, "closed")
    out = probe(server, "closed", tcp=[[PUBLIC, 80], [SERVER_UPLINK, server.port]], resolve=[NAME])
    assert out["interfaces"] == ["lo"] and out["gateway"] is None and out["address"] is None
    assert out[f"tcp {PUBLIC}:80"] == "ENETUNREACH"
    assert out[f"tcp {SERVER_UPLINK}:{server.port}"] == "ENETUNREACH"
    assert out[f"resolve {NAME}"] == "gaierror"


def test_outbound_reaches_the_internet_by_address_and_by_name_from_a_prewarmed_sandbox(
    server: Server,
) -> None:
    deploy(server, "open", network="outbound")
    # Both pools full (2 plain, 2 with a veth): the first call takes a pre-warmed blank.
    wait_until(
        lambda: 'faas_sandboxes{state="prewarmed"} 4.0' in server.request("GET", "/metrics").text,
        30,
        "4 blanks",
    )
    hits = _metric(server, "faas_prewarm_hits_total")
    resp = server.invoke(
        "open", method="POST", json_body={"get": [f"http://{PUBLIC}/whoami", f"http://{NAME}/whoami"]}
    )
    assert resp.status == 200, resp.text
    assert resp.headers["X-Cold-Start"] == "true" and _metric(server, "faas_prewarm_hits_total") == hits + 1
    out = resp.json()
    assert out["interfaces"] == ["eth0", "lo"]
    assert ipaddress.ip_address(out["address"]) in ipaddress.ip_network("100.72.0.0/16")
    # Source NAT: the internet sees the server's own address, not the sandbox's.
    for url in (f"http://{PUBLIC}/whoami", f"http://{NAME}/whoami"):
        assert json.loads(out[f"get {url}"]) == {"local": PUBLIC, "peer": SERVER_UPLINK}


def _metric(server: Server, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", server.request("GET", "/metrics").text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_outbound_never_reaches_the_server_itself(server: Server) -> None:
    deploy(server, "open", network="outbound")
    gateway = probe(server, "open")["gateway"]
    # The server does listen on these addresses: only the policy keeps the sandbox out.
    sock = server.netns.socket()  # type: ignore[union-attr]
    sock.settimeout(5)
    sock.connect((gateway, server.port))
    sock.close()
    targets = [[gateway, server.port], [SERVER_UPLINK, server.port], [SERVER_UPLINK, 22]]
    out = probe(server, "open", tcp=targets, udp=[[gateway, 5353], [SERVER_UPLINK, 123]])
    for host, port in targets:
        assert out[f"tcp {host}:{port}"] == "ECONNREFUSED"
    # Refused at once (ICMP), not left to time out.
    assert out[f"udp {gateway}:5353"] in REFUSED and out[f"udp {SERVER_UPLINK}:123"] in REFUSED


def test_private_and_metadata_hosts_are_refused_until_allowed(server: Server) -> None:
    deploy(server, "open", network="outbound")
    targets = [[PRIVATE, 80], [METADATA, 80], [PUBLIC, 80]]
    out = probe(server, "open", tcp=targets)
    assert (out[f"tcp {PRIVATE}:80"], out[f"tcp {METADATA}:80"], out[f"tcp {PUBLIC}:80"]) == (
        "ECONNREFUSED",
        "ECONNREFUSED",
        "connected",
    )
    deploy(server, "lan", network="outbound", allow=["10.20.0.0/16"])
    out = probe(server, "lan", tcp=targets)
    assert (out[f"tcp {PRIVATE}:80"], out[f"tcp {METADATA}:80"], out[f"tcp {PUBLIC}:80"]) == (
        "connected",
        "ECONNREFUSED",
        "connected",
    )
    # An allowed port is that port only.
    deploy(server, "lan-port", network="outbound", allow=[f"{PRIVATE}:81"])
    assert probe(server, "lan-port", tcp=[[PRIVATE, 80]])[f"tcp {PRIVATE}:80"] == "ECONNREFUSED"
    # The metadata range can never be allowed; allow needs outbound.
    resp = server.deploy("meta", PROBE.read_text(), network="outbound", allow=[METADATA])
    assert resp.status == 400 and "link-local" in resp.json()["error"], resp.text
    resp = server.deploy("meta", PROBE.read_text(), allow=["10.0.0.0/8"])
    assert resp.status == 400 and "allow needs network: outbound" in resp.json()["error"], resp.text


def test_another_sandbox_is_never_reachable(server: Server) -> None:
    deploy(server, "neighbour", network="outbound")
    deploy(server, "open", network="outbound")
    mine = probe(server, "neighbour", listen=7000)
    address = mine["address"]
    # The listener is up (seen from its own sandbox) and stays up while it is frozen.
    assert probe(server, "neighbour", tcp=[[address, 7000]])[f"tcp {address}:7000"] == "connected"
    assert probe(server, "open", tcp=[[address, 7000]])[f"tcp {address}:7000"] == "ECONNREFUSED"


def test_the_bandwidth_cap_holds_within_20_percent(server: Server) -> None:
    mbit = 16
    deploy(server, "capped", network="outbound", egress_mbit=mbit)
    down = probe(server, "capped", download={"host": PUBLIC, "bytes": 4 * MB})["download"]
    up = probe(server, "capped", upload={"host": PUBLIC, "bytes": 3 * MB})["upload"]
    assert down["bytes"] == 4 * MB and up["answer"] == {"received": 3 * MB}
    for direction in (down, up):
        rate = direction["bytes"] * 8 / direction["seconds"] / 1e6
        assert 0.8 * mbit <= rate <= 1.2 * mbit, f"{rate:.1f} Mbit/s under a cap of {mbit}: {direction}"


def test_usage_records_count_the_bytes_sent_and_received_within_5_percent(
    server: Server, net: Internet
) -> None:
    deploy(server, "meter", network="outbound")
    request = {"download": {"host": PUBLIC, "bytes": 4 * MB}, "upload": {"host": PUBLIC, "bytes": 2 * MB}}
    resp = server.invoke("meter", method="POST", json_body=request)
    assert resp.status == 200, resp.text
    transfers = [resp.json()["download"], resp.json()["upload"]]
    usage = server.request("GET", "/system/usage?function=meter&records=1").json()
    (record,) = [r for r in usage["records"] if r["call_id"] == resp.headers["X-Call-Id"]]
    # What the function's TCP connections carried (retransmissions included),
    # within 5% (the headers of data segments); segments without data (ACKs:
    # about one per two segments of the other direction on a loaded machine
    # that coalesces nothing) are a few dozen bytes each, counted besides.
    sent = sum(t["tcp"]["sent"] for t in transfers)
    received = sum(t["tcp"]["received"] for t in transfers)
    bare_out = sum(t["tcp"]["bare_out"] + 2 for t in transfers)  # + FIN and the last ACK
    bare_in = sum(t["tcp"]["bare_in"] + 2 for t in transfers)
    assert received >= 4 * MB and sent >= 2 * MB, transfers
    assert received <= record["net_rx_bytes"] <= received * 1.05 + bare_in * BARE_SEGMENT_BYTES, (
        record,
        transfers,
    )
    assert sent <= record["net_tx_bytes"] <= sent * 1.05 + bare_out * BARE_SEGMENT_BYTES, (record, transfers)
    totals = usage["totals"]
    transfer_gb = (totals["net_rx_bytes"] + totals["net_tx_bytes"]) / 1024**3
    assert totals["transfer_gb"] == pytest.approx(transfer_gb)
    # per_gb_transfer = 1.0 in this server's price plan.
    assert totals["cost"] >= transfer_gb and usage["pricing"]["per_gb_transfer"] == 1.0
    # `faas usage` shows them (run in the server's namespace).
    cli = net.server_ns.run(
        sys.executable, "-m", "gateway.cli", "--gateway", f"http://127.0.0.1:{server.port}", "--token", TOKEN,
        "usage", "--function", "meter",
    )  # fmt: skip
    header, row = cli.splitlines()[0].split(), cli.splitlines()[1].split()
    assert int(row[header.index("NET_RX_BYTES")]) == totals["net_rx_bytes"]
    assert int(row[header.index("NET_TX_BYTES")]) == totals["net_tx_bytes"]


def test_egress_default_deny_allows_only_what_is_listed(net: Internet, firewall: str, tmp_path: Path) -> None:
    srv = start_server(net, tmp_path, firewall, 'egress_default = "deny"\n')
    try:
        deploy(srv, "open", network="outbound")
        out = probe(srv, "open", tcp=[[PUBLIC, 80]], resolve=[NAME])
        # Public addresses refused; the resolvers still answer.
        assert out[f"tcp {PUBLIC}:80"] == "ECONNREFUSED" and out[f"resolve {NAME}"] == PUBLIC
        deploy(srv, "listed", network="outbound", allow=["203.0.113.0/24"])
        assert probe(srv, "listed", tcp=[[PUBLIC, 80]])[f"tcp {PUBLIC}:80"] == "connected"
    finally:
        stop_server(srv)
    assert own_objects(net, srv) == {"links": {}, "rules": []}


def test_sigkill_then_restart_leaves_no_veth_address_or_rule(
    net: Internet, firewall: str, server: Server, tmp_path: Path
) -> None:
    deploy(server, "open", network="outbound")
    srv = start_server(net, tmp_path, firewall)
    try:
        deploy(srv, "open", network="outbound")
        assert probe(srv, "open", get=[f"http://{PUBLIC}/whoami"])["interfaces"] == ["eth0", "lo"]
        before = own_objects(net, srv)
        assert before["links"] and before["rules"]
        srv.stop(signal.SIGKILL)
        srv.start()
        # The killed server's veths are gone (ifindexes are never reused), its
        # table was replaced; the new ones serve.
        wait_until(
            lambda: not set(before["links"].values()) & set(own_objects(net, srv)["links"].values()),
            10,
            "the killed server's veths to go",
            detail=lambda: own_objects(net, srv),
        )
        assert probe(srv, "open", get=[f"http://{PUBLIC}/whoami"])["interfaces"] == ["eth0", "lo"]
    finally:
        stop_server(srv)
    assert own_objects(net, srv) == {"links": {}, "rules": []}
    # The other server in the same namespace was left alone.
    assert own_objects(net, server)["rules"]
    assert probe(server, "open", tcp=[[PUBLIC, 80]])[f"tcp {PUBLIC}:80"] == "connected"


def test_a_server_started_by_ip_netns_exec_serves_outbound_with_the_namespaces_loopback_resolver(
    tmp_path: Path,
) -> None:
    """`ip netns exec` gives the server a mount namespace with a fresh /sys
    (no cgroup mounts: it mounts its hierarchies again there) and
    /etc/netns/NAME/resolv.conf as its /etc/resolv.conf: here a resolver on
    127.0.0.1, which sandboxes reach through their gateway."""
    name = f"fxtest-{os.getpid()}"
    namespace = NamedNamespace(name, resolv_conf="nameserver 127.0.0.1\n")
    dnsmasq = None
    try:
        dnsmasq = namespace.popen(
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", f"--address=/stub.test/{PUBLIC}",
            "--pid-file=", "--user=root", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: "127.0.0.1:53" in namespace.run("ss", "-lnu"), 10, "dnsmasq to listen")
        config = tmp_path / "faas.toml"
        config.write_text("prewarm = 1\n")
        launcher = ("ip", "netns", "exec", name)
        srv = Server(
            tmp_path / "data", extra_args=("--config", str(config)), netns=namespace, launcher=launcher
        )
        srv.start()
        try:
            deploy(srv, "open", network="outbound")
            deploy(srv, "closed")
            out = probe(srv, "open", resolve=["stub.test"])
            assert out["interfaces"] == ["eth0", "lo"] and out["resolve stub.test"] == PUBLIC
            assert probe(srv, "closed")["interfaces"] == ["lo"]
        finally:
            stop_server(srv)
        assert "faas_" not in namespace.run("nft", "list", "tables")
        assert [line for line in namespace.run("ip", "-o", "link").splitlines() if ": fx" in line] == []
    finally:
        if dnsmasq is not None:
            dnsmasq.kill()
            dnsmasq.wait()
        namespace.close()
