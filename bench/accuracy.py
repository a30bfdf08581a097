"""Metering accuracy: CPU time burned inside a function (time.process_time)
vs the CPU time metered from its cgroup, and memory allocated vs the peak
metered, from the usage records.

    python -m bench.accuracy [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics

from .common import REPO, Client, FaasServer

BURN = (REPO / "tests" / "functions" / "burn.py").read_text()
MEMHOG = (REPO / "tests" / "functions" / "memhog.py").read_text()
SLEEP = "import time\ndef handle(e, c):\n    time.sleep(float(e.query.get('s', '0.3')))\n    return 'ok'\n"


def _records(client: Client, function: str) -> dict[str, dict[str, object]]:
    _, body = client.request("GET", f"/system/usage?function={function}&records=1&limit=100000")
    return {r["call_id"]: r for r in json.loads(body)["records"]}


def run(repeat: int) -> dict[str, object]:
    server = FaasServer()
    rows: list[dict[str, object]] = []
    try:
        server.deploy("burn", BURN, timeout_s=10)
        server.deploy("memhog", MEMHOG, memory_mb=256)
        server.deploy("sleeper", SLEEP)
        client = Client(server.port)
        for fn in ("burn", "memhog", "sleeper"):
            client.request("GET", f"/function/{fn}?ms=1&mb=1&s=0")  # cold start out of the way
        for target_ms in (50, 200):
            errors = []
            for _ in range(repeat):
                client.conn.request("GET", f"/function/burn?ms={target_ms}")
                resp = client.conn.getresponse()
                inside = json.loads(resp.read())["cpu_ms"]
                metered = _records(client, "burn")[resp.getheader("X-Call-Id")]["cpu_ms"]
                errors.append(metered - inside)
                rows.append({"what": f"cpu {target_ms} ms", "expected": round(inside, 2), "metered": metered})
            rows.append(
                {"what": f"cpu {target_ms} ms: mean error ms", "value": round(statistics.fmean(errors), 3)}
            )
        for _ in range(repeat):
            client.conn.request("GET", "/function/memhog?mb=100")
            resp = client.conn.getresponse()
            resp.read()
            rec = _records(client, "memhog")[resp.getheader("X-Call-Id")]
            rows.append({"what": "memory 100 MiB", "expected": 100, "metered": rec["max_memory_mb"]})
        client.conn.request("GET", "/function/sleeper?s=0.3")
        resp = client.conn.getresponse()
        resp.read()
        rec = _records(client, "sleeper")[resp.getheader("X-Call-Id")]
        rows.append(
            {
                "what": "sleep 300 ms",
                "wall_ms": rec["wall_ms"],
                "billed_ms": rec["billed_ms"],
                "cpu_ms": rec["cpu_ms"],
            }
        )
        client.close()
    finally:
        server.stop()
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    print(json.dumps(run(parser.parse_args().repeat), indent=1))


if __name__ == "__main__":
    main()
