"""Server configuration: defaults < config file < FAAS_TOKEN < flags, and the invoker's part of it."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, ServerConfig, load
from invoker.config import InvokerConfig
from invoker.metering import PricePlan

# Every key the config file accepted before the invoker's settings were inherited.
GATEWAY_KEYS = {
    "host",
    "port",
    "data_dir",
    "token",
    "keepalive_s",
    "max_body_bytes",
    "code_limit_bytes",
    "shutdown_timeout_s",
    "header_timeout_s",
    "body_timeout_s",
    "pids_max",
    "prewarm",
    "warm_memory_budget_mb",
    "metering",
    "ledger_sync",
    "pricing",
    "deploy_paths",
}


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAAS_TOKEN", raising=False)


def write(tmp_path: Path, text: str, name: str = "faas.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_without_a_file() -> None:
    config = load()
    assert (config.host, config.port, config.data_dir, config.token) == (
        "127.0.0.1",
        8080,
        "/var/lib/faas",
        None,
    )
    assert (config.keepalive_s, config.prewarm, config.ledger_sync) == (600.0, 4, "normal")


def test_toml_file_then_env_token_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        'port = 9000\nkeepalive_s = 5\ntoken = "from-file"\ndeploy_paths = ["a.py"]\n'
        "[pricing]\nper_request = 1\n",
    )
    config = load(path)
    assert (config.port, config.keepalive_s, config.token, config.deploy_paths) == (
        9000,
        5.0,
        "from-file",
        ("a.py",),
    )
    assert isinstance(config.keepalive_s, float)
    assert config.pricing == PricePlan(per_request=1.0)
    monkeypatch.setenv("FAAS_TOKEN", "from-env")
    assert load(path).token == "from-env"
    flagged = load(path, port=9100, token="from-flag", keepalive_s=None, deploy_paths=["b.py"])
    assert (flagged.port, flagged.token, flagged.keepalive_s, flagged.deploy_paths) == (
        9100,
        "from-flag",
        5.0,  # None: the flag was not given
        ("b.py",),
    )


def test_json_file(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"prewarm": 0, "ledger_sync": "full"}), "faas.json")
    config = load(path)
    assert (config.prewarm, config.ledger_sync) == (0, "full")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keepalive = 5\n", "unknown setting 'keepalive'"),
        ('port = "80"\n', "port must be an integer, got '80'"),
        ("keepalive_s = true\n", "keepalive_s must be a number, got True"),
        ("metering = 1\n", "metering must be true or false, got 1"),
        ("token = 5\n", "token must be a string, got 5"),
        ('deploy_paths = "fns"\n', "deploy_paths must be a list of paths"),
        ('pricing = "free"\n', "pricing must be a table"),
        ("[pricing]\nper_call = 1\n", "bad pricing"),
        ('ledger_sync = "sometimes"\n', "ledger_sync must be 'full' or 'normal'"),
        ("port = 70000\n", "port must be 0-65535"),
        ('host = "0.0.0.0"\n', "refusing to listen on 0.0.0.0 without a token"),
        ("port = \n", "is not valid TOML"),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load(write(tmp_path, text))


def test_a_file_that_is_not_an_object_or_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold an object"):
        load(write(tmp_path, "[1, 2]", "faas.json"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load(str(tmp_path / "missing.toml"))


def test_every_key_accepted_before_is_still_accepted() -> None:
    assert GATEWAY_KEYS <= {f.name for f in fields(ServerConfig)}


def sample(value: Any) -> Any:
    """A value of the same kind as `value` that differs from it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    if value is None:  # a setting that is off unless given (a path)
        return "/given"
    if isinstance(value, tuple):  # lists of CIDRs or names
        return (*value, "127.0.0.0/8")
    return value + "-other"


