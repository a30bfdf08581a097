"""Hunts for another function's secret: in its own /var/openfaas/secrets, in
/proc (other processes' roots, environments, memory maps), at the host's
path of the secret store (`?store=`), and in every file it can read, for
the bytes given in `?needle=` (a secret of another function, hex)."""

import os

SKIP = ("/proc", "/sys", "/dev")


def _read(path, limit=4 << 20):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def handle(event, context):
    needle = bytes.fromhex(event.query["needle"])
    found = []
    listing = os.listdir("/var/openfaas/secrets")
    store = event.query.get("store", "")
    for path in (store, os.path.join(store, event.query.get("name", "x"))):
        if path and (os.path.exists(path) or _read(path) is not None):
            found.append(f"store path reachable: {path}")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for extra in ("root/var/openfaas/secrets", "environ", "cmdline"):
            path = f"/proc/{pid}/{extra}"
            if os.path.isdir(path):
                for name in os.listdir(path):
                    data = _read(os.path.join(path, name))
                    if data and needle in data:
                        found.append(path + "/" + name)
            elif (_read(path) or b"").find(needle) >= 0:
                found.append(path)
    scanned = 0
    for root, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in SKIP]
        for name in files:
            data = _read(os.path.join(root, name))
            scanned += 1
            if data and needle in data:
                found.append(os.path.join(root, name))
    return {"found": found, "listing": listing, "scanned": scanned, "pids": len(os.listdir("/proc"))}
