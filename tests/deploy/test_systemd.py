"""deploy/systemd/: the units pass `systemd-analyze verify`, their `faas
serve` command lines are ones the command accepts, the invoker's unit lets
the server manage its cgroup and stop its own sandboxes, and the config
files they read load."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.config import load

from .manifests import SYSTEMD, flag_value, parse_serve, unit_sections

UNITS = ("faas-gateway.service", "faas-invoker.service")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
# systemd expands ${VAR} (one word) from the EnvironmentFile.
ENV_WORD = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _exec_start(unit: str) -> list[str]:
    words = shlex.split(unit_sections(SYSTEMD / unit)["Service"]["ExecStart"])
    return [ENV_WORD.sub(lambda m: f"placeholder-{m.group(1)}", w) for w in words]


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (SYSTEMD / "faas.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


@pytest.mark.parametrize("unit", UNITS)
def test_exec_start_is_a_command_line_faas_serve_accepts(unit: str) -> None:
    words = _exec_start(unit)
    assert words[0].endswith("/faas") and words[1] == "serve", words
    parsed = parse_serve(words[1:])
    assert parsed.role == unit.removeprefix("faas-").removesuffix(".service")
    text = (SYSTEMD / unit).read_text()
    # Every variable the command line uses is one the example env file sets.
    assert set(ENV_WORD.findall(text)) <= _env_example().keys()


def test_invoker_unit_is_root_delegated_and_stops_its_sandboxes_itself() -> None:
    service = unit_sections(SYSTEMD / "faas-invoker.service")["Service"]
    assert service["User"] == "root"
    assert service["Delegate"] == "yes"
    # SIGTERM to the server alone; it tears down its zygote and sandboxes.
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/faas/faas.env"


@pytest.mark.parametrize("unit", UNITS)
def test_stop_timeout_covers_shutdown_timeout(unit: str) -> None:
    service = unit_sections(SYSTEMD / unit)["Service"]
    config = load(flag_value(_exec_start(unit), "--config").replace("/etc/faas", str(SYSTEMD)))
    assert config.shutdown_timeout_s + 10 <= int(service["TimeoutStopSec"]) <= config.shutdown_timeout_s + 60


def test_tokens_are_read_from_the_environment_not_the_command_line() -> None:
    for unit in UNITS:
        words = _exec_start(unit)
        assert "--token" not in words and "--cluster-token" not in words
    assert {"FAAS_TOKEN", "FAAS_CLUSTER_TOKEN"} <= _env_example().keys()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.skipif(not SYSTEM_UNITS.is_dir(), reason=f"no {SYSTEM_UNITS} to verify against")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # A root of the host's own units, plus these and the program they start
    # (verify checks that ExecStart is executable).
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, units / unit)
        program = root / _exec_start(unit)[0].lstrip("/")
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *UNITS], capture_output=True, text=True, timeout=60
    )
    # A misspelt key is only a warning (exit 0): any output is a failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


@pytest.mark.skipif(
    not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()),
    reason="nats-server is not installed here",
)
def test_nats_server_config_is_valid_with_jetstream() -> None:
    program = shutil.which("nats-server") or "/usr/sbin/nats-server"
    config = SYSTEMD / "nats-server.conf"
    result = subprocess.run([program, "-c", str(config), "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jetstream" in config.read_text()
