"""Building a layer with pip: binary wheels only, for the exact interpreter
the sandboxes run, so no package code runs on the host.

Two pip runs, each a subprocess awaited without blocking the event loop:

1. resolve: `pip install --dry-run --report -` with the sandbox
   interpreter's tags gives every package (direct and dependencies) with
   its version and the wheel's URL; that set (plus the Python tag and the
   platform) is the layer's content address, so an identical layer is found
   before anything is installed.
2. install: `pip install --no-deps --target DIR` of exactly those wheels.

`--only-binary=:all:` means a package that has no wheel for this
interpreter is "not found" rather than built from source (running its
setup.py); requirements are limited to plain names with versions, extras
and markers (no URLs, paths or pip options) so nothing but a wheel from the
configured index can be named. Pip's own configuration (index URL, find
links, constraints) applies: that is the operator's to set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass

from packaging import tags
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import BadRequest, LayerBuildFailed

REQUIREMENTS_FILE = "requirements.txt"
MAX_REQUIREMENTS = 200
# pip's lines in an error message: enough to name the package and the reason.
MAX_PIP_LINES = 20
# pip, started so that it dies with the server (it would otherwise go on
# writing into a build directory the next start removes).
PIP_LAUNCHER = (
    "import ctypes, os, runpy, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "sys.argv = ['pip', *sys.argv[2:]]\n"
    "runpy.run_module('pip', run_name='__main__', alter_sys=True)\n"
)
# Noise some pip configurations print on every run; never part of an error.
PIP_NOISE = re.compile(r"^WARNING: Location '.*' is ignored|^\[notice\]")


@dataclass(frozen=True)
class TargetPython:
    """The interpreter the sandboxes run, as pip's platform options say it."""

    version: str  # "3.11"
    implementation: str  # "cp"
    abis: tuple[str, ...]  # ("cp311", "abi3", "none")
    platforms: tuple[str, ...]  # most specific first

    @classmethod
    def current(cls) -> TargetPython:
        """The sandboxes' interpreter is the server's own (sandbox/hostfs.py)."""
        seen_abis: dict[str, None] = {}
        seen_platforms: dict[str, None] = {}
        for tag in tags.sys_tags():
            seen_abis.setdefault(tag.abi)
            seen_platforms.setdefault(tag.platform)
        return cls(
            version=f"{sys.version_info.major}.{sys.version_info.minor}",
            implementation=tags.interpreter_name(),
            abis=tuple(seen_abis),
            platforms=tuple(p for p in seen_platforms if p != "any"),
        )

    @property
    def tag(self) -> str:
        """One line for the content address and the manifest: the Python
        version and the most specific platform (cp311-manylinux_2_36_x86_64)."""
        platform = next((p for p in self.platforms if p.startswith("manylinux_")), self.platforms[0])
        return f"{self.implementation}{self.version.replace('.', '')}-{platform}"

    def pip_options(self) -> list[str]:
        options = [
            "--only-binary=:all:",
            "--python-version",
            self.version,
            "--implementation",
            self.implementation,
        ]
        for abi in self.abis:
            options += ["--abi", abi]
        for platform in self.platforms:
            options += ["--platform", platform]
        return options


@dataclass(frozen=True)
class ResolvedPackage:
    name: str  # canonical: lowercase, '-'
    version: str
    url: str
    # Named in requirements.txt (not only a dependency of one that is).
    requested: bool


