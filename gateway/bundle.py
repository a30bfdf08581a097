"""Turn a function on disk (a .py file or a directory) into the deploy body of docs/HTTP-API.md.

Shared by `faas deploy` (which POSTs the body) and `faas serve --deploy` (which
hands it to the registry directly), so it imports nothing but the standard library.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Build and VCS droppings: never part of a function's code.
SKIP_DIRS = frozenset({"__pycache__", ".git"})
SKIP_SUFFIXES = (".pyc", ".pyo")


class BundleError(ValueError):
    """The path cannot be deployed as given; the message says why, on one line."""


def default_name(path: str | os.PathLike[str]) -> str:
    """The file's stem or the directory's name, lowercased, '_' -> '-' (names are DNS-label-like)."""
    # abspath, not resolve: "." and "dir/" get their own name, a symlink keeps the name the user typed.
    p = Path(os.path.abspath(path))
    base = p.name if p.is_dir() else p.stem
    return base.lower().replace("_", "-")


def parse_env(items: Iterable[str]) -> dict[str, str]:
    """["K=V", ...] -> {K: V}; the value may itself hold '='."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BundleError(f"invalid --env {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def collect_files(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """{relative path with '/': content} of a .py file or of every regular file under a directory."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{path}: no such file or directory")
    if p.is_dir():
        files = _collect_dir(p)
        if not files:
            raise BundleError(f"{path}: the directory holds no files to deploy")
        return files
    if not p.is_file() or p.suffix != ".py":
        raise BundleError(f"{path}: not a .py file or a directory")
    return {p.name: _read(p)}


def _collect_dir(root: Path) -> dict[str, bytes]:
    real_root = root.resolve()
    files: dict[str, bytes] = {}

    def walk(directory: Path, prefix: str, ancestors: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise BundleError(f"{directory}: {exc.strerror or exc}") from None
        for entry in entries:
            rel = prefix + entry.name
            is_dir = entry.is_dir()  # follows symlinks
            if entry.name.endswith(SKIP_SUFFIXES) or (
                is_dir and (entry.name in SKIP_DIRS or entry.name.startswith("."))
            ):
                continue
            target = Path(entry.path).resolve()
            if entry.is_symlink():
                # The server would otherwise receive whatever the link reaches: /etc/passwd, ~/.ssh ...
                if not target.is_relative_to(real_root):
                    raise BundleError(f"{rel}: symlink points outside {root} (to {target})")
                if not target.exists():
                    raise BundleError(f"{rel}: broken symlink")
            if is_dir:
                if target in ancestors:
                    raise BundleError(f"{rel}: symlink loop")
                walk(Path(entry.path), rel + "/", ancestors | {target})
            elif entry.is_file():
                files[rel] = _read(Path(entry.path))
            # Sockets, FIFOs and devices are not code: skipped.

    walk(root, "", frozenset({real_root}))
    return files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror or exc}") from None


def build_deploy_body(
    path: str | os.PathLike[str],
    name: str | None = None,
    entry: str | None = None,
    memory_mb: int | None = None,
    timeout_s: float | None = None,
    cpu: float | None = None,
    cpu_ms_per_call: int | None = None,
    env: Mapping[str, str] | None = None,
    max_instances: int | None = None,
    max_queue: int | None = None,
    network: str | None = None,
    allow: Iterable[str] | None = None,
    egress_mbit: float | None = None,
) -> dict[str, Any]:
    """The JSON body of POST /system/functions; optional fields appear only when given,
    so the server's defaults apply otherwise."""
    files = collect_files(path)
    body: dict[str, Any] = {
        "name": name if name is not None else default_name(path),
        "files": {rel: base64.b64encode(data).decode("ascii") for rel, data in files.items()},
    }
    optional: dict[str, Any] = {
        "entry": entry,
        "memory_mb": memory_mb,
        "timeout_s": timeout_s,
        "cpu": cpu,
        "cpu_ms_per_call": cpu_ms_per_call,
        "env": dict(env) if env is not None else None,
        "max_instances": max_instances,
        "max_queue": max_queue,
        "network": network,
        "allow": list(allow) if allow is not None else None,
        "egress_mbit": egress_mbit,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body
