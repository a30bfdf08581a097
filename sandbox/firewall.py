"""Where the egress policy lives: an nftables table of the server's own, or,
on a host without nftables, iptables chains of its own.

Both hold the same policy (sandbox/egress.py) and offer the same few
operations: install it whole (replacing what a killed server left), remove
it, add or remove the chain of one allow list, and point one sandbox's veth
at such a chain or not. With libnftables each is a fraction of a
millisecond, cheap enough for a cold start; the programs (`nft`,
`iptables-restore`) take milliseconds and run in the network worker thread.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess

from .egress import NEVER, PRIVATE, OutboundSpec, TableSpec, policy_chain, table_ruleset
from .nft import LibNftables, Nft, NftError

FirewallError = NftError
# What may hold the policy, as the `firewall` setting names them.
FIREWALLS = ("nftables", "iptables")


class Firewall:
    # Whether its operations may run on the event loop itself.
    fast = False
    name = ""

    def install(self, spec: TableSpec) -> None:
        raise NotImplementedError

    def remove(self) -> bool:
        """Remove everything of ours; whether there was anything. Idempotent."""
        raise NotImplementedError

    def add_policy(self, spec: OutboundSpec) -> None:
        raise NotImplementedError

    def remove_policy(self, policy: str) -> None:
        raise NotImplementedError

    def attach(self, ifname: str, policy: str) -> None:
        raise NotImplementedError

    def detach(self, ifname: str, policy: str) -> None:
        raise NotImplementedError


def find_firewall(table: str, veth_prefix: str, which: str = "auto") -> Firewall | None:
    """nftables where it is installed, else iptables (`which` may insist on one); None: neither."""
    if which in ("auto", "nftables"):
        nft = Nft.find()
        if nft is not None:
            return NftFirewall(nft, table)
    if which in ("auto", "iptables") and shutil.which("iptables-restore") and shutil.which("iptables"):
        return IptablesFirewall(table, veth_prefix)
    return None


class NftFirewall(Firewall):
    name = "nftables"

    def __init__(self, nft: Nft, table: str) -> None:
        self.nft = nft
        self.table = table
        self.fast = isinstance(nft, LibNftables)

    def install(self, spec: TableSpec) -> None:
        self.nft.run(table_ruleset(spec))

    def remove(self) -> bool:
        try:
            self.nft.run(f"list table inet {self.table}")
        except NftError:
            return False
        self.nft.run(f"delete table inet {self.table}")
        return True

    def add_policy(self, spec: OutboundSpec) -> None:
        self.nft.run(policy_chain(self.table, spec))

    def remove_policy(self, policy: str) -> None:
        self.nft.run(f"delete chain inet {self.table} {policy}")

    def attach(self, ifname: str, policy: str) -> None:
        self.nft.run(f'add element inet {self.table} policies {{ "{ifname}" : jump {policy} }}')

    def detach(self, ifname: str, policy: str) -> None:
        self.nft.run(f'delete element inet {self.table} policies {{ "{ifname}" }}')


class IptablesFirewall(Firewall):
    """The same policy as chains `faas-TAG-*` in the filter and nat tables,
    entered from the built-in INPUT, FORWARD and POSTROUTING chains by one
    rule each. A decision to let a packet through is a RETURN, never an
    ACCEPT: an ACCEPT would skip the host's own rules after ours. IPv4
    only: the veths have no IPv6."""

    name = "iptables"

    def __init__(self, table: str, veth_prefix: str) -> None:
        self.prefix = table.replace("_", "-")  # faas-TAG
        self.veths = f"{veth_prefix}+"

    def _chain(self, part: str) -> str:
        return f"{self.prefix}-{part}"

    def _restore(self, text: str) -> None:
        proc = subprocess.run(
            ["iptables-restore", "-w", "--noflush"], input=text, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise FirewallError(
                f"iptables-restore: {proc.stderr.strip().splitlines()[0] if proc.stderr else ''}"
            )

    def install(self, spec: TableSpec) -> None:
        self.remove()
        c = self._chain
        dns = [
            f"-d {server} -p {proto} --dport 53 -j RETURN"
            for server in spec.nameservers
            if ipaddress.ip_address(server).version == 4
            for proto in ("udp", "tcp")
        ]
        never = [n for n, _ in NEVER if ipaddress.ip_network(n).version == 4] + [spec.sandbox_subnet]
        private = [n for n in PRIVATE if ipaddress.ip_network(n).version == 4]
        rules = [
            f"-A {c('refuse')} -p tcp -j REJECT --reject-with tcp-reset",
            f"-A {c('refuse')} -j REJECT --reject-with icmp-admin-prohibited",
            *(f"-A {c('in')} {rule}" for rule in dns),
            f"-A {c('in')} -j {c('refuse')}",
            *(f"-A {c('egress')} {rule}" for rule in dns),
            *(f"-A {c('egress')} -d {network} -j {c('refuse')}" for network in never),
            # Allow lists: per sandbox, a goto to its list's chain (whose RETURN
            # is then back in FORWARD); everyone else goes on to the defaults.
            f"-A {c('egress')} -g {c('pol')}",
            f"-A {c('pol')} -g {c('default')}",
            *(f"-A {c('default')} -d {network} -j {c('refuse')}" for network in private),
            *([f"-A {c('default')} -j {c('refuse')}"] if spec.egress_default == "deny" else []),
            f"-A {c('out')} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
            f"-A {c('out')} -j {c('refuse')}",
            f"-I INPUT 1 -i {self.veths} -j {c('in')}",
            f"-I FORWARD 1 -i {self.veths} -j {c('egress')}",
            f"-I FORWARD 2 -o {self.veths} -j {c('out')}",
        ]
        chains = ("refuse", "in", "egress", "pol", "default", "out")
        nat = [
            f"-A {c('nat')} -s {spec.block} ! -o {self.veths} -j MASQUERADE",
            f"-I POSTROUTING 1 -j {c('nat')}",
        ]
        stub = spec.loopback_resolver
        if stub:
            nat += [
                f"-A {c('stub')} -i {self.veths} -d {spec.block} -p {proto} --dport 53 -j DNAT --to-destination {stub}"
                for proto in ("udp", "tcp")
            ]
            nat.append(f"-I PREROUTING 1 -j {c('stub')}")
        self._restore(
            "*filter\n"
            + "".join(f":{c(name)} - [0:0]\n" for name in chains)
            + "\n".join(rules)
            + f"\nCOMMIT\n*nat\n:{c('nat')} - [0:0]\n:{c('stub')} - [0:0]\n"
            + "\n".join(nat)
            + "\nCOMMIT\n"
        )

    def remove(self) -> bool:
        found = False
        for table in ("filter", "nat"):
            listing = subprocess.run(
                ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True
            ).stdout
            ours = [line for line in listing.splitlines() if f"{self.prefix}-" in line]
            found = found or bool(ours)
            # The jumps from the built-in chains first, then our chains' rules, then the chains.
            for line in ours:
                if line.startswith("-A ") and not line.split()[1].startswith(self.prefix):
                    subprocess.run(
                        ["iptables", "-w", "-t", table, "-D", *line.split()[1:]], capture_output=True
                    )
            for line in ours:
                if line.startswith("-N "):
                    subprocess.run(
                        ["iptables", "-w", "-t", table, "-F", line.split()[1]], capture_output=True
                    )
            for line in ours:
                if line.startswith("-N "):
                    subprocess.run(
                        ["iptables", "-w", "-t", table, "-X", line.split()[1]], capture_output=True
                    )
        return found

    def _policy_chain(self, policy: str) -> str:
        # Chain names are at most 28 characters.
        return self._chain("a" + hashlib.sha256(policy.encode()).hexdigest()[:12])

    def add_policy(self, spec: OutboundSpec) -> None:
        chain = self._policy_chain(spec.policy_name)
        rules = []
        for rule in spec.allow:
            if ":" in rule.network:
                continue  # IPv6: no sandbox has it
            ports = ["-p tcp", "-p udp"] if rule.port is not None else [""]
            for proto in ports:
                port = f" {proto} --dport {rule.port}" if proto else ""
                rules.append(f"-A {chain} -d {rule.network}{port} -j RETURN")
        rules.append(f"-A {chain} -g {self._chain('default')}")
        self._restore(f"*filter\n:{chain} - [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n")

    def remove_policy(self, policy: str) -> None:
        chain = self._policy_chain(policy)
        self._restore(f"*filter\n-F {chain}\n-X {chain}\nCOMMIT\n")

    def attach(self, ifname: str, policy: str) -> None:
        self._restore(
            f"*filter\n-I {self._chain('pol')} 1 -i {ifname} -g {self._policy_chain(policy)}\nCOMMIT\n"
        )

    def detach(self, ifname: str, policy: str) -> None:
        self._restore(
            f"*filter\n-D {self._chain('pol')} -i {ifname} -g {self._policy_chain(policy)}\nCOMMIT\n"
        )
