"""Probes the network from inside a sandbox, as the request body says:

    {"tcp": [[host, port], ...]}        connect: "connected", "timeout" or the errno's name
    {"udp": [[host, port], ...]}        a datagram on a connected socket, then a read:
                                        "answered", "timeout" or the errno's name
    {"resolve": [name, ...]}            the address, or the error
    {"get": [url, ...]}                 the body (text), or the error
    {"download": {"host": H, "bytes": N}}  {"bytes", "seconds", "tcp"} of GET http://H/bytes?n=N
    {"upload": {"host": H, "bytes": N}}    {"bytes", "seconds", "answer", "tcp"} of POSTing N bytes
                                           to http://H/sink ("tcp": what TCP counted on the connection)
    {"listen": port}                    keep a TCP listener on that port (between calls too)

and always: its interfaces, its address and gateway (or null).
"""

import errno
import json
import socket
import struct
import time
import urllib.request

TIMEOUT_S = 10
LISTENERS = []


def _errno_name(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    return errno.errorcode.get(getattr(exc, "errno", None) or 0, type(exc).__name__)


def _tcp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect((host, port))
        return "connected"
    except OSError as exc:
        return _errno_name(exc)
    finally:
        s.close()


def _udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect((host, port))
        s.send(b"probe")
        s.recv(512)
        return "answered"
    except OSError as exc:
        return _errno_name(exc)
    finally:
        s.close()


def _gateway():
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(bytes.fromhex(fields[2])[::-1])
    return None


def _address():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("203.0.113.10", 9))  # no packet: only picks the source address
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()


def _tcp_counts(sock):
    """What TCP itself counted on this connection (struct tcp_info, Linux
    4.19+): payload bytes sent (retransmissions included) and received, and
    the segments that carried no data (handshake, ACKs, FIN)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    (received,) = struct.unpack_from("Q", info, 128)
    segs_out, segs_in = struct.unpack_from("II", info, 136)
    data_segs_in, data_segs_out = struct.unpack_from("II", info, 152)
    (sent,) = struct.unpack_from("Q", info, 200)
    return {
        "sent": sent,
        "received": received,
        "bare_out": segs_out - data_segs_out,
        "bare_in": segs_in - data_segs_in,
    }


def _http(host, method, path, body_size=0):
    """One HTTP/1.0 exchange on a socket of its own: the response body's
    size, the seconds it took, and the connection's TCP counts."""
    t0 = time.monotonic()
    sock = socket.create_connection((host, 80), timeout=60)
    try:
        head = f"{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {body_size}\r\n\r\n"
        sock.sendall(head.encode())
        chunk = b"u" * 65536
        left = body_size
        while left > 0:
            sock.sendall(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        response = bytearray()
        while True:
            data = sock.recv(65536)
            if not data:
                break
            response += data
        seconds = time.monotonic() - t0
        counts = _tcp_counts(sock)
    finally:
        sock.close()
    _, _, body = bytes(response).partition(b"\r\n\r\n")
    return body, seconds, counts


def _download(host, size):
    body, seconds, counts = _http(host, "GET", f"/bytes?n={size}")
    return {"bytes": len(body), "seconds": seconds, "tcp": counts}


def _upload(host, size):
    body, seconds, counts = _http(host, "POST", "/sink", size)
    return {"bytes": size, "seconds": seconds, "answer": json.loads(body), "tcp": counts}


def handle(event, context):
    req = event.json() if event.body else {}
    out = {
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "address": _address(),
        "gateway": _gateway(),
    }
    if "listen" in req:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", req["listen"]))
        s.listen(16)
        LISTENERS.append(s)
    for host, port in req.get("tcp", []):
        out[f"tcp {host}:{port}"] = _tcp(host, port)
    for host, port in req.get("udp", []):
        out[f"udp {host}:{port}"] = _udp(host, port)
    for name in req.get("resolve", []):
        try:
            out[f"resolve {name}"] = socket.gethostbyname(name)
        except OSError as exc:
            out[f"resolve {name}"] = type(exc).__name__
    for url in req.get("get", []):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                out[f"get {url}"] = resp.read().decode()
        except Exception as exc:
            out[f"get {url}"] = _errno_name(getattr(exc, "reason", exc))
    if "download" in req:
        out["download"] = _download(req["download"]["host"], req["download"]["bytes"])
    if "upload" in req:
        out["upload"] = _upload(req["upload"]["host"], req["upload"]["bytes"])
    return out
