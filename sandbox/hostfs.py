"""What of the host a sandbox sees: computed once per server start.

A sandbox is a fork of the zygote, so its interpreter is already loaded;
after pivot_root it still imports (lazily imported standard modules,
extension modules and the libraries they link against). Its root holds
exactly that, at neutral paths, and nothing else of the server:

- /python/lib/python3.X: the standard library (its site-packages and its
  config-* build directory hidden behind an empty directory, its
  _sysconfigdata rewritten to name /python instead of the host prefix),
  bound noexec; lib-dynload bound over it with exec (dlopen maps code);
- /python/runtime: a private copy, under the server's data directory, of the
  `sandbox` modules the sandbox process runs and of msgpack; nothing else
  of the server's virtualenv (no aiohttp, no test packages, no `activate`);
- /python/bin/python3.X: the interpreter binary (sys.executable inside);
- /usr/lib/NAME: each shared library the interpreter and the extension
  modules need (read from their ELF headers), and the dynamic loader linked
  at its own path (e.g. /lib64/ld-linux-x86-64.so.2). The binary and the
  libraries are hard links (copies across filesystems) in the runtime
  directory, so a few binds carry them all.

The bind sources still show in /proc/self/mountinfo (a bind mount's source
path is part of the mount table), and /proc/self/maps names the files the
zygote mapped before the fork. Names only; nothing there can be opened.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass

import msgpack

from . import elf
from .spec import BindMount

SANDBOX_PREFIX = "/python"
SANDBOX_LIB_DIR = "/usr/lib"
RUNTIME_TARGET = f"{SANDBOX_PREFIX}/runtime"
# The modules of this package the sandbox process holds (imported by the
# zygote before the fork). The zygote refuses to start if it imported a
# module that has no path inside, so a module missing here is caught.
SANDBOX_MODULES = (
    "__init__", "creds", "event", "frames", "lambda_event", "layer_protocol", "layer_zygote", "linux",
    "mounts", "namespaces", "procfs", "protocol", "relocate", "response", "runtime", "seccomp", "setup",
    "spec", "zygote",
)  # fmt: skip
# Standard extension modules no sandbox can use (no display): their X11
# and Tk libraries stay out.
UNUSABLE_EXTENSIONS = ("_tkinter",)


@dataclass(frozen=True)
class RootPlan:
    """Everything the invoker puts in a SandboxSpec, and the zygote needs."""

    binds: tuple[BindMount, ...]
    # sys.path inside (after /var/task), and (host prefix, sandbox prefix)
    # pairs for the paths of what the zygote imported before the fork.
    python_path: tuple[str, ...]
    path_map: tuple[tuple[str, str], ...]
    masked_files: tuple[str, ...]
    symlinks: tuple[tuple[str, str], ...]
    # sys.prefix and sys.executable inside.
    prefix: str
    executable: str


def sandbox_root_plan(data_dir: str) -> RootPlan:
    """Build the private runtime directory under `data_dir` (replacing the one
    a previous start left) and plan the sandbox's root around it."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = os.path.realpath(sysconfig.get_path("stdlib"))
    stdlib_target = f"{SANDBOX_PREFIX}/lib/{version}"
    dynload = os.path.realpath(_lib_dynload(stdlib))
    dynload_target = f"{stdlib_target}/lib-dynload"
    runtime_dir = _build_runtime_dir(os.path.join(data_dir, "runtime"), stdlib)
    empty = os.path.join(runtime_dir, "empty")

    binds = [BindMount(stdlib, stdlib_target, noexec=True), BindMount(dynload, dynload_target)]
    # Hidden: the base interpreter's own packages, and the build directory
    # (a static libpython, a Makefile naming the host prefix).
    for hidden in ("site-packages", *(n for n in os.listdir(stdlib) if n.startswith("config-"))):
        if os.path.isdir(os.path.join(stdlib, hidden)):
            binds.append(BindMount(empty, f"{stdlib_target}/{hidden}"))
    for name in os.listdir(os.path.join(runtime_dir, "sysconfig")):
        binds.append(BindMount(os.path.join(runtime_dir, "sysconfig", name), f"{stdlib_target}/{name}"))
    binds.append(BindMount(os.path.join(runtime_dir, "lib"), RUNTIME_TARGET, noexec=True))
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    executable = f"{SANDBOX_PREFIX}/bin/{os.path.basename(interpreter)}"
    program_binds, symlinks = _programs_and_libraries(interpreter, dynload, runtime_dir)
    binds += program_binds

    python_path = [stdlib_target, dynload_target, RUNTIME_TARGET]
    zip_name = f"python{sys.version_info.major}{sys.version_info.minor}.zip"
    if os.path.isfile(os.path.join(os.path.dirname(stdlib), zip_name)):
        binds.append(
            BindMount(os.path.join(os.path.dirname(stdlib), zip_name), f"{SANDBOX_PREFIX}/lib/{zip_name}")
        )
        python_path.insert(0, f"{SANDBOX_PREFIX}/lib/{zip_name}")
    package = os.path.dirname(os.path.abspath(__file__))
    moved = [
        (stdlib, stdlib_target),
        (dynload, dynload_target),
        (package, f"{RUNTIME_TARGET}/sandbox"),
        (os.path.dirname(os.path.abspath(msgpack.__file__)), f"{RUNTIME_TARGET}/msgpack"),
    ]
    path_map = {(host, inside) for real, inside in moved for host in _spellings(real)}
    return RootPlan(
        binds=tuple(binds),
        python_path=tuple(python_path),
        # Longest prefix first, so nested entries (lib-dynload) map to their own bind.
        path_map=tuple(sorted(path_map, key=lambda pair: len(pair[0]), reverse=True)),
        masked_files=(),
        symlinks=tuple(symlinks),
        prefix=SANDBOX_PREFIX,
        executable=executable,
    )


