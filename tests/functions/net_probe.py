"""Probes the network from inside a sandbox, as the request body says:

    {"tcp": [[host, port], ...]}        connect: "connected", "timeout" or the errno's name
    {"udp": [[host, port], ...]}        a datagram on a connected socket, then a read:
                                        "answered", "timeout" or the errno's name
    {"resolve": [name, ...]}            the address, or the error
    {"get": [url, ...]}                 the body (text), or the error
    {"download": {"url": U}}            {"bytes", "seconds"} of reading all of U
    {"upload": {"url": U, "bytes": N}}  {"bytes", "seconds", "answer"} of POSTing N bytes
    {"listen": port}                    keep a TCP listener on that port (between calls too)

and always: its interfaces, its address and gateway (or null).
"""

import errno
import json
import socket
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


def _download(url):
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as resp:
        n = 0
        while True:
            chunk = resp.read(65536)
            if not chunk:
                break
            n += len(chunk)
    return {"bytes": n, "seconds": time.monotonic() - t0}


def _upload(url, size):
    body = b"u" * size
    t0 = time.monotonic()
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        answer = json.loads(resp.read())
    return {"bytes": size, "seconds": time.monotonic() - t0, "answer": answer}


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
        out["download"] = _download(req["download"]["url"])
    if "upload" in req:
        out["upload"] = _upload(req["upload"]["url"], req["upload"]["bytes"])
    return out
