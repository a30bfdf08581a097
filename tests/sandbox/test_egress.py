"""The egress policy as data (sandbox/egress.py): `allow` entries, the
server's nftables table and the chain of an allow list. Pure; the last test
has nft itself check the ruleset, in a network namespace of its own."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from sandbox.egress import (
    AllowRule,
    OutboundSpec,
    TableSpec,
    parse_allow,
    parse_allow_list,
    policy_chain,
    table_ruleset,
)


@pytest.mark.parametrize(
    "entry,rule",
    [
        ("10.0.0.0/8", AllowRule("10.0.0.0/8")),
        ("10.1.2.3", AllowRule("10.1.2.3/32")),
        ("10.1.2.3:5432", AllowRule("10.1.2.3/32", 5432)),
        ("192.168.7.9/16:443", AllowRule("192.168.0.0/16", 443)),  # host bits cleared
        ("fd00::/8", AllowRule("fd00::/8")),
        ("[fd00::/8]:443", AllowRule("fd00::/8", 443)),
        ("fd00::/8:443", AllowRule("fd00::/8", 443)),
        ("[fd00::1]:53", AllowRule("fd00::1/128", 53)),
        ("0.0.0.0/0", AllowRule("0.0.0.0/0")),
    ],
)
def test_allow_entries_are_read_and_written_back_canonically(entry: str, rule: AllowRule) -> None:
    assert parse_allow(entry) == rule
    assert parse_allow(str(rule)) == rule


@pytest.mark.parametrize(
    "entry,message",
    [
        ("169.254.169.254", "link-local"),
        ("169.254.0.0/16:80", "link-local"),
        ("127.0.0.1", "loopback"),
        ("224.0.0.1", "multicast"),
        ("fe80::/64", "link-local"),
        ("10.0.0.0/8:0", "port must be from 1 to 65535"),
        ("10.0.0.0/8:70000", "port must be from 1 to 65535"),
        ("10.0.0.0/8:http", "port must be from 1 to 65535"),
        ("10.0.0.0/33", "not an address or network"),
        ("db.internal", "not an address or network"),
        ("[fd00::/8", "[ADDRESS/PREFIX]:PORT"),
        ("", "not CIDR[:PORT]"),
        (5432, "not CIDR[:PORT]"),
    ],
)
def test_bad_or_forbidden_allow_entries_say_why(entry: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_allow(entry)


def test_an_allow_list_is_sorted_without_repeats_and_bounded() -> None:
    assert parse_allow_list(["10.0.0.1", "10.0.0.0/8", "10.0.0.1/32"]) == (
        AllowRule("10.0.0.0/8"),
        AllowRule("10.0.0.1/32"),
    )
    with pytest.raises(ValueError, match="at most 64"):
        parse_allow_list([f"10.0.0.{i}" for i in range(65)])
    with pytest.raises(ValueError, match="must be a list"):
        parse_allow_list("10.0.0.0/8")


def test_the_same_allow_list_shares_one_policy_chain() -> None:
    a = OutboundSpec(parse_allow_list(["10.0.0.0/8", "172.16.0.0/12:5432"]))
    b = OutboundSpec(parse_allow_list(["172.16.0.0/12:5432", "10.0.0.0/8"]), egress_mbit=5)
    c = OutboundSpec(parse_allow_list(["10.0.0.0/8"]))
    assert a.policy_name == b.policy_name != c.policy_name
    chain = policy_chain("faas_x", a)
    assert f"add rule inet faas_x {a.policy_name} ip daddr 10.0.0.0/8 accept" in chain
    assert "ip daddr 172.16.0.0/12 meta l4proto { tcp, udp } th dport 5432 accept" in chain


SPEC = TableSpec("faas_abc123", "fxabc123", "100.72.0.0/16", "100.72.16.0/20", ("192.0.2.53",), "deny")


def test_the_table_refuses_what_the_policy_says_and_nats_only_its_own_block() -> None:
    rules = table_ruleset(SPEC)
    assert rules.startswith("add table inet faas_abc123\ndelete table inet faas_abc123\n")
    assert "100.72.0.0/16" in rules and "169.254.0.0/16" in rules and "10.0.0.0/8" in rules
    assert 'iifname "fxabc123*" jump to_host' in rules and 'iifname "fxabc123*" jump egress' in rules
    assert "ip daddr { 192.0.2.53 } meta l4proto { tcp, udp } th dport 53 accept" in rules
    assert 'ip saddr 100.72.16.0/20 oifname != "fxabc123*" masquerade' in rules
    assert "reject with tcp reset" in rules  # refused, never dropped
    allowing = table_ruleset(TableSpec(**{**SPEC.__dict__, "egress_default": "allow"}))
    assert rules.count("jump refuse") == allowing.count("jump refuse") + 1  # deny: one more, at the end
    assert "dnat" not in rules


STUB = TableSpec("faas_abc123", "fxabc123", "100.72.0.0/16", "100.72.16.0/20", ("127.0.0.53", "192.0.2.53"))


def test_a_loopback_resolver_is_reached_at_the_gateway_through_dnat() -> None:
    assert STUB.loopback_resolver == "127.0.0.53" and SPEC.loopback_resolver is None
    rules = table_ruleset(STUB)
    assert (
        'iifname "fxabc123*" ip daddr 100.72.16.0/20 meta l4proto { tcp, udp } th dport 53 dnat ip to 127.0.0.53'
    ) in rules
    # After the translation the query is addressed to the stub: accepted on port 53.
    assert "ip daddr { 127.0.0.53, 192.0.2.53 } meta l4proto { tcp, udp } th dport 53 accept" in rules


@pytest.mark.root
def test_nft_accepts_the_ruleset_and_a_policy_chain(tmp_path: object) -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, nft and unshare")
    spec = OutboundSpec(parse_allow_list(["10.0.0.0/8", "[fd00::/8]:443", "10.1.2.3:5432"]))
    text = table_ruleset(SPEC) + policy_chain(SPEC.name, spec) + table_ruleset(STUB)
    # A namespace of its own: nothing of the host's ruleset is touched.
    proc = subprocess.run(["unshare", "--net", "nft", "-f", "-"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
