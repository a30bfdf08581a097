"""What a function sees of its secrets in /var/openfaas/secrets: names,
digests, sizes, owners and modes, whether they can be changed, the mount's
options. Never a value: a test looks for the value everywhere else."""

import hashlib
import os

DIR = "/var/openfaas/secrets"


def _attempt(action):
    try:
        action()
    except OSError as exc:
        return exc.strerror
    return "allowed"


def handle(event, context):
    names = sorted(os.listdir(DIR))
    files = {}
    for name in names:
        path = os.path.join(DIR, name)
        st = os.stat(path)
        with open(path, "rb") as f:
            data = f.read()
        files[name] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "mode": oct(st.st_mode),
            "owned": st.st_uid == os.getuid(),
            "write": _attempt(lambda p=path: open(p, "ab").close()),
            "chmod": _attempt(lambda p=path: os.chmod(p, 0o600)),
        }
    st = os.stat(DIR)
    mount = [line.split()[5] for line in open("/proc/self/mountinfo") if line.split()[4] == DIR]
    return {
        "names": names,
        "files": files,
        "dir_mode": oct(st.st_mode),
        "dir_owned": st.st_uid == os.getuid(),
        "create": _attempt(lambda: open(os.path.join(DIR, "new"), "wb").close()),
        "mount": mount,
        "version": context.function_version,
    }
