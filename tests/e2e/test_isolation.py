"""Isolation, checked from inside a deployed function (docs/SANDBOX.md)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.helpers import REPO, TEST_FUNCTIONS, Server


@pytest.fixture(scope="module")
def probe(server: Server) -> dict[str, Any]:
    server.deploy_ok("probe", TEST_FUNCTIONS / "probe.py", env={"PROBE_SETTING": "on"})
    host_paths = [
        "/etc/shadow",
        "/root",
        str(REPO),
        str(REPO / "pyproject.toml"),
        str(server.data_dir),
        "/home",
        "/usr/bin/python3",
        "/var/lib",
        "/sys/fs/cgroup",
        "/run",
    ]
    resp = server.invoke("probe", method="POST", json_body={"host_paths": host_paths})
    assert resp.status == 200, resp.text
    return resp.json()


def test_sees_only_its_own_processes(probe: dict[str, Any]) -> None:
    assert probe["pid"] == 1
    assert probe["pids"] == [1]


def test_own_hostname(probe: dict[str, Any]) -> None:
    assert probe["hostname"] != socket.gethostname()
    assert probe["hostname"].startswith("sandbox-")


def test_only_loopback(probe: dict[str, Any]) -> None:
    assert probe["interfaces"] == ["lo"]


def test_unprivileged(probe: dict[str, Any]) -> None:
    assert probe["uid"] != 0 and probe["euid"] != 0 and probe["gid"] != 0
    assert int(probe["cap_eff"], 16) == 0
    assert int(probe["cap_bnd"], 16) == 0
    assert probe["no_new_privs"] == "1"


def test_code_is_read_only_and_tmp_writable(probe: dict[str, Any]) -> None:
    assert probe["cwd"] == "/var/task"
    assert probe["task_files"] == ["probe.py"]
    assert probe["write_task"] is False
    assert probe["write_root"] is False
    assert probe["write_tmp"] is True


def test_host_files_invisible(probe: dict[str, Any]) -> None:
    assert not any(probe["visible"].values()), probe["visible"]
    assert set(probe["root_entries"]) <= {"dev", "etc", "lib", "lib64", "proc", "python", "tmp", "usr", "var"}
    assert "root" not in probe["root_entries"] and "home" not in probe["root_entries"]


def test_environment_is_the_functions_own(probe: dict[str, Any]) -> None:
    env = probe["env"]
    assert env["PROBE_SETTING"] == "on"
    assert "FAAS_TOKEN" not in env
    assert not any(str(REPO) in v for v in env.values())


def test_network_is_loopback_only(server: Server) -> None:
    code = (
        "import socket\n"
        "def handle(event, context):\n"
        "    out = {}\n"
        "    for host, port in [('127.0.0.1', GATEWAY_PORT), ('8.8.8.8', 53), ('10.0.0.1', 80)]:\n"
        "        s = socket.socket(); s.settimeout(1)\n"
        "        try:\n"
        "            s.connect((host, port)); out[host] = 'connected'\n"
        "        except OSError as e:\n"
        "            out[host] = type(e).__name__\n"
        "        finally:\n"
        "            s.close()\n"
        "    srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(); port = srv.getsockname()[1]\n"
        "    c = socket.create_connection(('127.0.0.1', port)); c.close(); srv.close()\n"
        "    out['own_loopback'] = 'ok'\n"
        "    return out\n"
    ).replace("GATEWAY_PORT", str(server.port))
    server.deploy_ok("netprobe", code)
    resp = server.invoke("netprobe")
    assert resp.status == 200, resp.text
    result = resp.json()
    print(result)
    assert result["127.0.0.1"] != "connected"  # the gateway's port on the host is unreachable
    assert result["8.8.8.8"] != "connected" and result["10.0.0.1"] != "connected"
    assert result["own_loopback"] == "ok"


def test_tmp_is_private_per_sandbox(server: Server) -> None:
    code = (
        "import os\n"
        "def handle(event, context):\n"
        "    before = os.listdir('/tmp')\n"
        "    open('/tmp/' + context.function_name, 'w').write('x')\n"
        "    return before\n"
    )
    server.deploy_ok("tmp-a", code)
    server.deploy_ok("tmp-b", code)
    assert server.invoke("tmp-a").json() == []
    assert server.invoke("tmp-b").json() == []
    assert server.invoke("tmp-a").json() == ["tmp-a"]  # lives as long as the sandbox


def test_seccomp_blocks_namespace_and_mount_calls(server: Server) -> None:
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def attempt(fn, *args):\n"
        "    rc = fn(*args)\n"
        "    return 'ok' if rc == 0 else os.strerror(ctypes.get_errno())\n"
        "def handle(event, context):\n"
        "    status = open('/proc/self/status').read()\n"
        "    return {\n"
        "        'seccomp': status.split('Seccomp:')[1].split()[0],\n"
        "        'unshare': attempt(libc.unshare, 0x00020000),\n"
        "        'mount': attempt(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None),\n"
        "        'ptrace': attempt(libc.ptrace, 16, 1, 0, 0),\n"
        "        'sethostname': attempt(libc.sethostname, b'x', 1),\n"
        "    }\n"
    )
    server.deploy_ok("seccomp-probe", code)
    resp = server.invoke("seccomp-probe")
    assert resp.status == 200, resp.text
    result = resp.json()
    assert result["seccomp"] == "2"
    for call in ("unshare", "mount", "ptrace", "sethostname"):
        assert result[call] == "Operation not permitted", result
