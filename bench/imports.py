"""Layers and the import cache: the cold start of a function that imports
pandas at module level, with the import cache and without it, against a
fresh `python -c "import pandas"` (the same interpreter, the same layer on
PYTHONPATH) measured in the same run; the time a deploy spends building
layers of small packages; the memory of a warm pandas sandbox.

Cold starts are measured as bench/cold.py measures hello's: every function
is deployed first (here all with the same requirements.txt, so one layer
and one layer zygote), then each is called once over one keep-alive
connection, with a pause between calls. Where the time goes is read from
the server's own account of each cold start (its stage stamps, logged at
DEBUG) and from the response headers (init = billed - duration).

    python -m bench.imports [--quick]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from .common import Client, FaasServer, first_calls, summary_ms
from .density import pss_bytes

PANDAS = (
    "import pandas\n\n\ndef handle(event, context):\n"
    "    return {'sum': int(pandas.DataFrame({'a': [1, 2, 3]})['a'].sum())}\n"
)
SMALL_LAYERS = ("six", "pyyaml\nhumanize")
PAUSE_S = 0.020
TARGET_P50_MS = 25.0
ZYGOTE_BAND = (64_512, 65_536)  # uids of layer zygotes within a server's range (invoker/uids.py)
# The server, with the invoker's cold-start account (stage stamps) in its log.
DEBUG_ENTRY = (
    "-c",
    "import logging, sys\n"
    "from gateway.cli import main\n"
    "logging.getLogger('faas.invoker').setLevel(logging.DEBUG)\n"
    "sys.exit(main(sys.argv[1:]))\n",
)
# Stages a cold start waits for (a blank taken from the pool is specialized);
# the others (fork, mounts, warm-up) happened before, off its path.
ON_PATH = ("code_mounted", "credentials", "python_env", "streams", "init")


def _deploy(client: Client, name: str, requirements: str | None) -> dict[str, Any]:
    files = {"handler.py": base64.b64encode(PANDAS.encode()).decode()}
    if requirements is not None:
        files["requirements.txt"] = base64.b64encode(requirements.encode()).decode()
    status, out = client.request("POST", "/system/functions", {"name": name, "files": files})
    if status not in (200, 201):
        raise RuntimeError(f"deploy {name}: {status} {out[:2000]!r}")
    return json.loads(out)


def _wait_for_cache(client: Client, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _, out = client.request("GET", "/system/layers")
        state = json.loads(out)[0]["import_cache"]
        if state["state"] != "starting":
            return state
        time.sleep(0.1)
    raise RuntimeError("the layer's zygote did not start")


def faas_cold(n: int, import_cache: bool, log_path: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(f"import_cache = {'true' if import_cache else 'false'}\n")
    server = FaasServer("--config", config.name, log_path=log_path, entry=DEBUG_ENTRY)
    try:
        client = Client(server.port)
        try:
            build_ms = [_deploy(client, f"imp-{i}", "pandas\n")["build_ms"] for i in range(n)]
            cache = _wait_for_cache(client)
            time.sleep(0.5)  # the layer zygote's first blanks
            calls = first_calls(client, [f"imp-{i}" for i in range(n)], PAUSE_S)
            memory = _memory(server.proc.pid)
        finally:
            client.close()
    finally:
        server.stop()
        os.unlink(config.name)
    samples = [seconds for seconds, _ in calls]
    call_ms = [float(headers["X-Duration-Ms"]) for _, headers in calls]
    # Billed = ceil(duration + init): what is not the call is the cold start.
    init_ms = [
        float(headers["X-Billed-Duration-Ms"]) - duration
        for (_, headers), duration in zip(calls, call_ms, strict=True)
    ]
    return {
        **summary_ms(samples),
        "samples_ms": [round(s * 1000, 3) for s in samples],
        "import_cache": cache,
        "init_ms_p50": round(statistics.median(init_ms), 2),
        "call_ms_p50": round(statistics.median(call_ms), 2),
        "stages_ms_p50": _stages(log_path, server.proc.pid, n),
        # The first deploy built the layer; the others found it (resolution only).
        "first_deploy_build_ms": build_ms[0],
        "deploy_build_ms_p50": round(statistics.median(build_ms), 1),
        "memory": memory,
    }


def _stages(log_path: str, server_pid: int, n: int) -> dict[str, float]:
    """Median of each cold-start stage, from the last n stamp lines of the log."""
    with open(log_path, errors="replace") as f:
        lines = [line for line in f if "cold start of imp-" in line]
    per_stage: dict[str, list[float]] = {}
    for line in lines[-n:]:
        for stage, ms in re.findall(r"(\w+)=([\d.]+)", line.split(": ", 1)[1]):
            per_stage.setdefault(stage, []).append(float(ms))
    return {stage: round(statistics.median(values), 2) for stage, values in per_stage.items()}


def _memory(server_pid: int) -> dict[str, Any]:
    """PSS of the warm sandboxes (each function's one), and of the layer's
    zygote and its blanks, which share their pages with them."""
    sandboxes, zygote = [], 0
    for pid, uid in _descendants(server_pid):
        try:
            pss = pss_bytes(pid)["pss"]
        except OSError:
            continue
        offset = (uid - 200_000) % 65_536
        if ZYGOTE_BAND[0] <= offset < ZYGOTE_BAND[1]:
            zygote += pss  # the layer zygote, or a blank it forked (root of its user namespace)
        elif uid >= 200_000:
            sandboxes.append(pss)
    mib = 1024 * 1024
    total = sum(sandboxes) + zygote
    return {
        "sandboxes": len(sandboxes),
        "pss_per_sandbox_mib_p50": round(statistics.median(sandboxes) / mib, 1) if sandboxes else None,
        "layer_zygote_and_blanks_pss_mib": round(zygote / mib, 1),
        "all_pss_per_sandbox_mib": round(total / mib / len(sandboxes), 1) if sandboxes else None,
    }


def _descendants(root: int) -> list[tuple[int, int]]:
    """(pid, uid) of every process under `root`."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f)
            parents.setdefault(int(status["PPid"]), []).append((int(entry), int(status["Uid"].split()[0])))
        except (OSError, KeyError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def fresh_import(n: int, python_dir: str) -> dict[str, Any]:
    """`python -c "import pandas"` with the layer on PYTHONPATH, against `python -c pass`."""
    env = {**os.environ, "PYTHONPATH": python_dir}
    out = {}
    for name, code in (("import_pandas", "import pandas"), ("pass", "pass")):
        samples = []
        for _ in range(n):
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            samples.append(time.perf_counter() - t0)
        out[name] = summary_ms(samples)
    return out


def small_builds(log_path: str) -> dict[str, Any]:
    """Deploy time spent on layers of small packages: the first deploy
    (resolve and install; pip's cache may hold the wheels) and a second
    one with the same requirements (resolve only: the layer exists)."""
    server = FaasServer(log_path=log_path)
    try:
        client = Client(server.port)
        try:
            out = {}
            for i, requirements in enumerate(SMALL_LAYERS):
                first = _deploy(client, f"small-{i}-a", requirements)
                again = _deploy(client, f"small-{i}-b", requirements)
                out[requirements.replace("\n", "+")] = {
                    "first_build_ms": first["build_ms"],
                    "same_again_ms": again["build_ms"],
                    "size_bytes": first["layer"]["size_bytes"],
                    "packages": first["layer"]["packages"],
                }
            return out
        finally:
            client.close()
    finally:
        server.stop()


def run(quick: bool = False, log_path: str | None = None) -> dict[str, Any]:
    n = 8 if quick else 30
    log = log_path or tempfile.mkstemp(prefix="bench-imports-", suffix=".log")[1]
    with_cache = faas_cold(n, True, log)
    without_cache = faas_cold(n, False, log)
    layer_python = _layer_python_dir()
    return {
        "functions": n,
        "pacing": (
            f"{n} functions with requirements.txt 'pandas' deployed first, then one call each with a "
            f"{PAUSE_S * 1000:g} ms pause, over one keep-alive connection"
        ),
        "faas_import_cache": with_cache,
        "faas_no_import_cache": without_cache,
        "fresh_python": fresh_import(n, layer_python),
        "layer_builds": small_builds(log),
    }


def _layer_python_dir() -> str:
    """The pandas layer for the baseline: built here with pip as a layer is
    (binary wheels, into a directory of its own)."""
    target = os.path.join(tempfile.gettempdir(), "faas-bench-pandas-layer")
    if not os.path.isdir(os.path.join(target, "pandas")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--only-binary=:all:",
                "--target",
                target,
                "pandas",
            ],
            check=True,
        )
    return target


def rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    cache, plain, fresh = (
        r["faas_import_cache"],
        r["faas_no_import_cache"],
        r["fresh_python"]["import_pandas"],
    )
    return [
        {
            "benchmark": "imports",
            "metric": f"pandas function, first call p50 ({r['functions']} functions), import cache",
            "unit": "ms",
            "figure": cache["p50_ms"],
            "baseline": fresh["p50_ms"],
            "baseline_name": 'fresh python -c "import pandas"',
            "target": f"<= {TARGET_P50_MS:g} ms",
            "pass": cache["p50_ms"] <= TARGET_P50_MS,
        },
        {
            "benchmark": "imports",
            "metric": f"pandas function, first call p99 ({r['functions']} functions), import cache",
            "unit": "ms",
            "figure": cache["p99_ms"],
            "baseline": fresh["p99_ms"],
            "baseline_name": 'fresh python -c "import pandas"',
            "target": "reported",
            "pass": None,
        },
        {
            "benchmark": "imports",
            "metric": f"pandas function, first call p50 ({r['functions']} functions), no import cache",
            "unit": "ms",
            "figure": plain["p50_ms"],
            "baseline": fresh["p50_ms"],
            "baseline_name": 'fresh python -c "import pandas"',
            "target": "reported",
            "pass": None,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