def layer_libraries(python_dir: str, data_dir: str) -> dict[str, str]:
    """{soname: host path} of the shared libraries a layer's extension
    modules (under `python_dir`) need from outside the layer and a sandbox
    does not find in /usr/lib (a manylinux wheel may use the system's
    libstdc++ and libgcc_s): the layer carries copies of these."""
    try:
        provided = set(os.listdir(os.path.join(data_dir, "runtime", "usrlib")))
    except OSError:
        provided = set()
    roots = [
        os.path.join(directory, name)
        for directory, _dirs, files in os.walk(python_dir)
        for name in files
        if name.endswith(".so") or ".so." in name
    ]
    inside = os.path.realpath(python_dir) + os.sep
    needed = elf.closure(roots, elf.loader_dirs()) if roots else {}
    return {
        soname: path
        for soname, path in needed.items()
        if not os.path.realpath(path).startswith(inside) and soname not in provided
    }


def _lib_dynload(stdlib: str) -> str:
    for entry in sys.path:
        if entry.rstrip("/").endswith("lib-dynload") and os.path.isdir(entry):
            return entry
    return os.path.join(stdlib, "lib-dynload")


def _spellings(real: str) -> set[str]:
    """A directory as the zygote may have it in a module's path: resolved,
    or through the symlinks sys.path and sysconfig name it by."""
    spellings = {real}
    for entry in [*sys.path, sysconfig.get_path("stdlib"), sys.prefix, sys.base_prefix]:
        if entry and os.path.realpath(entry) == real:
            spellings.add(entry.rstrip("/"))
    return spellings


def _build_runtime_dir(runtime_dir: str, stdlib: str) -> str:
    """The sandbox's own runtime (the `sandbox` modules it runs, msgpack), an
    empty directory to hide others with, and the rewritten _sysconfigdata.
    Copies, so nothing inside names or reaches the repository."""
    shutil.rmtree(runtime_dir, ignore_errors=True)
    lib = os.path.join(runtime_dir, "lib")
    package = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(os.path.join(lib, "sandbox"))
    for name in SANDBOX_MODULES:
        shutil.copyfile(os.path.join(package, f"{name}.py"), os.path.join(lib, "sandbox", f"{name}.py"))
    shutil.copytree(
        os.path.dirname(os.path.abspath(msgpack.__file__)),
        os.path.join(lib, "msgpack"),
        ignore=shutil.ignore_patterns("__pycache__", "*.pyx", "*.pxd", "*.cpp", "*.h"),
        copy_function=shutil.copyfile,  # no exec bits: nothing here is run as a program
    )
    os.makedirs(os.path.join(runtime_dir, "empty"))
    os.makedirs(os.path.join(runtime_dir, "sysconfig"))
    host_prefixes = sorted({sys.base_prefix, os.path.realpath(sys.base_prefix)}, key=len, reverse=True)
    for path in glob.glob(os.path.join(stdlib, "_sysconfigdata_*.py")):
        with open(path) as f:
            text = f.read()
        for host in host_prefixes:
            text = text.replace(host, SANDBOX_PREFIX)
        with open(os.path.join(runtime_dir, "sysconfig", os.path.basename(path)), "w") as f:
            f.write(text)
    for root, dirs, files in os.walk(runtime_dir):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return runtime_dir


def _programs_and_libraries(
    interpreter: str, dynload: str, runtime_dir: str
) -> tuple[list[BindMount], list[tuple[str, str]]]:
    """The interpreter (in bin/) and each library it and the extension
    modules need (in usrlib/, by the name they are asked for: there is no
    ld.so.cache inside), gathered under the runtime directory so that two
    binds carry them all (a bind per file made each sandbox's start
    slower); the dynamic loader as a link where the interpreter names it."""
    found = glob.glob(f"{dynload}/*.so") + glob.glob(f"{runtime_dir}/lib/**/*.so", recursive=True)
    extensions = [path for path in found if not os.path.basename(path).startswith(UNUSABLE_EXTENSIONS)]
    libraries = elf.closure([interpreter, *extensions], elf.loader_dirs())
    info = elf.read(interpreter)
    loader = info.interpreter if info is not None else None
    bin_dir, lib_dir = os.path.join(runtime_dir, "bin"), os.path.join(runtime_dir, "usrlib")
    os.makedirs(bin_dir)
    os.makedirs(lib_dir)
    version = os.path.basename(interpreter)
    _link_or_copy(interpreter, os.path.join(bin_dir, version))
    symlinks = []
    for soname, path in sorted(libraries.items()):
        _link_or_copy(os.path.realpath(path), os.path.join(lib_dir, soname))
        if loader is not None and os.path.realpath(path) == os.path.realpath(loader):
            symlinks.append((loader, f"{SANDBOX_LIB_DIR}/{soname}"))
    binds = [BindMount(bin_dir, f"{SANDBOX_PREFIX}/bin"), BindMount(lib_dir, SANDBOX_LIB_DIR)]
    return binds, symlinks


def _link_or_copy(source: str, target: str) -> None:
    """A hard link costs nothing; another filesystem gets a copy. Never
    chmod what this made: a link shares the host file's inode."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)
