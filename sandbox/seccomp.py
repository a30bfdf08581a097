"""A seccomp filter: system calls a function never needs, and that would
matter if a capability ever slipped through, fail with EPERM.

Built once in the zygote with libseccomp (through pyseccomp) and exported
as a BPF program; each sandbox installs those bytes with one prctl(), so no
sandbox pays for compiling it. Installed after no_new_privs and the uid
change, before the function's code runs.
"""

from __future__ import annotations

import ctypes
import errno
import tempfile
from dataclasses import dataclass
from typing import Any

from . import linux

# Namespace, mount, kernel, tracing and clock changes; io_uring (its ops
# would bypass this filter); the key store; raw I/O ports; file watches
# (inotify, fanotify: what else touches files the sandbox can see).
DENIED = (
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init", "inotify_init", "inotify_init1",
    "keyctl", "add_key", "request_key",
    "swapon", "swapoff", "reboot", "sethostname", "setdomainname", "acct", "quotactl", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "vhangup",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip
# clone() with any of these flags would make a new namespace.
NAMESPACE_CLONE_FLAGS = (
    linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWPID | linux.CLONE_NEWNET
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x10000000  # CLONE_NEWUSER
    | 0x00000080  # CLONE_NEWTIME
)  # fmt: skip

# What a layer's zygote (sandbox/layer_zygote.py) may do beyond a sandbox:
# fork each sandbox into new mount, pid, net, ipc and uts namespaces (clone
# with those flags; never a user, cgroup or time namespace, never unshare or
# setns), mount its /proc, /tmp, /etc and code, and set its hostname. It
# holds capabilities only inside a user namespace of its own, and each
# sandbox installs the full filter on top of this one.
LAYER_ZYGOTE_ALLOWED = ("mount", "move_mount", "sethostname")
LAYER_ZYGOTE_CLONE_FLAGS = (
    linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWPID | linux.CLONE_NEWNET
)  # fmt: skip

# socket() families a function may use: loopback networking, local sockets,
# and netlink only for NETLINK_ROUTE (what getaddrinfo and if_nameindex read).
# Every other family is kernel attack surface no function needs (vsock to the
# hypervisor, packet sockets, the crypto API, bluetooth, uevents, ...).
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
ALLOWED_SOCKET_FAMILIES = (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK)
NETLINK_ROUTE = 0
# Above every family Linux has (AF_MAX is 46 in 6.x): one rule for all of them.
HIGHEST_FAMILY_CHECKED = 63
LOW_32_BITS = 0xFFFFFFFF

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class Programs:
    """The filters, compiled once in the zygote: a sandbox's, and the one a
    layer's zygote runs under (a sandbox it forks adds its own on top)."""

    sandbox: bytes
    layer_zygote: bytes


def build_programs() -> Programs:
    return Programs(sandbox=build_program(), layer_zygote=build_program(for_layer_zygote=True))


def build_program(for_layer_zygote: bool = False) -> bytes:
    """The filter as raw BPF (8 bytes per instruction)."""
    import pyseccomp as seccomp

    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        if for_layer_zygote and name in LAYER_ZYGOTE_ALLOWED:
            continue
        try:
            f.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            continue  # a syscall this kernel/libseccomp does not know
    # Any one namespace flag makes clone() fail (MASKED_EQ per flag: the
    # rule matches when that bit is set, whatever the others are).
    denied_clone_flags = NAMESPACE_CLONE_FLAGS & ~(LAYER_ZYGOTE_CLONE_FLAGS if for_layer_zygote else 0)
    for bit in range(64):
        flag = 1 << bit
        if denied_clone_flags & flag:
            f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    _add_socket_rules(f, seccomp)
    # clone3 passes its flags in memory, out of a filter's reach: say it does
    # not exist, and libc falls back to clone, which is filtered above.
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


def _add_socket_rules(f: Any, seccomp: Any) -> None:
    """socket(): only ALLOWED_SOCKET_FAMILIES, and AF_NETLINK only with
    NETLINK_ROUTE; socketpair(): only AF_UNIX. EAFNOSUPPORT, as a kernel
    without that family answers, so programs fall back.

    The kernel reads the family as a 32-bit int but the filter sees the whole
    64-bit register: each family is compared on its low 32 bits (MASKED_EQ),
    and anything above HIGHEST_FAMILY_CHECKED, which includes every value
    with high bits set, is refused by one GT rule. Refusing AF_UNIX spelled
    with high bits costs nothing; libc never sets them."""
    refuse = seccomp.ERRNO(errno.EAFNOSUPPORT)
    masked_eq, arg = seccomp.MASKED_EQ, seccomp.Arg
    for family in range(HIGHEST_FAMILY_CHECKED + 1):
        if family not in ALLOWED_SOCKET_FAMILIES:
            f.add_rule(refuse, "socket", arg(0, masked_eq, LOW_32_BITS, family))
    f.add_rule(refuse, "socket", arg(0, seccomp.GT, HIGHEST_FAMILY_CHECKED))
    f.add_rule(
        refuse,
        "socket",
        arg(0, masked_eq, LOW_32_BITS, AF_NETLINK),
        arg(2, seccomp.NE, NETLINK_ROUTE),
    )
    f.add_rule(refuse, "socketpair", arg(0, seccomp.NE, AF_UNIX))


def install(program: bytes) -> None:
    """Install the filter in this process (needs no_new_privs or CAP_SYS_ADMIN)."""
    if not program or len(program) % 8:
        raise ValueError("not a BPF program")
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    linux.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))
