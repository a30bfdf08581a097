"""Credentials: rlimits, then an unprivileged uid/gid with every capability
gone and no_new_privs set. The last step of setup: nothing after it needs root."""

from __future__ import annotations

import os
import resource

from . import linux
from .spec import FunctionSpec


def set_rlimits(spec: FunctionSpec) -> None:
    # /tmp is bounded by its tmpfs size; this also bounds writes elsewhere.
    limit_resources(spec.open_files_max, spec.tmp_size_mb * 1024 * 1024)


def limit_resources(open_files_max: int, file_size_bytes: int | None) -> None:
    """No core dumps, at most `open_files_max` open files, no file larger than
    `file_size_bytes` (None: as it was, for a layer zygote whose sandboxes
    set their own and cannot raise a limit it lowered)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files_max, open_files_max))
    if file_size_bytes is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))


def empty_bounding_set() -> None:
    """No capability can ever be gained again (not by exec, not by a setuid
    file). Done while the sandbox is blank, off the cold path: the bounding
    set only limits what may be gained later; the root the specialize step
    still needs keeps its effective capabilities until drop_privileges."""
    for cap in range(linux.last_capability() + 1):
        linux.prctl(linux.PR_CAPBSET_DROP, cap)
    try:
        linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernels before 4.3 have no ambient set to clear


def drop_privileges(spec: FunctionSpec) -> None:
    """After empty_bounding_set: an unprivileged uid, no capability left."""
    if spec.uid <= 0 or spec.gid <= 0:
        raise ValueError(f"refusing to run a function as uid {spec.uid}, gid {spec.gid}")
    os.setgroups([])
    os.setresgid(spec.gid, spec.gid, spec.gid)
    # Leaving uid 0 without SECBIT_KEEP_CAPS clears the permitted and effective sets.
    os.setresuid(spec.uid, spec.uid, spec.uid)
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)


def keep_only(capabilities: tuple[int, ...]) -> None:
    """Drop every capability but these from the bounding, ambient, effective,
    permitted and inheritable sets, for good (a layer zygote: what it needs
    to give each sandbox it forks namespaces of its own, and no more)."""
    for cap in range(linux.last_capability() + 1):
        if cap not in capabilities:
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
    try:
        linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernels before 4.3 have no ambient set to clear
    mask = 0
    for cap in capabilities:
        mask |= 1 << cap
    linux.capset(mask)
