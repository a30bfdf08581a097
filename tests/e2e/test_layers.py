"""Layers end to end (docs/HTTP-API.md#layers): a real server, pip and the
package index (skipped, saying why, without one), real sandboxes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.package_index import files_body, require_index
from tests.helpers import REPO, Server, server_with_config, wait_until

PROBE = """
import os, sys
import six

def handle(event, context):
    try:
        import aiohttp  # the server's own package: never visible inside
        server_package = "visible"
    except ImportError:
        server_package = "hidden"
    return {"six": six.__version__, "file": six.__file__, "path": sys.path[:3], "aiohttp": server_package}
"""
WITHOUT_LAYER = "import six\n\ndef handle(event, context):\n    return 'never'\n"
BUILD_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_index()
    srv = Server(tmp_path_factory.mktemp("layers") / "data").start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def deploy(srv: Server, name: str, files: dict[str, str], **options: Any) -> Any:
    return srv.request(
        "POST", "/system/functions", json_body=files_body(name, files, **options), timeout=BUILD_TIMEOUT_S
    )


def layer_dirs(srv: Server) -> list[str]:
    root = srv.data_dir / "layers"
    return sorted(os.listdir(root)) if root.is_dir() else []


def test_requirements_are_installed_and_only_the_layer_is_importable(server: Server) -> None:
    resp = deploy(server, "with-six", {"handler.py": PROBE, "requirements.txt": "six\n"})
    assert resp.status == 201, resp.text
    record = resp.json()
    assert set(record["layer"]["packages"]) == {"six"} and record["layer"]["size_bytes"] > 0
    assert record["build_ms"] > 0
    out = server.invoke("with-six").json()
    assert out["file"] == "/opt/python/six.py" and out["path"][:2] == ["/var/task", "/opt/python"]
    assert out["six"] == record["layer"]["packages"]["six"]
    assert out["aiohttp"] == "hidden"
    # The same import without the layer: no six (nor any package of the server's).
    assert server.deploy("without-six", WITHOUT_LAYER).status == 201
    failed = server.invoke("without-six")
    assert failed.status == 500 and "No module named 'six'" in failed.json()["error"]
    assert server.request("DELETE", "/system/functions/without-six").status == 200


def test_functions_with_the_same_requirements_share_one_layer(server: Server) -> None:
    first = server.request("GET", "/system/functions/with-six").json()["layer"]["id"]
    resp = deploy(server, "also-six", {"handler.py": PROBE, "requirements.txt": "# same\nsix\n"})
    assert resp.status == 201, resp.text
    assert resp.json()["layer"]["id"] == first
    assert layer_dirs(server) == [first]  # one directory on disk
    [layer] = server.request("GET", "/system/layers").json()
    assert layer["id"] == first and layer["functions"] == ["also-six", "with-six"]
    assert layer["requirements"] == ["six"] and layer["imports"] == ["six"]
    assert server.invoke("also-six").json()["file"] == "/opt/python/six.py"


@pytest.mark.parametrize(
    ("requirements", "named", "pip_says"),
    [
        ("no-such-package-faas-test==1.0\n", "no-such-package-faas-test==1.0", "No matching distribution"),
        # docopt has only ever been published as a source distribution.
        ("docopt\n", "docopt", "No matching distribution"),
        ("six==1.16.0\nsix==1.17.0\n", "six", "ERROR"),
        ("-e git+https://example.com/x.git#egg=x\n", "requirements.txt line 1", "pip options"),
    ],
)
def test_requirements_that_cannot_be_installed_from_wheels_are_a_400(
    server: Server, requirements: str, named: str, pip_says: str
) -> None:
    before = layer_dirs(server)
    resp = deploy(server, "cannot-install", {"handler.py": PROBE, "requirements.txt": requirements})
    assert resp.status == 400, resp.text
    error = resp.json()["error"]
    assert named in error and pip_says in error
    assert server.request("GET", "/system/functions/cannot-install").status == 404
    assert layer_dirs(server) == before  # nothing half-made, nothing new


def test_concurrent_identical_deploys_build_the_layer_once(server: Server) -> None:
    results: list[Any] = []

    def one(i: int) -> None:
        results.append(
            deploy(
                server,
                f"concurrent-{i}",
                {"handler.py": "def handle(e, c):\n    return 1\n", "requirements.txt": "humanize\n"},
            )
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status for r in results] == [201, 201, 201], [r.text for r in results]
    ids = {r.json()["layer"]["id"] for r in results}
    assert len(ids) == 1
    [layer_id] = ids
    assert server.log().count(f"built layer {layer_id}") == 1


def test_the_cli_deploys_a_directory_and_lists_layers(server: Server, tmp_path: Path) -> None:
    function = tmp_path / "yaml-fn"
    function.mkdir()
    (function / "handler.py").write_text(
        "import yaml\n\ndef handle(e, c):\n    return yaml.safe_load('a: [1, 2]')\n"
    )
    (function / "requirements.txt").write_text("pyyaml\n")
    env = {**os.environ, "FAAS_GATEWAY": server.url}
    faas = [sys.executable, "-m", "gateway.cli"]
    out = subprocess.run(
        [*faas, "deploy", str(function)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=BUILD_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("layer ") and "1 packages" in out.stdout
    assert "deployed yaml-fn version 1 (created)" in out.stdout
    assert out.stderr == ""  # no progress line when stderr is not a terminal
    assert server.invoke("yaml-fn").json() == {"a": [1, 2]}
    listed = subprocess.run([*faas, "layers"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "pyyaml==" in line]
    assert "yaml-fn" in row
    as_json = json.loads(
        subprocess.run(
            [*faas, "layers", "--json"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
        ).stdout
    )
    assert any(layer["functions"] == ["yaml-fn"] for layer in as_json)


def test_a_layer_goes_when_no_function_uses_it(server: Server) -> None:
    shared = server.request("GET", "/system/functions/with-six").json()["layer"]["id"]
    for name in ("with-six", "also-six"):
        assert server.request("DELETE", f"/system/functions/{name}").status == 200
    wait_until(
        lambda: shared not in layer_dirs(server),
        15,
        "the unused layer to be removed",
        detail=lambda: layer_dirs(server),
    )
    assert all(layer["id"] != shared for layer in server.request("GET", "/system/layers").json())


def _pip_processes(data_dir: Path) -> list[int]:
    """pip processes building a layer of this data directory (their cwd is in it)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.readlink(f"/proc/{pid}/cwd").startswith(str(data_dir / "layers")):
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_an_interrupted_build_leaves_nothing(tmp_path: Path) -> None:
    require_index()
    srv = Server(tmp_path / "data").start()
    layers = srv.data_dir / "layers"
    deploying = threading.Thread(
        target=lambda: _ignore_errors(
            deploy, srv, "big", {"handler.py": PROBE, "requirements.txt": "numpy\n"}
        )
    )
    deploying.start()
    try:
        wait_until(
            lambda: any(name.startswith(".build-") for name in layer_dirs(srv)),
            120,
            "pip to start installing numpy",
            detail=lambda: layer_dirs(srv),
        )
        srv.stop(signal.SIGKILL)
    finally:
        deploying.join()
    wait_until(lambda: not _pip_processes(srv.data_dir), 10, "pip to die with the server")
    srv.start()
    try:
        assert sorted(os.listdir(layers)) == []  # the half-made build is gone, nothing was renamed into place
        assert srv.request("GET", "/system/layers").json() == []
        assert srv.request("GET", "/system/functions/big").status == 404
    finally:
        assert srv.stop() == 0


def _ignore_errors(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OSError:
        pass  # the server was killed under the request


def test_a_layer_over_the_limit_or_a_build_past_its_timeout_is_a_400(tmp_path: Path) -> None:
    require_index()
    (tmp_path / "small").mkdir()
    (tmp_path / "slow").mkdir()
    srv = server_with_config(tmp_path / "small", "layer_limit_bytes = 4096\n").start()
    try:
        resp = deploy(srv, "too-big", {"handler.py": PROBE, "requirements.txt": "six\n"})
        assert resp.status == 400 and "layer_limit_bytes" in resp.json()["error"], resp.text
        assert layer_dirs(srv) == []
    finally:
        assert srv.stop() == 0
    srv = server_with_config(tmp_path / "slow", "build_timeout_s = 0.05\n").start()
    try:
        resp = deploy(srv, "too-slow", {"handler.py": PROBE, "requirements.txt": "six\n"})
        assert resp.status == 400 and "build_timeout_s" in resp.json()["error"], resp.text
        assert layer_dirs(srv) == []
        assert not _pip_processes(srv.data_dir)
    finally:
        assert srv.stop() == 0
