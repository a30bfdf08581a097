"""Versions and aliases end to end: a real server, real sandboxes, HTTP and
the `faas` CLI. Deploys make versions (or none), /function/NAME@Q calls a
version or an alias, X-Faas-Version names the version that ran, rollback
runs on the old version's warm sandbox, a canary alias splits 1,000 calls
within 2 points of its weight, retention and deletion, a restart."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

from tests.e2e.test_cli import faas, ok
from tests.helpers import Server, server_with_config

# A token per sandbox: tells which sandbox answered, and whether it was a cold start.
TOKEN_FN = """
import os
TOKEN = os.urandom(8).hex()
TAG = {tag!r}

def handle(event, context):
    return {{"tag": TAG, "version": context.function_version, "token": TOKEN, "path": event.path}}
"""


def deploy(server: Server, name: str, tag: str, **options: object) -> dict[str, object]:
    return server.deploy_ok(name, TOKEN_FN.format(tag=tag), **options)


def call(server: Server, target: str, path: str = "") -> tuple[int, dict[str, str], bool]:
    """(X-Faas-Version, the function's answer, whether it was a cold start)."""
    resp = server.invoke(target, path)
    assert resp.status == 200, (target, resp.status, resp.text)
    assert resp.json()["version"] == resp.headers["X-Faas-Version"]
    return int(resp.headers["X-Faas-Version"]), resp.json(), resp.headers["X-Cold-Start"] == "true"


def test_deploys_make_versions_and_calls_name_them(server: Server) -> None:
    first = server.deploy("ver", TOKEN_FN.format(tag="one"))
    assert first.status == 201 and first.json()["version"] == 1 and first.json()["changed"] is True
    same = server.deploy("ver", TOKEN_FN.format(tag="one"))
    assert same.status == 200, same.text
    assert (same.json()["version"], same.json()["changed"]) == (1, False)
    second = server.deploy("ver", TOKEN_FN.format(tag="two"), memory_mb=64)
    assert second.status == 200 and (second.json()["version"], second.json()["changed"]) == (2, True)
    assert second.json()["aliases"] == [{"name": "live", "version": 2, "weights": {}, "follows_newest": True}]

    version, answer, _ = call(server, "ver")
    assert (version, answer["tag"]) == (2, "two")
    version, answer, _ = call(server, "ver@1", "/sub/path?x=1")
    assert (version, answer["tag"], answer["path"]) == (1, "one", "/sub/path")
    assert call(server, "ver@live")[0] == 2
    assert call(server, "ver@1")[1]["token"] != call(server, "ver@2")[1]["token"]  # sandboxes of their own
    for target in ("ver@3", "ver@nope", "ver@", "nope@1"):
        resp = server.invoke(target)
        assert resp.status == 404 and resp.json()["error"], (target, resp.text)

    listed = server.request("GET", "/system/functions/ver/versions").json()
    assert [(v["version"], v["memory_mb"], v["aliases"]) for v in listed["versions"]] == [
        (1, 128, []),
        (2, 64, ["live"]),
    ]
    assert all(v["instances"] == 1 for v in listed["versions"])
    described = server.request("GET", "/system/functions/ver").json()
    assert described["version"] == 2 and described["instances"] == 2


def test_rollback_runs_on_the_old_versions_warm_sandbox(server: Server) -> None:
    deploy(server, "roll", "one")
    _, before, _ = call(server, "roll")
    deploy(server, "roll", "two")
    assert call(server, "roll")[0] == 2
    resp = server.request("POST", "/system/functions/roll/rollback", json_body={})
    assert resp.status == 200, resp.text
    assert resp.json() == {
        "function": "roll",
        "previous": 2,
        "live": {"name": "live", "version": 1, "weights": {}, "follows_newest": False},
    }
    version, after, cold = call(server, "roll")
    assert (version, cold, after["token"]) == (1, False, before["token"])  # no cold start
    # A new version does not move a pinned live; the CLI moves it back.
    deploy(server, "roll", "three")
    assert call(server, "roll")[0] == 1
    assert (
        ok(server.url, "rollback", "roll", "--to", "3").strip()
        == "rolled back roll: live -> version 3 (was 1)"
    )
    assert call(server, "roll")[0] == 3
    bad = server.request("POST", "/system/functions/roll/rollback", json_body={"to": 9})
    assert bad.status == 400 and "has no version 9" in bad.json()["error"]


def test_a_canary_alias_splits_1000_calls_within_2_points(server: Server) -> None:
    deploy(server, "canary", "one")
    deploy(server, "canary", "two")
    resp = server.request(
        "PUT", "/system/functions/canary/aliases/beta", json_body={"version": 1, "weights": {"2": 0.1}}
    )
    assert resp.status == 201, resp.text
    assert resp.json() == {"name": "beta", "version": 1, "weights": {"2": 0.1}, "follows_newest": False}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    counts = {1: 0, 2: 0}
    try:
        for _ in range(1000):
            conn.request("GET", "/function/canary@beta")
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200
            counts[int(answer.headers["X-Faas-Version"])] += 1
    finally:
        conn.close()
    share = counts[2] / 1000
    print(f"canary split: {counts[2]} of 1000 calls to version 2 ({share:.1%}, weight 10%)")
    assert abs(share - 0.1) <= 0.02, counts
    # The usage records carry the version that ran.
    usage = server.request("GET", "/system/usage?function=canary&records=1&limit=100000").json()
    ran = [r["version"] for r in usage["records"]]
    assert (ran.count(1), ran.count(2)) == (counts[1], counts[2])


def test_aliases_with_the_cli(server: Server) -> None:
    deploy(server, "aliased", "one")
    deploy(server, "aliased", "two")
    assert ok(server.url, "alias", "aliased", "stable", "1").strip() == "stable of aliased -> version 1"
    assert call(server, "aliased@stable")[0] == 1
    out = ok(server.url, "alias", "aliased", "stable", "1", "--weight", "2=50%")
    assert out.strip() == "stable of aliased -> version 1 (50%), version 2 (50%)"
    assert ok(server.url, "alias", "aliased").splitlines() == [
        "ALIAS   POINTS AT",
        "live    version 2, following the newest",
        "stable  version 1 (50%), version 2 (50%)",
    ]
    table = ok(server.url, "versions", "aliased").splitlines()
    assert table[0].split() == ["VERSION", "CREATED", "CODE", "MEMORY", "SECRETS", "INSTANCES", "ALIASES"]
    assert [row.split()[0] for row in table[1:]] == ["1", "2"] and table[2].split()[-1] == "live,stable"
    assert (
        ok(server.url, "alias", "aliased", "stable", "--delete").strip() == "deleted alias stable of aliased"
    )
    assert server.invoke("aliased@stable").status == 404
    missing = faas(server.url, "alias", "aliased", "stable", "--delete")
    assert missing.returncode == 1 and "has no alias 'stable'" in missing.stderr
    bad = faas(server.url, "alias", "aliased", "beta", "7")
    assert bad.returncode == 1 and "has no version 7" in bad.stderr
    # Unpinning live over HTTP: it follows the newest again.
    server.request("PUT", "/system/functions/aliased/aliases/live", json_body={"version": 1})
    assert call(server, "aliased")[0] == 1
    unpinned = server.request("DELETE", "/system/functions/aliased/aliases/live")
    assert unpinned.status == 200 and unpinned.json()["follows_newest"] is True
    assert call(server, "aliased")[0] == 2


def code_dirs(data_dir: Path, name: str) -> list[str]:
    base = data_dir / "code" / name
    return sorted(os.listdir(base)) if base.is_dir() else []


def test_retention_deletion_and_a_restart(tmp_path: Path) -> None:
    srv = server_with_config(tmp_path, "versions_kept = 2\n").start()
    try:
        deploy(srv, "kept", "v1")
        srv.request("PUT", "/system/functions/kept/aliases/first", json_body={"version": 1})
        for tag in ("v2", "v3", "v4"):
            deploy(srv, "kept", tag)
        listed = srv.request("GET", "/system/functions/kept/versions").json()["versions"]
        assert [v["version"] for v in listed] == [1, 3, 4]  # the newest two and the aliased one
        assert len(code_dirs(srv.data_dir, "kept")) == 3
        assert srv.invoke("kept@2").status == 404
        assert call(srv, "kept@first")[1]["tag"] == "v1"
        srv.request("POST", "/system/functions/kept/rollback", json_body={})
        assert srv.stop() == 0
        srv.start()
        assert [
            v["version"] for v in srv.request("GET", "/system/functions/kept/versions").json()["versions"]
        ] == [
            1,
            3,
            4,
        ]
        assert call(srv, "kept")[1]["tag"] == "v3"  # live stays pinned across a restart
        assert call(srv, "kept@first")[0] == 1
        assert srv.request("DELETE", "/system/functions/kept").status == 200
        assert code_dirs(srv.data_dir, "kept") == []
        assert srv.request("GET", "/system/functions/kept/versions").status == 404
        assert srv.invoke("kept@first").status == 404
        again = deploy(srv, "kept", "v1")
        assert again["version"] == 1 and [a["name"] for a in again["aliases"]] == ["live"]  # type: ignore[union-attr]
    finally:
        srv.stop()
