"""Where the host cannot give outbound network, the network manager says
why in one line (and a deploy of such a function is refused with it:
tests/invoker/test_invoker.py); nothing it took is kept. Nothing here
touches the host: nft and the sysctls are stood in for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox import ipforward, network
from sandbox.egress import TableSpec
from sandbox.firewall import Firewall
from sandbox.network import (
    NetworkConfig,
    NetworkManager,
    NetworkUnavailable,
    host_nameservers,
    sandbox_nameservers,
)


class RecordingFirewall(Firewall):
    name = "recording"

    def __init__(self) -> None:
        self.installed: list[TableSpec] = []

    def install(self, spec: TableSpec) -> None:
        self.installed.append(spec)

    def remove(self) -> bool:
        return False


def manager(tmp_path: Path) -> NetworkManager:
    return NetworkManager(NetworkConfig(), str(tmp_path / "data"), lock_dir=str(tmp_path / "locks"))


async def test_without_nftables_outbound_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(network, "find_firewall", lambda *args: None)
    async with manager(tmp_path) as nm:
        with pytest.raises(NetworkUnavailable) as caught:
            await nm.activate()
        assert (
            "needs nftables or iptables on the host" in caught.value.message
            and "\n" not in caught.value.message
        )
        assert not nm.active


async def test_forwarding_that_cannot_be_turned_on_refuses_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    firewall = RecordingFirewall()
    monkeypatch.setattr(network, "find_firewall", lambda *args: firewall)
    monkeypatch.setattr(ipforward.netdev, "read_sysctl", lambda path: "0")

    def read_only(path: str, value: str) -> None:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(ipforward.netdev, "write_sysctl", read_only)
    async with manager(tmp_path) as nm:
        with pytest.raises(NetworkUnavailable) as caught:
            await nm.activate()
    message = caught.value.message
    assert "IP forwarding is off on this host and cannot be turned on" in message and "\n" not in message
    assert firewall.installed == []  # no rules made
    assert os.listdir(tmp_path / "locks" / "net-blocks") == []  # its address block let go
    assert not (tmp_path / "data" / "run" / "network-active").exists()  # nothing for a next start to remove


async def test_forwarding_is_turned_on_for_as_long_as_it_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sysctl = {"net/ipv4/ip_forward": "0"}
    monkeypatch.setattr(ipforward.netdev, "read_sysctl", lambda path: sysctl[path])
    monkeypatch.setattr(ipforward.netdev, "write_sysctl", lambda path, value: sysctl.__setitem__(path, value))
    first, second = (ipforward.Forwarding(str(tmp_path)) for _ in range(2))
    first.acquire()
    second.acquire()
    assert sysctl["net/ipv4/ip_forward"] == "1"
    first.release()
    assert sysctl["net/ipv4/ip_forward"] == "1"  # the second still needs it
    second.release()
    assert sysctl["net/ipv4/ip_forward"] == "0"  # back as the host had it
    # Found on with nobody of ours using it: the host's; left on.
    sysctl["net/ipv4/ip_forward"] = "1"
    first.acquire()
    first.release()
    assert sysctl["net/ipv4/ip_forward"] == "1"
    assert os.listdir(tmp_path) == ["decide.lock"]


def test_resolvers_are_the_hosts_and_a_loopback_one_is_reached_at_the_gateway(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nnameserver 192.0.2.53\nnameserver 127.0.0.53\nnameserver fd00::53\nsearch x\n"
    )
    assert host_nameservers(str(conf)) == ("192.0.2.53", "127.0.0.53")  # IPv4: what a sandbox has
    assert host_nameservers(str(tmp_path / "missing")) == ()
    assert sandbox_nameservers(("192.0.2.53", "127.0.0.53", "127.0.0.1"), "100.72.0.4") == (
        "192.0.2.53",
        "100.72.0.4",
    )
