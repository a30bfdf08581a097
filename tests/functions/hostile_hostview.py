"""Takes stock of what of the host the sandbox shows: which packages import,
every file of the visible tree (names naming host paths, executables,
virtualenv leftovers), the interpreter's own paths, the process's cmdline,
a traceback; and tries to run a program it wrote to /tmp.

POST {"host_paths": [...]}: strings that must not show anywhere.
POST {"raise": true}: raises, for the caller to read the error and the logs.
"""

import errno
import importlib
import os
import shutil
import subprocess
import sys
import traceback

SERVER_PACKAGES = (
    "aiohttp", "pyroute2", "prometheus_client", "pytest", "hypothesis", "pyseccomp", "uvloop", "yarl",
    "multidict", "requests", "pip", "setuptools", "_distutils_hack",
)  # fmt: skip


def _nested_failure():
    raise RuntimeError("deep inside")


def _imports(names):
    out = {}
    for name in names:
        try:
            importlib.import_module(name)
            out[name] = "ok"
        except ImportError as exc:
            out[name] = f"ImportError: {exc}"
    return out


def _use_stdlib():
    """Each standard module that needs a shared library, used for real."""
    import ctypes
    import decimal
    import hashlib
    import json
    import lzma
    import sqlite3
    import ssl
    import zlib

    libc = ctypes.CDLL("libc.so.6")
    return {
        "json": json.loads("[1]") == [1],
        "sqlite3": sqlite3.connect(":memory:").execute("select 41 + 1").fetchone()[0] == 42,
        "ssl": bool(ssl.create_default_context() and ssl.OPENSSL_VERSION),
        "ctypes": libc.getpid() == os.getpid(),
        "decimal": str(decimal.Decimal("0.1") + decimal.Decimal("0.2")) == "0.3",
        "hashlib": hashlib.sha256(b"").hexdigest().startswith("e3b0c442"),
        "zlib": zlib.decompress(zlib.compress(b"x")) == b"x",
        "lzma": lzma.decompress(lzma.compress(b"x")) == b"x",
        "idna": "x".encode("idna") == b"x",
    }


def _read(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError as exc:
        return f"<{exc.strerror}>"


def _walk(host_paths):
    files, named, executables, leftovers = 0, [], [], []
    for top, dirs, names in os.walk("/"):
        if top == "/":
            dirs.remove("proc")
        for name in names + dirs:
            path = os.path.join(top, name)
            if any(host in path for host in host_paths):
                named.append(path)
        for name in names:
            path = os.path.join(top, name)
            files += 1
            if os.path.isfile(path) and os.access(path, os.X_OK):
                executables.append(path)
            if name in ("activate", "direct_url.json", "pyvenv.cfg") or name.endswith(".pth"):
                text = _read(path)
                leftovers.append({"path": path, "names_host": [h for h in host_paths if h in text]})
    return {"files": files, "named": named, "executables": sorted(executables), "leftovers": leftovers}


def _module_paths():
    paths = {}
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        for what in (
            getattr(module, "__file__", None),
            getattr(module, "__cached__", None),
            getattr(spec, "origin", None),
            *(getattr(module, "__path__", None) or []),
        ):
            if isinstance(what, str):
                paths.setdefault(name, []).append(what)
    return paths


def _run_from_tmp():
    """A copy of the interpreter in /tmp, made executable, must not run."""
    shutil.copyfile(sys.executable, "/tmp/own-program")
    os.chmod("/tmp/own-program", 0o755)
    try:
        subprocess.run(["/tmp/own-program", "-c", "pass"], check=False, timeout=10)
        return "ran"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    finally:
        os.unlink("/tmp/own-program")


def _run_interpreter():
    """sys.executable inside is a working interpreter that knows where it is."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, json; print(json.dumps([sys.prefix, sys.path]))"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return {"rc": done.returncode, "out": done.stdout.strip(), "err": done.stderr[-2000:]}


def handle(event, context):
    request = event.json()
    if request.get("raise"):
        print("about to fail deep inside")
        _nested_failure()
    host_paths = request["host_paths"]
    try:
        _nested_failure()
    except RuntimeError:
        caught = traceback.format_exc()
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    return {
        "server_packages": _imports(SERVER_PACKAGES),
        "stdlib": _use_stdlib(),
        "walk": _walk(host_paths),
        "proc": {p: _read(p) for p in ("/proc/self/cmdline", "/proc/1/cmdline", "/proc/1/environ")},
        "maps": _read("/proc/self/maps", 1 << 22),
        "sys": {
            "executable": sys.executable,
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "exec_prefix": sys.exec_prefix,
            "path": sys.path,
            "argv": sys.argv,
            "orig_argv": sys.orig_argv,
        },
        "modules": _module_paths(),
        "traceback": caught,
        "stdlib_site_packages": {p: os.listdir(p) for p in site_packages if os.path.isdir(p)},
        "sysconfig": __import__("sysconfig").get_config_vars(),
        "run_from_tmp": _run_from_tmp(),
        "interpreter": _run_interpreter(),
    }
