"""Server configuration: defaults, then a TOML/JSON file, then FAAS_TOKEN, then flags.

The keys of the config file are the fields of ServerConfig (docs/OPERATIONS.md lists them).
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from invoker.callback_policy import parse_networks
from invoker.config import InvokerConfig
from invoker.metering import PricePlan

from .cluster_config import check_cluster

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerConfig(InvokerConfig):
    """The gateway's own settings, plus the invoker's (inherited, documented in invoker/config.py).

    Every field is a key of the config file.
    """

    data_dir: str = "/var/lib/faas"
    host: str = "127.0.0.1"
    port: int = 8080
    # Bearer token /system requires; without one the server listens on loopback only.
    token: str | None = None
    # Request (and response) bodies of invocations, in bytes.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Request bodies all calls in progress hold together (read, or waiting for
    # a sandbox), in bytes; a call past it gets 503 before its body is read.
    max_buffered_bytes: int = 128 * 1024 * 1024
    # How long SIGTERM waits for in-flight calls before tearing down. Every
    # call ends by its own timeout (at most 900 s), so this is only a bound.
    shutdown_timeout_s: float = 900.0
    # A connection must send a request's headers within this many seconds of
    # opening (or of its previous response); also how long an idle keep-alive
    # connection stays open (75 s: web.run_app's keep-alive default, longer than
    # the usual 60 s of load balancers). Bounds slow-header (slowloris) clients.
    header_timeout_s: float = 75.0
    # A request's body must have arrived this many seconds after its headers
    # (408 otherwise). Bounds slow-body clients.
    body_timeout_s: float = 60.0
    pricing: PricePlan = field(default_factory=PricePlan)
    # Functions (files or directories of them) deployed at start.
    deploy_paths: tuple[str, ...] = ()
    # Host header values (`name` for any port, or `name:port`) /system answers
    # besides the listen address, e.g. the name of a reverse proxy; others get 421.
    allowed_hosts: tuple[str, ...] = ()
    # Origins (`https://console.example.com`) whose web pages may call /system
    # besides the server's own; others get 403.
    allowed_origins: tuple[str, ...] = ()
    # The key pair Lambda API requests (/2015-03-31/) must be signed with
    # (AWS SigV4) when the server has a token; without a token they may come unsigned.
    lambda_access_key_id: str | None = None
    lambda_secret_access_key: str | None = None
    # -- cluster roles (docs/CLUSTER.md) --------------------------------------
    # "all": gateway and invoker in one process (one machine). "gateway":
    # routes calls to the invokers registered in `database` and runs no
    # sandbox. "invoker": runs sandboxes for the gateways; needs `database`.
    role: str = "all"
    # Shared by a cluster's gateways and invokers (or env FAAS_CLUSTER_TOKEN):
    # an invoker refuses every request without it but its health probes.
    cluster_token: str | None = None
    # HOST:PORT an invoker registers for gateways to call (default host:port).
    advertise: str | None = None
    # Gateway processes sharing the listen port (SO_REUSEPORT); role gateway only.
    workers: int = 1

    @property
    def advertised(self) -> str:
        """The address this server registers as an invoker."""
        return self.advertise or f"{self.host}:{self.port}"

    def invoker_config(self) -> InvokerConfig:
        """The invoker's part of these settings."""
        return InvokerConfig(**{f.name: getattr(self, f.name) for f in fields(InvokerConfig)})

    def check(self) -> None:
        if self.ledger_sync not in ("full", "normal"):
            raise ConfigError(f"ledger_sync must be 'full' or 'normal', got {self.ledger_sync!r}")
        for key in ("header_timeout_s", "body_timeout_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{key} must be a positive number of seconds, got {value!r}")
        if (
            isinstance(self.versions_kept, bool)
            or not isinstance(self.versions_kept, int)
            or self.versions_kept < 1
        ):
            raise ConfigError(f"versions_kept must be an integer of at least 1, got {self.versions_kept!r}")
        try:
            parse_networks(self.callback_allow)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.max_async_queue < 1:
            raise ConfigError(f"max_async_queue must be at least 1, got {self.max_async_queue}")
        if bool(self.lambda_access_key_id) != bool(self.lambda_secret_access_key):
            raise ConfigError("set lambda_access_key_id and lambda_secret_access_key together")
        _check_network(self)
        check_cluster(self)
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        # An invoker of a cluster is guarded by the cluster token instead.
        if not self.token and not is_loopback(self.host) and self.role != "invoker":
            raise ConfigError(
                f"refusing to listen on {self.host} without a token: set --token or FAAS_TOKEN, "
                "or listen on 127.0.0.1"
            )


def _check_network(config: ServerConfig) -> None:
    """The outbound-network settings (invoker/config.py)."""
    if config.egress_default not in ("allow", "deny"):
        raise ConfigError(f"egress_default must be 'allow' or 'deny', got {config.egress_default!r}")
    if config.firewall not in ("auto", "nftables", "iptables"):
        raise ConfigError(f"firewall must be 'auto', 'nftables' or 'iptables', got {config.firewall!r}")
    try:
        subnet = ipaddress.IPv4Network(config.sandbox_subnet)
    except ValueError as exc:
        raise ConfigError(f"sandbox_subnet must be an IPv4 network (CIDR): {exc}") from None
    if subnet.prefixlen > 28:
        raise ConfigError(f"sandbox_subnet {subnet} is too small: a /28 or larger")
    for server in config.nameservers:
        try:
            ipaddress.IPv4Address(server)
        except ValueError:
            raise ConfigError(f"nameservers: {server!r} is not an IPv4 address") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(config_file: str | None = None, **overrides: Any) -> ServerConfig:
    """Defaults < config file < FAAS_TOKEN < explicit overrides (None = not given)."""
    config = ServerConfig()
    if config_file:
        config = _apply(config, _read_file(config_file), source=config_file)
    if os.environ.get("FAAS_TOKEN"):
        config = replace(config, token=os.environ["FAAS_TOKEN"])
    if os.environ.get("FAAS_CLUSTER_TOKEN"):
        config = replace(config, cluster_token=os.environ["FAAS_CLUSTER_TOKEN"])
    given = {k: v for k, v in overrides.items() if v is not None}
    if "deploy_paths" in given:
        given["deploy_paths"] = tuple(given["deploy_paths"])
    config = replace(config, **given)
    config.check()
    return config


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config {path} is not valid {'JSON' if path.endswith('.json') else 'TOML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold an object of settings")
    return data


def _apply(config: ServerConfig, data: dict[str, Any], source: str) -> ServerConfig:
    known = {f.name: f for f in fields(ServerConfig)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        if key == "pricing":
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: pricing must be a table")
            try:
                value = PricePlan(**{k: float(v) for k, v in value.items()})
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{source}: bad pricing: {exc}") from None
        elif key == "deploy_paths":
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise ConfigError(f"{source}: deploy_paths must be a list of paths")
            value = tuple(value)
        else:
            value = _checked(key, value, getattr(config, key), source)
        changes[key] = value
    return replace(config, **changes)


def _checked(key: str, value: Any, default: Any, source: str) -> Any:
    """`value` if it has the kind of the setting's default (an integer does for a number)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, tuple):
        ok, kind = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of strings"
        value = tuple(value) if ok else value
    elif isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = is_number and isinstance(value, int), "an integer"
    elif isinstance(default, float):
        ok, kind = is_number, "a number"
        value = float(value) if ok else value
    else:  # strings, and the token (None by default)
        ok, kind = isinstance(value, str), "a string"
    if not ok:
        raise ConfigError(f"{source}: {key} must be {kind}, got {value!r}")
    return value
