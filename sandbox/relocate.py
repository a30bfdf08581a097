"""Make the zygote's interpreter look as if it had started inside a sandbox.

The zygote imports everything on the host, then is forked into sandboxes
whose root holds the same files at other paths (sandbox/hostfs.py). Done
once in the zygote, before any fork: every path the interpreter keeps (the
modules' files, search paths, specs and loaders, the file names in code
objects that tracebacks print, sys.prefix, sys.executable, argv) is
rewritten to its sandbox path, and the process's own argv and environment
memory (what /proc/PID/cmdline and environ show) is wiped.
"""

from __future__ import annotations

import _imp
import ctypes
import gc
import linecache
import os
import sys
import types

PathMap = tuple[tuple[str, str], ...]
# What /proc/self/cmdline shows in the zygote and in every sandbox: the module
# it runs, with no path (operators and the tests find zygotes by this name).
PROCESS_TITLE = b"python3\0-m\0sandbox.zygote\0"
STANDARD_FINDER_MODULES = ("_frozen_importlib", "importlib")


def remap(path: str, path_map: PathMap) -> str:
    for host, inside in path_map:
        if path == host or path.startswith(host + "/"):
            return inside + path[len(host) :]
    return path


def remap_loaded_modules(path_map: PathMap) -> None:
    """Packages keep search paths (their lazy submodule imports, such as
    encodings.idna, must look inside); modules keep their file names."""
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [remap(p, path_map) for p in search]
        for attribute in ("__file__", "__cached__"):
            value = getattr(module, attribute, None)
            if isinstance(value, str):
                setattr(module, attribute, remap(value, path_map))
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            if isinstance(spec.origin, str):
                spec.origin = remap(spec.origin, path_map)
            if isinstance(getattr(spec, "_cached", None), str):
                spec._cached = remap(spec._cached, path_map)
            locations = spec.submodule_search_locations
            if isinstance(locations, list) and locations is not search:
                locations[:] = [remap(p, path_map) for p in locations]
        loader = getattr(module, "__loader__", None)
        if isinstance(getattr(loader, "path", None), str):
            loader.path = remap(loader.path, path_map)  # type: ignore[union-attr]


def remap_code_filenames(path_map: PathMap) -> None:
    """A traceback names each frame's code object's co_filename: the host
    path the module was imported from. importlib's own fix-up (used when a
    .pyc moved) renames a code object and the code nested in it in place."""
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType):
            code = obj.__code__
            inside = remap(code.co_filename, path_map)
            if inside != code.co_filename:
                _imp._fix_co_filename(code, inside)


def set_interpreter_paths(
    prefix: str, executable: str, python_path: tuple[str, ...], path_map: PathMap
) -> None:
    sys.executable = sys._base_executable = executable  # type: ignore[attr-defined]
    sys._home = None  # type: ignore[attr-defined]  # a virtualenv's `home` (pyvenv.cfg): not inside
    if isinstance(getattr(sys, "_stdlib_dir", None), str):
        sys._stdlib_dir = remap(sys._stdlib_dir, path_map)  # type: ignore[attr-defined]
    sys.prefix = sys.base_prefix = sys.exec_prefix = sys.base_exec_prefix = prefix
    sys.argv[:] = [""]
    sys.orig_argv[:] = [part.decode() for part in PROCESS_TITLE.split(b"\0") if part]
    sys.path[:] = ["/var/task", *python_path]
    sys.path_importer_cache.clear()
    linecache.clearcache()
    site = sys.modules.get("site")
    if site is not None:
        site.PREFIXES[:] = [prefix]
        site.ENABLE_USER_SITE = False
        site.USER_SITE = site.USER_BASE = None
        site.setcopyright()  # license() names files next to os.__file__, now remapped
    sysconfig = sys.modules.get("sysconfig")
    if sysconfig is not None:
        # Taken from sys at its import; the config vars are computed again, inside.
        sysconfig._PREFIX = sysconfig._BASE_PREFIX = prefix  # type: ignore[attr-defined]
        sysconfig._EXEC_PREFIX = sysconfig._BASE_EXEC_PREFIX = prefix  # type: ignore[attr-defined]
        sysconfig._PROJECT_BASE = os.path.dirname(executable)  # type: ignore[attr-defined]
        sysconfig._CONFIG_VARS = None  # type: ignore[attr-defined]


def forget_site_packages(prefix: str) -> None:
    """What the server's site-packages put in this interpreter at start (.pth
    hooks: an editable install's finder, setuptools' distutils shim) and
    what the zygote used once (the seccomp compiler) is not inside: drop
    those modules and any import finder that is not the standard one."""
    site = sys.modules.get("site")
    packages = tuple(d.rstrip("/") + "/" for d in site.getsitepackages()) if site is not None else ()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and not file.startswith(prefix + "/") and file.startswith(packages):
            del sys.modules[name]
    # The standard finders are classes, the others mostly instances: ask either for its module.
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if str(getattr(finder, "__module__", "")).startswith(STANDARD_FINDER_MODULES)
    ]


def host_named_modules(inside_prefixes: tuple[str, ...]) -> list[str]:
    """Modules whose file is not a sandbox path: nothing inside would back them."""
    return sorted(
        name
        for name, module in sys.modules.items()
        if isinstance(getattr(module, "__file__", None), str)
        and not module.__file__.startswith(inside_prefixes)  # type: ignore[union-attr]
    )


def wipe_process_strings() -> None:
    """Overwrite the argv and environment strings at the top of the stack
    (the kernel shows them as /proc/PID/cmdline and environ, and a sandbox
    is a fork of this process): they name the server's interpreter and
    paths. Python copied both at start; os.environ is cleared already.
    (Shrinking the areas, prctl PR_SET_MM, needs CAP_SYS_RESOURCE, which
    containers often drop: the title is followed by zero bytes instead.)"""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 48-51 of proc(5): arg_start, arg_end, env_start, env_end.
    arg_start, arg_end, env_start, env_end = (int(v) for v in fields[45:49])
    ctypes.memset(env_start, 0, env_end - env_start)
    title = PROCESS_TITLE[: arg_end - arg_start]
    ctypes.memmove(arg_start, title, len(title))
    ctypes.memset(arg_start + len(title), 0, arg_end - arg_start - len(title))


def relocate(python_path: tuple[str, ...], path_map: PathMap, prefix: str, executable: str) -> None:
    remap_loaded_modules(path_map)
    forget_site_packages(prefix)  # after the remap: msgpack, now inside, stays
    remap_code_filenames(path_map)
    set_interpreter_paths(prefix, executable, python_path, path_map)
    wipe_process_strings()
