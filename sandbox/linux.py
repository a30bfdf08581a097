"""Thin ctypes bindings for the system calls Python 3.11 lacks.

Each wrapper raises OSError with the real errno, so callers see
"Operation not permitted" rather than a bare -1.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
}

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

_SYS_PIVOT_ROOT = 155  # x86_64; glibc exports no wrapper on older versions
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


_SYS_CAPSET = 126  # x86_64
_CAPABILITY_VERSION_3 = 0x20080522


def capset(capabilities: int) -> None:
    """Keep exactly `capabilities` (a bit mask) in this process's effective
    and permitted sets; the inheritable set empty."""
    header = ctypes.create_string_buffer(struct.pack("Ii", _CAPABILITY_VERSION_3, 0))
    low, high = capabilities & 0xFFFFFFFF, capabilities >> 32
    data = ctypes.create_string_buffer(struct.pack("6I", low, low, 0, high, high, 0))
    _check(_libc.syscall(_SYS_CAPSET, header, data), "capset")


_SYS_CLONE = 56  # x86_64
_SIGCHLD = 17
# Held during the call, as os.fork() holds it: the child starts with the
# interpreter in the state PyOS_AfterFork_Child expects.
_libc_with_gil = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc_with_gil.syscall.restype = ctypes.c_long


def fork_into_namespaces(flags: int) -> int:
    """os.fork() whose child is in new namespaces (CLONE_NEW* `flags`): with
    CLONE_NEWPID it is PID 1 of its own pid namespace at once, where
    unshare() would need a second fork (of a large process: a layer
    zygote's, milliseconds). The raw clone system call, wrapped in the
    interpreter's own before- and after-fork work as os.fork() does it.
    Only for a single-threaded process: unlike glibc's fork() it runs no
    pthread_atfork handlers."""
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _libc_with_gil.syscall(
        _SYS_CLONE, ctypes.c_ulong(flags | _SIGCHLD), ctypes.c_ulong(0), None, None, ctypes.c_ulong(0)
    )
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


_libc.setfsuid.argtypes = [ctypes.c_uint]
_libc.setfsgid.argtypes = [ctypes.c_uint]


def set_filesystem_ids(uid: int, gid: int) -> None:
    """The uid and gid files are made and checked as (setfsuid, setfsgid),
    capabilities kept; both calls answer the previous id, so each is read
    back to see it took."""
    for call in (_libc.setfsgid, _libc.setfsuid):
        wanted = gid if call is _libc.setfsgid else uid
        call(wanted)
        if call(wanted) != wanted:
            raise PermissionError(f"{call.__name__}({wanted}) was refused")


def last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


# The new mount API (Linux 5.2+, mount_setattr 5.12+): the invoker clones the
# function's code directory as a detached read-only mount and hands the fd
# to a pre-warmed sandbox, which attaches it inside its own mount namespace.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4


def clone_mount_readonly(path: str) -> int:
    """A detached, read-only, nosuid, nodev copy of `path`'s mount; an fd."""
    fd = _check(
        _libc.syscall(_SYS_OPEN_TREE, AT_FDCWD, _b(path), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
        f"open_tree {path}",
    )
    attr = ctypes.create_string_buffer(
        struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
    )
    try:
        _check(
            _libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, len(attr)),
            "mount_setattr",
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def move_mount(fd: int, target: str) -> None:
    """Attach a detached mount (from clone_mount_readonly) at `target`."""
    _check(
        _libc.syscall(_SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, _b(target), MOVE_MOUNT_F_EMPTY_PATH),
        f"move_mount {target}",
    )