def parse_requirements(text: str) -> tuple[str, ...]:
    """The requirements of a requirements.txt, each in canonical form, sorted:
    plain `name[extras] specifiers ; marker` lines only."""
    requirements: dict[str, None] = {}
    logical = text.replace("\\\r\n", "").replace("\\\n", "")
    for number, raw in enumerate(logical.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        where = f"{REQUIREMENTS_FILE} line {number}"
        if line.startswith("-"):
            raise BadRequest(
                f"{where}: pip options ({line.split()[0]}) are not supported: "
                "list package names and versions only"
            )
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise BadRequest(f"{where}: not a requirement ({exc})") from None
        if requirement.url:
            raise BadRequest(
                f"{where}: {requirement.name} is named by URL; only index packages are installed"
            )
        requirements[str(requirement)] = None
        if len(requirements) > MAX_REQUIREMENTS:
            raise BadRequest(f"{REQUIREMENTS_FILE}: more than {MAX_REQUIREMENTS} requirements")
    return tuple(sorted(requirements))


async def resolve(
    requirements: tuple[str, ...], target: TargetPython, work_dir: str, deadline: float
) -> list[ResolvedPackage]:
    """Every package the requirements need, as pip resolves them for `target`."""
    out = await run_pip(
        [
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            "-",
            "--target",
            os.path.join(work_dir, "dry-run"),
            *target.pip_options(),
            *requirements,
        ],
        work_dir,
        deadline,
        requirements,
    )
    try:
        report = json.loads(out)
        return [
            ResolvedPackage(
                name=canonicalize_name(item["metadata"]["name"]),
                version=item["metadata"]["version"],
                url=item["download_info"]["url"],
                requested=bool(item.get("requested")),
            )
            for item in report["install"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise LayerBuildFailed(f"pip's resolution report could not be read: {exc}") from None


async def install(
    packages: list[ResolvedPackage], target: TargetPython, python_dir: str, work_dir: str, deadline: float
) -> None:
    """Install exactly the resolved wheels into `python_dir` (compiled to
    .pyc: the layer is read-only inside, so nothing could cache them there)."""
    await run_pip(
        [
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            python_dir,
            *target.pip_options(),
            *(p.url for p in packages),
        ],
        work_dir,
        deadline,
        tuple(f"{p.name}=={p.version}" for p in packages),
    )


async def run_pip(args: list[str], work_dir: str, deadline: float, requirements: tuple[str, ...]) -> str:
    """Run pip; its stdout. LayerBuildFailed with pip's error lines on failure or
    past the deadline (pip is killed then)."""
    env = {
        **os.environ,
        # Its temporary files live in the build directory, removed with it.
        "TMPDIR": work_dir,
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PIP_LAUNCHER,
        str(os.getpid()),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=work_dir,
        env=env,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            out, err = await proc.communicate()
    except TimeoutError:
        raise LayerBuildFailed(
            "building the layer took longer than build_timeout_s; pip was stopped"
        ) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        raise LayerBuildFailed(_failure_message(err.decode(errors="replace"), requirements))
    return out.decode(errors="replace")


def _failure_message(stderr: str, requirements: tuple[str, ...]) -> str:
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip() and not PIP_NOISE.match(line)]
    errors = [line for line in lines if line.startswith("ERROR")] or lines
    named = _packages_named(errors, requirements)
    head = (
        f"cannot install {', '.join(named)} from binary wheels"
        if named
        else "cannot install the requirements from binary wheels"
    )
    return f"{head} (no wheel for this Python and platform, no such package or version, or a conflict): " + (
        "pip said: " + " | ".join(errors[-MAX_PIP_LINES:])
    )


def _packages_named(lines: list[str], requirements: tuple[str, ...]) -> list[str]:
    """The requirements whose name pip's error lines mention."""
    text = canonicalize_name(" ".join(lines).replace("_", "-"))
    named = []
    for requirement in requirements:
        name = canonicalize_name(Requirement(requirement).name)
        if re.search(rf"(?<![a-z0-9.-]){re.escape(name)}(?![a-z0-9-])", text):
            named.append(requirement)
    return named


def tidy(python_dir: str) -> None:
    """What a layer has no use for: console scripts (they name the host's
    interpreter in their first line, and nothing runs them inside)."""
    shutil.rmtree(os.path.join(python_dir, "bin"), ignore_errors=True)


def top_level_modules(python_dir: str, names: set[str]) -> tuple[str, ...]:
    """The importable top-level modules of the installed distributions named
    `names` (canonical): what a layer zygote imports ahead of the functions."""
    modules: dict[str, None] = {}
    for entry in sorted(os.listdir(python_dir)):
        if not entry.endswith(".dist-info"):
            continue
        dist = canonicalize_name(entry[: -len(".dist-info")].rsplit("-", 1)[0])
        if dist not in names:
            continue
        for name in _dist_top_levels(os.path.join(python_dir, entry)):
            if name.isidentifier() and not name.startswith("_") and name not in ("test", "tests"):
                modules[name] = None
    return tuple(modules)


def _dist_top_levels(dist_info: str) -> list[str]:
    top_level = os.path.join(dist_info, "top_level.txt")
    if os.path.isfile(top_level):
        with open(top_level) as f:
            return [line.strip() for line in f if line.strip()]
    names: dict[str, None] = {}
    with contextlib.suppress(OSError), open(os.path.join(dist_info, "RECORD")) as f:
        for line in f:
            first = line.split(",", 1)[0].split("/", 1)
            if len(first) == 2 and not first[0].endswith((".dist-info", ".data", ".libs")):
                names.setdefault(first[0])
            elif len(first) == 1 and first[0].endswith(".py"):
                names.setdefault(first[0][:-3])
    return list(names)


def tree_size(path: str) -> int:
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total