def test_every_invoker_setting_is_reachable_from_the_config_file(tmp_path: Path) -> None:
    defaults = InvokerConfig(data_dir="/x")
    settings = {f.name: sample(getattr(defaults, f.name)) for f in fields(InvokerConfig)}
    settings["ledger_sync"] = "full"  # one of two values
    settings["egress_default"] = "deny"  # one of two values
    settings["firewall"] = "iptables"  # one of three values
    settings["sandbox_subnet"] = "10.99.0.0/16"  # a network
    settings["nameservers"] = ("192.0.2.1",)  # addresses, not networks
    settings["database"] = "postgresql://faas@db/faas"  # a URL of its scheme
    settings["pg_synchronous_commit"] = "off"  # one of five values
    settings["queue"] = "nats://nats:4222"  # a URL of its scheme
    config = load(write(tmp_path, json.dumps(settings), "faas.json"))
    invoker = config.invoker_config()
    assert type(invoker) is InvokerConfig
    settings["nameservers"] = tuple(settings["nameservers"])
    assert {f.name: getattr(invoker, f.name) for f in fields(InvokerConfig)} == settings


def test_invoker_config_carries_the_defaults_and_the_flags() -> None:
    config = load(data_dir="/srv/faas", keepalive_s=2.5)
    assert config.invoker_config() == InvokerConfig(data_dir="/srv/faas", keepalive_s=2.5)


def test_every_setting_is_a_row_of_the_operations_docs() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")}
    assert {f.name for f in fields(ServerConfig)} == rows


@pytest.mark.parametrize(
    "setting,message",
    [
        ('egress_default = "block"', "egress_default must be 'allow' or 'deny'"),
        ('firewall = "pf"', "firewall must be 'auto', 'nftables' or 'iptables'"),
        ('sandbox_subnet = "100.72.0.1/16"', "sandbox_subnet must be an IPv4 network"),
        ('sandbox_subnet = "fd00::/64"', "sandbox_subnet must be an IPv4 network"),
        ('sandbox_subnet = "100.72.0.0/30"', "too small"),
        ('nameservers = ["dns.example"]', "nameservers: 'dns.example' is not an IPv4 address"),
    ],
)
def test_bad_network_settings_stop_the_server_with_one_line(
    tmp_path: Path, setting: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, setting))


def test_cluster_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"postgresql:// URL, got 'mysql://u:\*\*\*@db/x'"):
        load(database="mysql://u:secret@db/x")  # the password never shows
    with pytest.raises(ConfigError, match="pg_synchronous_commit must be one of"):
        load(pg_synchronous_commit="maybe")
    assert load(database="postgresql://faas@db/faas").invoker_config().database == "postgresql://faas@db/faas"
    with pytest.raises(ConfigError, match=r"queue must be a nats:// URL, got 'redis://db:6379'"):
        load(queue="redis://db:6379")
    assert load(queue="nats://127.0.0.1:4222").invoker_config().queue == "nats://127.0.0.1:4222"
    with pytest.raises(ConfigError, match="queue_ack_wait_s must be at least 1"):
        load(queue_ack_wait_s=0.5)


DB = "postgresql://faas@db/faas"
KEY = "k" * 16


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"role": "router"}, "role must be one of all, gateway, invoker"),
        ({"role": "gateway", "cluster_token": KEY}, "role gateway needs database"),
        ({"role": "invoker", "database": DB}, "role invoker needs cluster_token"),
        ({"role": "invoker", "database": DB, "cluster_token": "short"}, "at least 16 characters"),
        (
            {"role": "invoker", "database": DB, "cluster_token": KEY, "workers": 2},
            "workers > 1 is for role gateway",
        ),
        ({"workers": 0}, "workers must be an integer of at least 1"),
        (
            {"role": "invoker", "database": DB, "cluster_token": KEY, "advertise": "host"},
            "advertise must be HOST:PORT",
        ),
        ({"role": "invoker", "database": DB, "cluster_token": KEY, "host": "0.0.0.0"}, "needs advertise"),
        ({"role": "gateway", "database": DB, "cluster_token": KEY, "host": "0.0.0.0"}, "without a token"),
    ],
)
def test_role_settings_are_checked(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(**settings)


def test_role_settings_that_make_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAAS_CLUSTER_TOKEN", KEY)
    invoker = load(role="invoker", database=DB, host="0.0.0.0", advertise="10.0.0.5:8080")
    assert (invoker.cluster_token, invoker.advertised) == (KEY, "10.0.0.5:8080")  # no --token needed
    assert load(role="invoker", database=DB, host="10.0.0.5", port=9000).advertised == "10.0.0.5:9000"
    assert load(role="gateway", database=DB, workers=4).workers == 4
