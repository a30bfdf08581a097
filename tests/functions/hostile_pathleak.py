"""Looks for the host's paths (the request body lists them) in what the
sandbox can read about itself: its mount table, its cgroup, and the small
path files (.pth, editable-install finders) of the bound Python paths."""

import glob
import os


def handle(event, context):
    wanted = event.json()["paths"]
    sources = ["/proc/self/mountinfo", "/proc/self/mounts", "/proc/self/cgroup", "/proc/1/environ"]
    sources += glob.glob("/python/*/*.pth") + glob.glob("/python/*/__editable__*.py")
    found = {}
    for source in sources:
        try:
            with open(source, errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            continue
        hits = [p for p in wanted if p in text]
        if hits:
            found[source] = hits
    return {"found": found, "cwd": os.getcwd()}
