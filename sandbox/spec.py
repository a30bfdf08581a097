"""The description of a sandbox, passed down explicitly (no globals).

Like an nsjail config: namespaces, mounts and limits, with units in the
field names. Two parts, because a sandbox is made in two steps:

- `SandboxSpec`: the isolation every sandbox gets (namespaces, the runtime's
  read-only mounts, the cgroup it joins). Enough to pre-warm a blank one.
- `FunctionSpec`: what specializes a blank sandbox into an instance of one
  function (code, entry, limits, identity).

Both cross a process boundary as plain dicts, so every field is a
msgpack-friendly scalar or tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALL_NAMESPACES = ("mount", "pid", "net", "ipc", "uts")


@dataclass(frozen=True)
class BindMount:
    """A read-only bind of a host path into the sandbox's root."""

    source: str
    target: str
    # Nothing on it can be executed or mapped as code (the standard
    # library's .py files, some of them with the exec bit).
    noexec: bool = False


@dataclass(frozen=True)
class SandboxSpec:
    sandbox_id: str
    namespaces: tuple[str, ...] = ALL_NAMESPACES
    # The runtime the sandbox needs (Python's paths, shared libraries), read-only.
    runtime_binds: tuple[BindMount, ...] = ()
    # Symbolic links to recreate in the root (merged-/usr hosts: /lib -> usr/lib).
    symlinks: tuple[tuple[str, str], ...] = ()
    # Where the zygote holds runtime_binds already mounted read-only (in its
    # own mount namespace, sandbox/mounts.py build_runtime_template): the
    # sandbox binds each outermost one from there, its nested ones and
    # read-only flags with it, in one call. "": each bind made anew.
    runtime_template_dir: str = ""
    # sys.path inside the sandbox, after the binds are in place.
    python_path: tuple[str, ...] = ()
    # Files inside the root hidden behind an empty one (/dev/null).
    masked_files: tuple[str, ...] = ()
    # An empty host directory the sandbox mounts its private root on (in its
    # own mount namespace, so the host never sees it).
    new_root_dir: str = "/run/faas/root"
    # cgroup.procs files the sandbox joins first thing, before its setup.
    cgroup_procs_files: tuple[str, ...] = ()
    # /tmp's size until a function sets its own.
    tmp_size_mb: int = 16
    # (file, value) that thaws the sandbox's cgroup: the zygote writes it
    # after killing its sandboxes, or frozen ones would never die.
    thaw_command: tuple[str, ...] = ()
    # Resolvers for /etc/resolv.conf: set only for a sandbox with outbound
    # network (its eth0 is made by the host, sandbox/network.py).
    nameservers: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        # Shallow (asdict copies every tuple, deeply): on the path of every spawn.
        return {**vars(self), "runtime_binds": [vars(bind) for bind in self.runtime_binds]}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SandboxSpec:
        data = dict(data)
        data["symlinks"] = tuple(tuple(link) for link in data["symlinks"])
        data["runtime_binds"] = tuple(BindMount(**b) for b in data["runtime_binds"])
        for key in (
            "namespaces",
            "python_path",
            "cgroup_procs_files",
            "masked_files",
            "thaw_command",
            "nameservers",
        ):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class FunctionSpec:
    function_name: str
    function_version: int
    # Host directory holding the function's code; cloned read-only to /var/task.
    code_dir: str
    handler_module: str
    entry: str
    env: tuple[tuple[str, str], ...] = ()
    # Limits (memory and CPU are enforced by the cgroup; listed for the context).
    memory_mb: int = 128
    cpu_cores: float = 1.0
    timeout_s: float = 30.0
    tmp_size_mb: int = 64
    open_files_max: int = 1024
    # Identity inside the sandbox.
    # Set by the invoker (a range of its own per server); a spec without one
    # is refused rather than run as some shared default such as nobody.
    uid: int = -1
    gid: int = -1
    hostname: str = "sandbox"
    # "faas": handle(event, context) with an HTTP event; "lambda": AWS
    # Lambda's convention (sandbox/lambda_event.py), with the function's ARN.
    flavour: str = "faas"
    lambda_arn: str = ""
    # Host directory of the function's layer (its requirements), cloned
    # read-only to /opt: packages in /opt/python, libraries in /opt/lib. "": none.
    layer_dir: str = ""

    def to_wire(self) -> dict[str, Any]:
        # Every field is a scalar or a tuple of scalars' tuples: a shallow copy
        # packs the same (asdict copies deeply, on the path of every cold start).
        return dict(vars(self))

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> FunctionSpec:
        data = dict(data)
        data["env"] = tuple(tuple(kv) for kv in data["env"])
        return cls(**data)


@dataclass(frozen=True)
class UidMapping:
    """The user namespace of a layer zygote (sandbox/import_cache.py): its
    own root (uid 0 inside) is `zygote_uid` outside, and uid u inside, for u
    from 1 to count - 1, is first + u outside: the uids the invoker gives
    sandboxes. Gids alike."""

    zygote_uid: int
    first: int
    count: int

    def lines(self) -> str:
        """What /proc/PID/uid_map and gid_map take."""
        return f"0 {self.zygote_uid} 1\n1 {self.first + 1} {self.count - 1}\n"

    def inside(self, host_id: int) -> int:
        """A sandbox's uid (or gid) as its layer zygote's namespace numbers it."""
        inside = host_id - self.first
        if not 1 <= inside < self.count:
            raise ValueError(f"uid {host_id} is not in the layer zygote's range")
        return inside


@dataclass(frozen=True)
class LayerImage:
    """A layer as an import cache needs it: where it is, what to import, and
    the uids its zygote's sandboxes run as."""

    layer_dir: str
    imports: tuple[str, ...]
    uids: UidMapping
