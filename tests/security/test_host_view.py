"""What of the host a sandbox sees (SPEC sections 1 and 6): the standard
library, its own runtime and its code, at sandbox paths; nothing of the
server's virtualenv, repository or interpreter installation, not even
their names. Checked by a deployed hostile function against the server's
real paths."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from tests.helpers import REPO, Server
from tests.security.common import assert_healthy, deploy_hostile

# The server runs the test runner's interpreter: its virtualenv and installation.
HOST_PATHS = sorted(
    {str(REPO), sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
)
SANDBOX_PREFIX = "/python"


def _host_paths(server: Server) -> list[str]:
    return [*HOST_PATHS, str(server.data_dir)]


def _naming_host(text: str, server: Server) -> list[str]:
    return [p for p in _host_paths(server) if p in text]


@pytest.fixture(scope="module")
def view(server: Server) -> dict[str, Any]:
    fn = deploy_hostile(server, "hostview")
    resp = server.invoke(fn, method="POST", json_body={"host_paths": _host_paths(server)}, timeout=120)
    assert resp.status == 200, resp.text
    return resp.json()


@pytest.mark.parametrize(
    "package", ["aiohttp", "pyroute2", "prometheus_client", "pytest", "hypothesis", "pyseccomp", "pip"]
)
def test_server_packages_do_not_import(view: dict[str, Any], package: str) -> None:
    assert view["server_packages"][package].startswith("ImportError"), view["server_packages"][package]


def test_standard_library_works(view: dict[str, Any]) -> None:
    """Modules that need shared libraries (libssl, libsqlite3, libffi, liblzma...)."""
    assert all(view["stdlib"].values()), view["stdlib"]
    assert view["stdlib_site_packages"] in ({}, {f"{SANDBOX_PREFIX}/lib/python3.{sys.version_info[1]}": []})


def test_no_file_names_a_host_path(view: dict[str, Any], server: Server) -> None:
    walk = view["walk"]
    print(f"files visible: {walk['files']}")
    assert walk["named"] == [], walk["named"][:20]
    for leftover in walk["leftovers"]:
        # The standard library's venv module ships an `activate` template (no path in it).
        assert leftover["names_host"] == [], leftover
        assert leftover["path"].startswith(f"{SANDBOX_PREFIX}/lib/python3.{sys.version_info[1]}/venv/"), (
            leftover
        )


def test_only_the_interpreter_and_libraries_are_executable(view: dict[str, Any]) -> None:
    executables = view["walk"]["executables"]
    programs = [path for path in executables if ".so" not in os.path.basename(path)]
    print(f"executable files: {len(executables)}, of which programs: {programs}")
    assert programs == [view["sys"]["executable"]]
    libraries = set(executables) - set(programs)
    dynload = f"{SANDBOX_PREFIX}/lib/python3.{sys.version_info[1]}/lib-dynload/"
    assert all(p.startswith((dynload, "/usr/lib/", "/lib64/", "/lib/")) for p in libraries), libraries


def test_interpreter_paths_are_sandbox_paths(view: dict[str, Any], server: Server) -> None:
    interpreter = view["sys"]
    assert interpreter["executable"].startswith(SANDBOX_PREFIX + "/")
    assert interpreter["prefix"] == interpreter["base_prefix"] == SANDBOX_PREFIX
    assert interpreter["path"][0] == "/var/task"
    assert all(p.startswith(SANDBOX_PREFIX + "/") for p in interpreter["path"][1:]), interpreter["path"]
    assert _naming_host(repr(interpreter), server) == []
    leaking = {name: paths for name, paths in view["modules"].items() if _naming_host(repr(paths), server)}
    assert leaking == {}, leaking
    assert _naming_host(repr(view["sysconfig"]), server) == []
    # A fresh interpreter started inside finds itself there too.
    started = view["interpreter"]
    assert started["rc"] == 0, started["err"]
    assert _naming_host(started["out"], server) == [] and SANDBOX_PREFIX in started["out"]


def test_cmdline_names_no_host_path(view: dict[str, Any], server: Server) -> None:
    for source, text in view["proc"].items():
        assert _naming_host(text, server) == [], source
    assert view["proc"]["/proc/1/cmdline"].split("\0")[0] == "python3"


def test_traceback_shows_sandbox_paths(view: dict[str, Any], server: Server) -> None:
    assert '"/var/task/hostile_hostview.py"' in view["traceback"]
    fn = deploy_hostile(server, "hostview")
    resp = server.invoke(fn, method="POST", json_body={"raise": True})
    assert resp.status == 500
    assert resp.json()["error"] == "RuntimeError: deep inside"
    lines = server.request("GET", f"/system/logs?name={fn}&tail=50").json()["lines"]
    logs = "\n".join(line for line in lines if resp.headers["X-Call-Id"] in line)
    assert "Traceback" in logs and 'File "/var/task/hostile_hostview.py"' in logs, logs
    assert f'File "{SANDBOX_PREFIX}/runtime/sandbox/runtime.py"' in logs, logs
    assert _naming_host(logs, server) == [], logs
    assert_healthy(server)


def test_tmp_is_noexec(view: dict[str, Any]) -> None:
    assert view["run_from_tmp"] in ("EACCES", "EPERM"), view["run_from_tmp"]


def test_memory_map_names_are_known(view: dict[str, Any], server: Server) -> None:
    """Known and documented (sandbox/hostfs.py): /proc/self/maps names the
    files the zygote mapped before the fork by their host paths. Names
    only, and nothing of the data directory."""
    named = {p for p in _naming_host(view["maps"], server)}
    print(f"host paths in /proc/self/maps: {sorted(named)}")
    assert str(server.data_dir) not in named
