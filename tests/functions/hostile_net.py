"""Tries to reach anything outside its network namespace: the gateway and
canary listeners the test opened on the host's loopback, an abstract unix
socket of the host, the host's own addresses, the internet; raw and packet
sockets."""

import os
import socket


def _err(exc):
    return os.strerror(exc.errno) if getattr(exc, "errno", None) else type(exc).__name__


def _tcp(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(addr)
        return "connected"
    except OSError as exc:
        return _err(exc)
    finally:
        s.close()


def _udp(family, addr):
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.sendto(b"hostile", addr)
        return "sent"
    except OSError as exc:
        return _err(exc)
    finally:
        s.close()


def _make(*args):
    try:
        socket.socket(*args).close()
        return "created"
    except OSError as exc:
        return _err(exc)


def handle(event, context):
    req = event.json()
    out = {}
    for host, port in req["tcp"]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            out[f"tcp {host} {port}"] = _tcp(family, (host, port))
        except OSError as exc:  # no IPv6 at all in here
            out[f"tcp {host} {port}"] = _err(exc)
    for host, port in req["udp"]:
        out[f"udp {host} {port}"] = _udp(socket.AF_INET, (host, port))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + req["abstract"])
        out["abstract unix"] = "connected"
    except OSError as exc:
        out["abstract unix"] = _err(exc)
    finally:
        s.close()
    try:
        socket.getaddrinfo("example.com", 443)
        out["dns"] = "resolved"
    except OSError as exc:
        out["dns"] = type(exc).__name__
    out["raw icmp"] = _make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    out["packet"] = _make(socket.AF_PACKET, socket.SOCK_RAW, 0x0300)
    out["interfaces"] = sorted(name for _, name in socket.if_nameindex())
    with open("/proc/net/route") as f:
        out["routes"] = f.read().splitlines()[1:]
    return out
