"""Tries to make new namespaces with a raw clone() instead of unshare(): a new
user namespace hands its first process every capability (inside it), and a
network namespace owned by it lets that process use raw sockets and
configure netfilter, the kernel surface behind many privilege escalations.

Each attempt reports the error, or what the child could do."""

import ctypes
import json
import os
import platform
import signal
import socket

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NETLINK_NETFILTER = 12


def _in_child():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                out["CapEff"] = line.split()[1]
    for name, args in [("packet socket", (socket.AF_PACKET, socket.SOCK_RAW, 0x0300)),
                       ("raw socket", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))]:  # fmt: skip
        try:
            socket.socket(*args).close()
            out[name] = "created"
        except OSError as exc:
            out[name] = os.strerror(exc.errno)
    out["netns"] = os.readlink("/proc/self/ns/net")
    return out


def _clone(flags):
    """clone(flags) without a new stack: the child runs on a copy, like fork."""
    r, w = os.pipe()
    rc = libc.syscall(56, ctypes.c_long(flags | signal.SIGCHLD), 0, 0, 0, 0)
    if rc == 0:
        try:
            os.write(w, json.dumps(_in_child()).encode())
        finally:
            os._exit(0)
    err = ctypes.get_errno()
    os.close(w)
    try:
        if rc < 0:
            return os.strerror(err)
        data = os.read(r, 65536)
        os.waitpid(rc, 0)
        return {"created": True, **json.loads(data or b"{}")}
    finally:
        os.close(r)


def handle(event, context):
    if platform.machine() != "x86_64":
        return {"skipped": platform.machine()}
    own = _in_child()
    return {
        "own": own,
        "user": _clone(CLONE_NEWUSER),
        "user+net": _clone(CLONE_NEWUSER | CLONE_NEWNET),
        "user+mount": _clone(CLONE_NEWUSER | CLONE_NEWNS),
        "net": _clone(CLONE_NEWNET),
        "pid": _clone(CLONE_NEWPID),
        "uts+ipc": _clone(CLONE_NEWUTS | CLONE_NEWIPC),
    }
