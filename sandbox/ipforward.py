"""IPv4 forwarding, which outbound sandboxes need (their packets are routed
by the host), turned on only while a server needs it.

Where the host has it off, the first server to need it turns it on and
notes that it did; every server that uses it holds a shared flock for as
long as it does. A server that stops takes the lock exclusively if it can
(no other server uses forwarding in this network namespace) and, if a
server turned forwarding on, turns it off again. Locks are per network
namespace (its inode), and the kernel lets go of them even on SIGKILL; forwarding
found on with no server of ours using it is left on at stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os

from . import netdev

log = logging.getLogger("faas.network")

LOCK_DIR = "/run/faas/ip-forward"
SYSCTL = "net/ipv4/ip_forward"


class Forwarding:
    def __init__(self, lock_dir: str = LOCK_DIR) -> None:
        netns = os.stat("/proc/self/ns/net").st_ino
        self._base = os.path.join(lock_dir, str(netns))
        self._fd: int | None = None

    def acquire(self) -> None:
        """Forwarding on for as long as this is held. OSError (with what to
        do in its message) where it is off and cannot be turned on."""
        if self._fd is not None:
            return
        os.makedirs(os.path.dirname(self._base), mode=0o700, exist_ok=True)
        decide = os.open(self._base + ".decide", os.O_RDWR | os.O_CREAT, 0o600)
        users = os.open(self._base + ".users", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(decide, fcntl.LOCK_EX)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            if netdev.read_sysctl(SYSCTL) != "1":
                self._turn_on()
            elif alone:
                # On, and no server of ours uses it: whoever turned it on
                # (the host, or a server killed since), it stays on.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._base + ".was-off")
            fcntl.flock(users, fcntl.LOCK_SH)
        except BaseException:
            os.close(users)
            raise
        finally:
            os.close(decide)
        self._fd = users

    def _turn_on(self) -> None:
        try:
            netdev.write_sysctl(SYSCTL, "1")
        except OSError as exc:
            raise OSError(
                exc.errno,
                "IP forwarding is off on this host and cannot be turned on "
                f"(net.ipv4.ip_forward: {exc.strerror}); turn it on to give functions outbound network",
            ) from None
        with open(self._base + ".was-off", "w"):
            pass
        log.warning("turned on net.ipv4.ip_forward for outbound sandboxes (off again at stop)")

    def release(self) -> None:
        """Let go; the last user turns forwarding off if a server turned it on."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        decide = os.open(self._base + ".decide", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(decide, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # another server still routes its sandboxes' packets
            os.close(decide)
            return
        try:
            if os.path.exists(self._base + ".was-off"):
                netdev.write_sysctl(SYSCTL, "0")
                os.unlink(self._base + ".was-off")
        except OSError as exc:
            log.warning("could not turn net.ipv4.ip_forward off again: %s", exc)
        finally:
            os.close(fd)
            os.close(decide)
