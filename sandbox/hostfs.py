"""What of the host a sandbox needs to run Python, computed once per server.

The sandbox is a fork of the zygote, so the interpreter is already loaded;
it needs the directories on sys.path (for imports after pivot_root) and the
shared libraries extension modules link against. Each sys.path directory is
bound at a neutral path (/python/N), so host paths such as /root/.pyenv or
the repository are not reachable inside. (They still show as the roots of
those mounts in /proc/self/mountinfo: a bind mount's source path is part of
the mount table. Names only; nothing there can be opened.)
"""

from __future__ import annotations

import os
import sys

from .spec import BindMount

LIB_DIRS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib")


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_binds(
    path: list[str] | None = None,
) -> tuple[tuple[BindMount, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Binds for the interpreter's import path, the sys.path they make, and
    (host prefix, sandbox prefix) pairs to rewrite the paths of modules the
    zygote already imported (a package's __path__ must point inside)."""
    project = _project_root()
    binds: list[BindMount] = []
    sandbox_path: list[str] = []
    path_map: list[tuple[str, str]] = []
    for entry in path if path is not None else sys.path:
        real = os.path.realpath(entry) if entry else ""
        if not real or not os.path.isdir(real) or real == os.path.realpath(os.getcwd()):
            continue
        # The repository itself (an editable install puts it on sys.path) stays out.
        if real == project and os.path.basename(real) not in ("site-packages", "dist-packages"):
            continue
        target = f"/python/{len(binds)}"
        binds.append(BindMount(real, target))
        sandbox_path.append(target)
        path_map.extend({(entry, target), (real, target)})
    # Longest prefix first, so nested entries (lib-dynload) map to their own bind.
    path_map.sort(key=lambda pair: len(pair[0]), reverse=True)
    return tuple(binds), tuple(sandbox_path), tuple(path_map)


def masked_files(binds: tuple[BindMount, ...]) -> tuple[str, ...]:
    """Files inside the bound Python paths that name the repository (an
    editable install's .pth and finder files): hidden inside the sandbox,
    so the host's layout is not handed to a function. Paths inside."""
    project = _project_root()
    masked = []
    for bind in binds:
        try:
            entries = os.listdir(bind.source)
        except OSError:
            continue
        for name in entries:
            if not (name.endswith(".pth") or name.startswith("__editable__")):
                continue
            try:
                with open(os.path.join(bind.source, name), errors="replace") as f:
                    if project in f.read(1 << 20):
                        masked.append(f"{bind.target}/{name}")
            except OSError:
                continue
    return tuple(masked)


def library_binds() -> tuple[BindMount, ...]:
    """Shared-library directories, at their own paths (the dynamic loader looks there)."""
    binds = []
    for d in LIB_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            binds.append(BindMount(d, d))
    return tuple(binds)


def library_symlinks() -> tuple[tuple[str, str], ...]:
    """Merged-/usr hosts link /lib -> usr/lib; mirror those links inside."""
    links = []
    for d in ("/lib", "/lib64"):
        if os.path.islink(d):
            links.append((d, os.readlink(d)))
    return tuple(links)
