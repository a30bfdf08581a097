"""One data directory, one `faas serve` (gateway/serve.py's lock): a second
server on it refuses with one line and a non-zero exit, and leaves the first
one's state and sandboxes alone. The lock dies with its holder, even by SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.helpers import EXAMPLES, REPO, Server, free_port


def _second_serve(data_dir: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port()), "--data-dir", data_dir],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )


def test_a_second_server_on_the_same_data_directory_refuses(fresh_server: Server) -> None:
    fresh_server.deploy_ok("hello", EXAMPLES / "hello.py")
    assert fresh_server.invoke("hello").status == 200  # a warm sandbox now
    assert fresh_server.proc is not None
    second = _second_serve(str(fresh_server.data_dir))
    assert second.returncode != 0, second.stderr
    assert second.stderr.splitlines() == [
        f"faas serve: data directory {fresh_server.data_dir} is in use by another faas serve "
        f"(pid {fresh_server.proc.pid})"
    ], second.stderr
    # The first server still serves, from the same warm sandbox: nothing of it was touched.
    again = fresh_server.invoke("hello")
    assert again.status == 200 and again.headers["X-Cold-Start"] == "false", (again.status, again.text)
    assert [f["name"] for f in fresh_server.request("GET", "/system/functions").json()] == ["hello"]


def test_the_lock_dies_with_a_killed_server(fresh_server: Server) -> None:
    fresh_server.stop(signal.SIGKILL)
    after = Server(fresh_server.data_dir).start()
    try:
        assert after.request("GET", "/healthz").status == 200
    finally:
        assert after.stop() == 0, after.log()[-4000:]
