"""IPv4 forwarding, which outbound sandboxes need (their packets are routed
by the host), turned on only while a server needs it.

Where the host has it off, the first server to need it turns it on and
notes that it did; every server that uses it holds a shared flock for as
long as it does. A server that stops takes that lock exclusively if it can
(no other server uses forwarding in this network namespace) and, if a
server turned forwarding on, turns it off again. Forwarding found on with
no server of ours using it stays on at stop. Locks are per network
namespace (its inode); the kernel lets go of them even on SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os

from . import netdev
from .locks import try_lock, unlock_and_remove

log = logging.getLogger("faas.network")

SYSCTL = "net/ipv4/ip_forward"


class Forwarding:
    def __init__(self, lock_dir: str) -> None:
        self._dir = lock_dir
        netns = os.stat("/proc/self/ns/net").st_ino
        self._users = os.path.join(lock_dir, f"{netns}.users")
        self._was_off = os.path.join(lock_dir, f"{netns}.was-off")
        self._fd: int | None = None

    def _decide(self) -> int:
        """The one lock (never removed) under which servers decide."""
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self._dir, "decide.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def acquire(self) -> None:
        """Forwarding on for as long as this is held. OSError (with what to
        do in its message) where it is off and cannot be turned on."""
        if self._fd is not None:
            return
        decide = self._decide()
        try:
            users = try_lock(self._users)
            alone = users is not None
            if users is None:
                users = try_lock(self._users, fcntl.LOCK_SH)
            assert users is not None
            try:
                if netdev.read_sysctl(SYSCTL) != "1":
                    self._turn_on()
                elif alone:
                    # On, and no server of ours uses it: whoever turned it on
                    # (the host, or a server killed since), it stays on.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._was_off)
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
        with open(self._was_off, "w"):
            pass
        log.warning("turned on net.ipv4.ip_forward for outbound sandboxes (off again at stop)")

    def release(self) -> None:
        """Let go; the last user turns forwarding off if a server turned it on."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        decide = self._decide()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # another server still routes its sandboxes' packets
                return
            try:
                if os.path.exists(self._was_off):
                    netdev.write_sysctl(SYSCTL, "0")
                    os.unlink(self._was_off)
            except OSError as exc:
                log.warning("could not turn net.ipv4.ip_forward off again: %s", exc)
            unlock_and_remove(self._users, fd)
        finally:
            os.close(decide)
