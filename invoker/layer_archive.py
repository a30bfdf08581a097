"""A layer's directory as one archive, to share it between the servers of a
cluster (invoker/pg_layers.py stores it): a gzipped tar made here from a
layer just built, unpacked by another server on its first use of the layer.

An archive comes from the database, so it is checked as if it came from
anyone: only directories, regular files and symbolic links that stay inside
the layer; no absolute name, no `..`, no member written through a link, no
device, FIFO or hard link; no more than the layer limit unpacked; and once
unpacked, the tree's digest (names, kinds, modes, contents, link targets)
must be the one its builder recorded. Anything else is ArchiveRefused.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from typing import Protocol

COMPRESS_LEVEL = 6
READ_BLOCK = 1024 * 1024


class ArchiveRefused(ValueError):
    """The archive is not a layer this server will use; the message says why."""


class LayerArchive(Protocol):
    """Where built layers are shared: one archive per layer id."""

    def put(self, layer_id: str, tree_digest: str, archive_path: str) -> bool:
        """Store the archive at `archive_path` unless the layer is stored
        already; whether it was stored now."""
        ...

    def fetch(self, layer_id: str, archive_path: str) -> str | None:
        """Write the layer's archive to `archive_path`; its tree digest, or
        None when no archive of that id is stored."""
        ...

    def has(self, layer_id: str) -> bool: ...

    def delete_unused(self, layer_id: str) -> bool:
        """Delete the layer's archive if no stored version names it; whether it did."""
        ...

    def close(self) -> None: ...


def store(archive: LayerArchive, layer_id: str, tree: str, work_root: str) -> int | None:
    """The layer at `tree` packed (in a temporary directory under
    `work_root`) and stored in `archive` unless it is already; the packed
    size if stored now."""
    if archive.has(layer_id):
        return None
    work = tempfile.mkdtemp(prefix=".publish-", dir=work_root)
    try:
        archive_path = os.path.join(work, "layer.tar.gz")
        digest = pack(tree, archive_path)
        return os.path.getsize(archive_path) if archive.put(layer_id, digest, archive_path) else None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch(archive: LayerArchive, layer_id: str, work: str, limit_bytes: int) -> str | None:
    """The layer from `archive` unpacked and checked under `work`: its
    directory there, or None when it is not stored. ArchiveRefused when it
    fails a check."""
    archive_path = os.path.join(work, "layer.tar.gz")
    digest = archive.fetch(layer_id, archive_path)
    if digest is None:
        return None
    staging = os.path.join(work, layer_id)
    unpack(archive_path, staging, limit_bytes, digest)
    os.unlink(archive_path)
    return staging


def _entries(root: str) -> list[str]:
    """Every path under `root`, relative, sorted; links are not followed."""
    found = []
    for directory, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        for name in dirs + files:
            found.append(os.path.normpath(os.path.join(rel_dir, name)))
    return sorted(found)


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: str) -> str:
    """SHA-256 over every entry's name, kind, permission bits and content (a
    file's bytes, a link's target), in name order."""
    h = hashlib.sha256()
    for rel in _entries(root):
        path = os.path.join(root, rel)
        st = os.lstat(path)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            line = f"d {rel} {mode:o}"
        elif stat.S_ISLNK(st.st_mode):
            line = f"l {rel} {os.readlink(path)}"
        elif stat.S_ISREG(st.st_mode):
            line = f"f {rel} {mode:o} {st.st_size} {_file_digest(path)}"
        else:
            raise ArchiveRefused(f"{rel} is neither a file, a directory nor a link")
        h.update(line.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def pack(root: str, archive_path: str) -> str:
    """Write the tree under `root` to `archive_path`; its tree digest."""
    with tarfile.open(archive_path, "w:gz", compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT) as tar:
        for rel in _entries(root):
            path = os.path.join(root, rel)
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                raise ArchiveRefused(f"{rel} is neither a file, a directory nor a link")
    return tree_digest(root)


def unpack(archive_path: str, dest: str, limit_bytes: int, expected_digest: str) -> None:
    """Unpack into `dest` (a new directory), every member checked, then the
    tree's digest; ArchiveRefused, `dest` left for the caller to remove, if
    anything is wrong."""
    os.makedirs(dest, mode=0o755)
    links: set[str] = set()
    total = 0
    try:
        with tarfile.open(archive_path, "r:gz") as tar:
            for member in tar:
                _check_member(member, links)
                total += member.size
                if total > limit_bytes:
                    raise ArchiveRefused(f"it unpacks to more than {limit_bytes} bytes (layer_limit_bytes)")
                tar.extract(member, dest, set_attrs=True, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:  # FilterError is a TarError
        raise ArchiveRefused(f"it cannot be unpacked: {exc}") from None
    found = tree_digest(dest)
    if found != expected_digest:
        raise ArchiveRefused(
            f"its digest is {found[:16]}..., not the {expected_digest[:16]}... its builder stored"
        )


def _check_member(member: tarfile.TarInfo, links: set[str]) -> None:
    name = member.name
    parts = name.split("/")
    if not name or name.startswith("/") or ".." in parts or posixpath.normpath(name) != name:
        raise ArchiveRefused(f"member {name!r} would land outside the layer")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            raise ArchiveRefused(f"member {name!r} would be written through the link {'/'.join(parts[:i])!r}")
    if member.issym():
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise ArchiveRefused(f"link {name!r} points outside the layer ({target!r})")
        links.add(name)
    elif not (member.isreg() or member.isdir()):
        raise ArchiveRefused(
            f"member {name!r} is not a file, directory or link (a device, FIFO or hard link)"
        )
