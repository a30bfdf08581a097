"""What a call printed before its sandbox was killed (timeout, out of
memory) is kept in the function's logs, bounded, with the kill reason."""

from __future__ import annotations

import pytest

from tests.helpers import TEST_FUNCTIONS, Server


@pytest.mark.parametrize(("how", "status", "reason"), [("spin", 504, "timeout"), ("oom", 502, "oom")])
def test_output_before_a_kill_is_kept_with_the_reason(
    server: Server, how: str, status: int, reason: str
) -> None:
    fn = f"dies-{how}"
    server.deploy_ok(fn, TEST_FUNCTIONS / "prints_then_dies.py", timeout_s=1, memory_mb=64)
    resp = server.invoke(fn, f"?how={how}", timeout=30)
    assert resp.status == status, resp.text
    call_id = resp.headers["X-Call-Id"]
    lines = server.request("GET", f"/system/logs?name={fn}&tail=50").json()["lines"]
    ours = [line for line in lines if f" {call_id} " in line]
    texts = [line.split(" ", 2)[2] for line in ours]
    assert f"printed before the {how} kill by {call_id}" in texts, lines
    assert "to stderr as well" in texts, lines
    killed = [t for t in texts if t.startswith(f"sandbox killed ({reason})")]
    assert killed, lines
    # The output comes first, then why the sandbox went.
    assert texts.index("to stderr as well") < texts.index(killed[0])
