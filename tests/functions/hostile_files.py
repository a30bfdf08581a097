"""Tries to read host files and to write anywhere but /tmp. The request body
names host paths to read and a canary file name to try to create."""

import os
import stat


def _err(exc):
    return os.strerror(exc.errno) if getattr(exc, "errno", None) else type(exc).__name__


def _read(path):
    try:
        if os.path.isdir(path):
            return "listed: " + ",".join(sorted(os.listdir(path))[:5])
        with open(path, "rb") as f:
            return f"read {len(f.read(4096))} bytes"
    except OSError as exc:
        return _err(exc)


def _write(path):
    try:
        with open(path, "w") as f:
            f.write("owned\n")
        return "ok"
    except OSError as exc:
        return _err(exc)


def _attempt(fn, *args):
    try:
        fn(*args)
        return "ok"
    except OSError as exc:
        return _err(exc)


def _walk(top, skip):
    """Every path under top (no symlinks followed, /proc and /dev skipped)."""
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.path in skip:
                continue
            yield e
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)


def handle(event, context):
    req = event.json()
    canary = req["canary"]
    reads = {p: _read(p) for p in req["read"]}
    # The same files through tricks: /proc's links, .. past the root, symlinks in /tmp.
    for p in ("/etc/shadow", req["read"][-1]):
        reads["/proc/1/root" + p] = _read("/proc/1/root" + p)
        reads["/proc/self/cwd/../../.." + p] = _read("/proc/self/cwd/../../.." + p)
        link = f"/tmp/link-{len(reads)}-{os.urandom(4).hex()}"
        os.symlink(p, link)
        reads[link + " -> " + p] = _read(link)
    writes = {}
    for d in ("/", "/var/task", "/etc", "/usr", "/usr/lib", "/python/0", "/dev", "/proc", "/var", "/lib64"):
        writes[os.path.join(d, canary)] = _write(os.path.join(d, canary))
    for f in ("/etc/passwd", "/etc/hosts", "/var/task/" + req["own_file"]):
        writes[f] = _write(f)
    writes["/proc/sys/kernel/hostname"] = _write("/proc/sys/kernel/hostname")
    writes["/proc/sys/vm/drop_caches"] = _write("/proc/sys/vm/drop_caches")
    writes["mkdir /var/task/d"] = _attempt(os.mkdir, "/var/task/d")
    writes["mkdir /" + canary + "-dir"] = _attempt(os.mkdir, "/" + canary + "-dir")
    writes["chmod /var/task"] = _attempt(os.chmod, "/var/task", 0o777)
    writes["chmod /tmp"] = _attempt(os.chmod, "/tmp", 0o700)
    writes["rename /etc/passwd"] = _attempt(os.rename, "/etc/passwd", "/etc/passwd2")
    writes["unlink /etc/hosts"] = _attempt(os.unlink, "/etc/hosts")
    writes["mknod /tmp/sda"] = _attempt(os.mknod, "/tmp/sda", stat.S_IFBLK | 0o600, os.makedev(8, 0))
    writes["/tmp (allowed)"] = _write("/tmp/" + canary)
    # Everything this uid could write, anywhere in the sandbox's tree.
    writable = []
    setid = {}
    names = set()
    for e in _walk("/", {"/proc", "/tmp"}):
        names.add(e.name)
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            # Set-id bits count only on a mount without nosuid.
            honoured = not os.statvfs(e.path).f_flag & os.ST_NOSUID
            setid[e.path] = {"mode": oct(st.st_mode), "owner": st.st_uid, "honoured": honoured}
        if e.path.startswith("/dev/") and e.name in ("null", "zero", "random", "urandom"):
            continue  # the device nodes a function is given
        if e.is_symlink():
            continue
        if os.access(e.path, os.W_OK):
            writable.append(e.path)
    return {
        "reads": reads,
        "writes": writes,
        "writable": writable,
        "setid": setid,
        "found_by_name": sorted(n for n in req.get("names", []) if n in names),
    }
