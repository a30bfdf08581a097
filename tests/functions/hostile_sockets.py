"""Tries to open a socket of every family and netlink protocol a function
has no use for, plus the ones it needs. Each entry of the answer is "ok" or
the error it got (errno name)."""

import ctypes
import errno
import os
import platform
import socket
import threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_SOCKET = {"x86_64": 41, "aarch64": 198}.get(platform.machine())

# Families by number: not every one has a name in the socket module.
FAMILIES = {
    "AF_UNSPEC": 0, "AF_AX25": 3, "AF_IPX": 4, "AF_APPLETALK": 5, "AF_NETROM": 6, "AF_BRIDGE": 7,
    "AF_ATMPVC": 8, "AF_X25": 9, "AF_ROSE": 11, "AF_DECnet": 12, "AF_NETBEUI": 13, "AF_SECURITY": 14,
    "AF_KEY": 15, "AF_PACKET": 17, "AF_ASH": 18, "AF_ECONET": 19, "AF_ATMSVC": 20, "AF_RDS": 21,
    "AF_SNA": 22, "AF_IRDA": 23, "AF_PPPOX": 24, "AF_WANPIPE": 25, "AF_LLC": 26, "AF_IB": 27,
    "AF_MPLS": 28, "AF_CAN": 29, "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33,
    "AF_ISDN": 34, "AF_PHONET": 35, "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38, "AF_NFC": 39,
    "AF_VSOCK": 40, "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44, "AF_MCTP": 45,
}  # fmt: skip
NETLINK = {
    "NETLINK_USERSOCK": 2, "NETLINK_FIREWALL": 3, "NETLINK_SOCK_DIAG": 4, "NETLINK_NFLOG": 5,
    "NETLINK_XFRM": 6, "NETLINK_SELINUX": 7, "NETLINK_ISCSI": 8, "NETLINK_AUDIT": 9,
    "NETLINK_FIB_LOOKUP": 10, "NETLINK_CONNECTOR": 11, "NETLINK_NETFILTER": 12,
    "NETLINK_KOBJECT_UEVENT": 15, "NETLINK_GENERIC": 16, "NETLINK_CRYPTO": 21,
}  # fmt: skip
TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET)


def _error(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno)) if getattr(exc, "errno", None) else repr(exc)


def _open(family, proto=0):
    """ "ok" if any socket type of this family opens, else the first error."""
    first = None
    for kind in TYPES:
        try:
            socket.socket(family, kind, proto).close()
            return "ok"
        except OSError as exc:
            first = first or _error(exc)
    return first


def _raw_socket(family, kind, proto):
    """socket() with the raw 64-bit register values: high bits the kernel drops."""
    if SYS_SOCKET is None:
        return "skipped: unknown syscall number on " + platform.machine()
    fd = libc.syscall(SYS_SOCKET, ctypes.c_long(family), ctypes.c_long(kind), ctypes.c_long(proto))
    if fd >= 0:
        os.close(fd)
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), "?")


def _socketpair(family):
    try:
        a, b = socket.socketpair(family, socket.SOCK_STREAM)
    except OSError as exc:
        return _error(exc)
    a.close()
    b.close()
    return "ok"


def _loopback(family, host):
    """A TCP connection over loopback carries bytes both ways."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as server:
            server.bind((host, 0))
            server.listen(1)
            port = server.getsockname()[1]

            def echo():
                conn, _ = server.accept()
                with conn:
                    conn.sendall(conn.recv(16))

            thread = threading.Thread(target=echo)
            thread.start()
            with socket.create_connection((host, port), timeout=5) as client:
                client.sendall(b"ping")
                answer = client.recv(16)
            thread.join()
        return "ok" if answer == b"ping" else f"got {answer!r}"
    except OSError as exc:
        return _error(exc)


def _udp(family, host):
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as a, socket.socket(family, socket.SOCK_DGRAM) as b:
            a.bind((host, 0))
            b.sendto(b"ping", a.getsockname())
            return "ok" if a.recv(16) == b"ping" else "lost"
    except OSError as exc:
        return _error(exc)


def _netlink_route():
    """What if_nameindex() does: a NETLINK_ROUTE socket, bound."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
            s.bind((0, 0))
        return "ok" if any(name == "lo" for _, name in socket.if_nameindex()) else "no lo"
    except OSError as exc:
        return _error(exc)


def _unix():
    try:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with a, b, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as bound:
            bound.bind(f"\0hostile-sockets-{os.getpid()}")
            a.sendall(b"ping")
            return "ok" if b.recv(16) == b"ping" else "lost"
    except OSError as exc:
        return _error(exc)


def _inotify(name, *args):
    fn = getattr(libc, name)
    fd = fn(*args)
    if fd >= 0:
        os.close(fd)
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), "?")


def handle(event, context):
    refused = {f"socket({name})": _open(number) for name, number in FAMILIES.items()}
    for name, proto in NETLINK.items():
        refused[f"socket(AF_NETLINK, {name})"] = _open(socket.AF_NETLINK, proto)
    refused["socket(AF_VSOCK | 1 << 32)"] = _raw_socket(40 | 1 << 32, socket.SOCK_STREAM, 0)
    refused["socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT | 1 << 32)"] = _raw_socket(
        16, socket.SOCK_RAW, 15 | 1 << 32
    )
    refused["socket(-1)"] = _raw_socket(-1, socket.SOCK_STREAM, 0)
    for family in ("AF_INET", "AF_INET6", "AF_NETLINK"):
        refused[f"socketpair({family})"] = _socketpair(getattr(socket, family))
    refused["inotify_init"] = _inotify("inotify_init")
    refused["inotify_init1"] = _inotify("inotify_init1", 0)
    refused["fanotify_init"] = _inotify("fanotify_init", 0, 0)
    works = {
        "tcp 127.0.0.1": _loopback(socket.AF_INET, "127.0.0.1"),
        "tcp ::1": _loopback(socket.AF_INET6, "::1"),
        "udp 127.0.0.1": _udp(socket.AF_INET, "127.0.0.1"),
        "udp ::1": _udp(socket.AF_INET6, "::1"),
        "unix": _unix(),
        "netlink route": _netlink_route(),
        "getaddrinfo localhost": "ok" if socket.getaddrinfo("localhost", 80) else "empty",
    }
    return {"refused": refused, "works": works}
