"""Which shared libraries an ELF file needs, read from its headers and
resolved the way the dynamic loader would, without running ldd (one
subprocess per file would cost hundreds of milliseconds at every start).

Server side only: sandbox/hostfs.py uses it to bind exactly the libraries
the sandbox's interpreter and extension modules load, not all of /usr/lib.
"""

from __future__ import annotations

import glob
import mmap
import os
import struct
from dataclasses import dataclass

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 1, 5, 15, 29


@dataclass(frozen=True)
class ElfInfo:
    needed: tuple[str, ...]
    # RUNPATH (or RPATH when there is no RUNPATH), $ORIGIN expanded.
    search_dirs: tuple[str, ...]
    interpreter: str | None
    # (class, data, machine): a library must match its user.
    kind: tuple[int, int, int]


def read(path: str) -> ElfInfo | None:
    """The dynamic section of `path`, or None if it is not an ELF file."""
    try:
        with open(path, "rb") as f:
            # Mapped, not read: only the pages of the headers and the
            # dynamic section are touched (libpython is tens of MiB).
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    with data:
        if len(data) < 64 or data[:4] != b"\x7fELF":
            return None
        return _parse(path, data)


def _parse(path: str, data: mmap.mmap) -> ElfInfo:
    wide, endian = data[4] == 2, "<" if data[5] == 1 else ">"
    (machine,) = struct.unpack_from(endian + "H", data, 18)
    # e_phoff, then (after e_shoff, e_flags, e_ehsize) e_phentsize and e_phnum.
    if wide:
        phoff, phentsize, phnum = struct.unpack_from(endian + "Q14xHH", data, 32)
        phdr, dyn = endian + "IIQQQQQQ", endian + "qQ"
    else:
        phoff, phentsize, phnum = struct.unpack_from(endian + "I10xHH", data, 28)
        phdr, dyn = endian + "IIIIIIII", endian + "iI"
    loads, dynamic, interpreter = [], None, None
    for i in range(phnum):
        fields = struct.unpack_from(phdr, data, phoff + i * phentsize)
        if wide:
            p_type, _flags, offset, vaddr, _paddr, filesz = fields[:6]
        else:
            p_type, offset, vaddr, _paddr, filesz = fields[:5]
        if p_type == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (offset, filesz)
        elif p_type == PT_INTERP:
            interpreter = data[offset : offset + filesz].rstrip(b"\0").decode()
    entries: list[tuple[int, int]] = []
    if dynamic is not None:
        size = struct.calcsize(dyn)
        for at in range(dynamic[0], dynamic[0] + dynamic[1] - size + 1, size):
            tag, value = struct.unpack_from(dyn, data, at)
            if tag == 0:
                break
            entries.append((tag, value))
    strtab = next((_file_offset(loads, v) for t, v in entries if t == DT_STRTAB), None)

    def string(offset: int) -> str:
        assert strtab is not None
        start = strtab + offset
        return data[start : data.find(b"\0", start)].decode(errors="replace")

    needed = tuple(string(v) for t, v in entries if t == DT_NEEDED and strtab is not None)
    runpath = [string(v) for t, v in entries if t == DT_RUNPATH and strtab is not None]
    rpath = [string(v) for t, v in entries if t == DT_RPATH and strtab is not None]
    origin = os.path.dirname(os.path.realpath(path))
    dirs = tuple(
        d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
        for joined in (runpath or rpath)
        for d in joined.split(":")
        if d
    )
    return ElfInfo(needed, dirs, interpreter, (data[4], data[5], machine))


def _file_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int | None:
    for start, offset, size in loads:
        if start <= vaddr < start + size:
            return vaddr - start + offset
    return None


def loader_dirs() -> tuple[str, ...]:
    """Where the loader looks for a library named without a slash: the
    directories of /etc/ld.so.conf (what ld.so.cache indexes), then the
    system directories."""
    dirs: list[str] = []
    _read_conf("/etc/ld.so.conf", dirs, depth=0)
    multiarch = [os.path.basename(d) for d in glob.glob("/usr/lib/*-linux-gnu*")]
    for base in ("/lib", "/usr/lib"):
        dirs += [f"{base}/{m}" for m in multiarch] + [base]
    dirs += ["/lib64", "/usr/lib64"]
    return tuple(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


def _read_conf(path: str, dirs: list[str], depth: int) -> None:
    try:
        with open(path) as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
    except OSError:
        return
    for line in lines:
        if line.startswith("include") and depth < 4:
            for included in sorted(glob.glob(line.split(None, 1)[1])):
                _read_conf(included, dirs, depth + 1)
        elif line.startswith("/"):
            dirs.append(line)


def closure(roots: list[str], system_dirs: tuple[str, ...]) -> dict[str, str]:
    """Every library `roots` need, directly or not: soname -> host path (as
    found, not resolved). Names the host cannot resolve are left out: the
    extension module that needs them fails to import, inside as outside."""
    found: dict[str, str] = {}
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        path = pending.pop()
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        info = read(real)
        if info is None:
            continue
        for name in info.needed:
            if name in found:
                continue
            where = _resolve(name, info, system_dirs)
            if where is not None:
                found[name] = where
                pending.append(where)
    return found


def _resolve(name: str, user: ElfInfo, system_dirs: tuple[str, ...]) -> str | None:
    if "/" in name:
        return name if os.path.isfile(name) else None
    for directory in (*user.search_dirs, *system_dirs):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            info = read(candidate)
            if info is not None and info.kind == user.kind:
                return candidate
    return None
