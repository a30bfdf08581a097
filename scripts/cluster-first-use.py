"""How soon what a function needs reaches the second server of a cluster:
two `faas serve` on one PostgreSQL (Debian's postgresql package, started
here), each with its own data directory. Measures, ROUNDS times each:
a secret created through A until B lists it; a deploy through A until its
first call through B answers (code fetched on that call); the same with a
requirements.txt (`six`, from pip's configured index: the layer built by A,
fetched and unpacked by B). Run as root from the repository root:
.venv/bin/python scripts/cluster-first-use.py"""

import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.helpers import Server
from tests.services import fresh_database, postgres_server

ROUNDS = 5
HANDLER = "import six\n\ndef handle(event, context):\n    return six.__version__\n"


def until(check, timeout_s=30.0):
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError("timed out")
        time.sleep(0.002)
    return (time.perf_counter() - t0) * 1000


def body(name, files):
    return {"name": name, "files": {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}}


def summary(label, values):
    print(f"{label}: median {statistics.median(values):.0f} ms, min {min(values):.0f}, max {max(values):.0f}")


with postgres_server() as server_url, tempfile.TemporaryDirectory() as tmp:
    url = fresh_database(server_url, "faas_first_use")
    servers = []
    for name in ("a", "b"):
        (Path(tmp) / name).mkdir()
        servers.append(Server(Path(tmp) / name / "data", extra_args=("--database", url)).start())
    a, b = servers
    try:
        secret_ms, code_ms, layer_ms = [], [], []
        for i in range(ROUNDS):
            assert (
                a.request("POST", "/system/secrets", json_body={"name": f"s{i}", "value": "v"}).status == 201
            )
            secret_ms.append(until(lambda i=i: b.request("GET", f"/system/secrets/s{i}").status == 200))
            hello = body(f"hello{i}", {"handler.py": "def handle(event, context):\n    return 'hi'\n"})
            assert a.request("POST", "/system/functions", json_body=hello).status == 201
            code_ms.append(until(lambda i=i: b.invoke(f"hello{i}").status == 200))
            layered = body(f"six{i}", {"handler.py": HANDLER, "requirements.txt": "six\n"})
            resp = a.request("POST", "/system/functions", json_body=layered, timeout=600)
            assert resp.status == 201, resp.text
            layer_ms.append(until(lambda i=i: b.invoke(f"six{i}").status == 200))
            a.request("DELETE", f"/system/functions/six{i}")
            until(lambda: not os.listdir(b.data_dir / "layers"))  # b fetches it again next round
        summary("secret created on A until B lists it", secret_ms)
        summary("deploy on A until B's first call answers (code fetched)", code_ms)
        summary("deploy with a layer on A until B's first call answers (layer fetched)", layer_ms)
        print(
            "layers built by B:",
            b.log().count("built layer"),
            "fetched by B:",
            b.log().count("fetched layer"),
        )
    except BaseException:
        for srv in servers:
            print(f"--- {srv.url} log tail:\n{srv.log()[-4000:]}")
        raise
    finally:
        for srv in servers:
            srv.stop()
