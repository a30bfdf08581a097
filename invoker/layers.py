"""Layers: a function's requirements, installed once, shared read-only.

A layer is a directory DATA_DIR/layers/<id>/ holding `python/` (the
packages, pip's --target), `lib/` (shared libraries its extension modules
need that the sandbox's runtime lacks) and `layer.json` (its manifest). The
id is a content address: a hash of the resolved packages (name, version,
wheel), the Python version and the platform, so functions whose
requirements resolve alike share one directory. Inside a sandbox the
directory is mounted read-only at /opt, /opt/python is on sys.path after
/var/task, and /lib points at /opt/lib.

Builds happen in a `.build-*` directory and are renamed into place whole;
anything starting with '.' is removed at the next start, so a build
interrupted by a crash leaves nothing (a layer without its manifest is
never loaded either). Concurrent deploys of the same requirements share
one resolution, and builds of the same layer share one install.

In a cluster (`database` set) layers are shared through the database
(`share`, invoker/layer_archive.py): a layer built here, or used by a
deploy here, is stored there; a layer a version needs that this server
lacks is fetched from there on its first use (`obtain`), checked, and
kept like one built here. Concurrent first uses fetch once. A deploy whose
requirements resolve to a layer stored there fetches it rather than
building it. A layer removed here once unused is deleted from the database
too if no stored version names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.api import layer_libraries

from . import layer_archive, layer_build
from .errors import LayerBuildFailed, LayerUnavailable
from .layer_archive import ArchiveRefused, LayerArchive
from .layer_build import ResolvedPackage, TargetPython
from .tasks import shared_task

log = logging.getLogger("faas.layers")

MANIFEST = "layer.json"
PYTHON_DIR = "python"
LIB_DIR = "lib"
DEFAULT_LAYER_LIMIT_BYTES = 1024 * 1024 * 1024
DEFAULT_BUILD_TIMEOUT_S = 600.0
ID_LENGTH = 20


@dataclass(frozen=True)
class Layer:
    id: str
    path: str
    size_bytes: int
    packages: tuple[tuple[str, str], ...]
    requirements: tuple[str, ...]
    # Top-level modules of the requested packages: what an import cache preloads.
    imports: tuple[str, ...]
    python: str
    created_at: float

    def manifest(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "size_bytes": self.size_bytes,
            "packages": dict(self.packages),
            "requirements": list(self.requirements),
            "imports": list(self.imports),
            "python": self.python,
            "created_at": self.created_at,
        }

    @classmethod
    def from_manifest(cls, path: str, data: dict[str, Any]) -> Layer:
        return cls(
            id=str(data["id"]),
            path=path,
            size_bytes=int(data["size_bytes"]),
            packages=tuple((str(k), str(v)) for k, v in dict(data["packages"]).items()),
            requirements=tuple(str(r) for r in data["requirements"]),
            imports=tuple(str(m) for m in data["imports"]),
            python=str(data["python"]),
            created_at=float(data["created_at"]),
        )


def content_address(packages: list[ResolvedPackage], target: TargetPython) -> str:
    wheels = sorted((p.name, p.version, p.url.rsplit("/", 1)[-1].split("#", 1)[0]) for p in packages)
    blob = json.dumps({"python": target.tag, "abis": target.abis, "wheels": wheels}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:ID_LENGTH]


class LayerStore:
    def __init__(
        self,
        root: str,
        limit_bytes: int = DEFAULT_LAYER_LIMIT_BYTES,
        build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S,
        libraries: Callable[[str], dict[str, str]] = lambda _python_dir: {},
        target: TargetPython | None = None,
    ) -> None:
        self.root = root
        self.limit_bytes = limit_bytes
        self.build_timeout_s = build_timeout_s
        # The shared libraries a layer's packages need that a sandbox lacks:
        # {soname: host path} of those under a python directory.
        self._libraries = libraries
        self.target = target or TargetPython.current()
        self.layers: dict[str, Layer] = {}
        # In flight: resolutions by requirements, installs by layer id.
        self._resolving: dict[tuple[str, ...], asyncio.Task[Layer]] = {}
        self._building: dict[str, asyncio.Task[Layer]] = {}
        # In a cluster: where layers are shared, and fetches and stores in flight by layer id.
        self.archive: LayerArchive | None = None
        self._fetching: dict[str, asyncio.Task[Layer | None]] = {}
        self._publishing: dict[str, asyncio.Task[None]] = {}

    def share(self, archive: LayerArchive) -> None:
        """Share layers with the other servers of a cluster through `archive`."""
        self.archive = archive

    @classmethod
    def in_data_dir(cls, data_dir: str, limit_bytes: int, build_timeout_s: float) -> LayerStore:
        """The server's layers: DATA_DIR/layers, next to the sandboxes' runtime."""
        return cls(
            os.path.join(data_dir, "layers"),
            limit_bytes,
            build_timeout_s,
            lambda python_dir: layer_libraries(python_dir, data_dir),
        )

    def load(self) -> None:
        """At start: every complete layer; what a crash left half-made goes."""
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        os.chmod(self.root, 0o755)
        for entry in os.listdir(self.root):
            path = os.path.join(self.root, entry)
            if entry.startswith("."):
                shutil.rmtree(path, ignore_errors=True)
                continue
            try:
                with open(os.path.join(path, MANIFEST)) as f:
                    layer = Layer.from_manifest(path, json.load(f))
                if layer.id != entry:
                    raise ValueError(f"manifest names {layer.id}")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("removing broken layer %s: %s", entry, exc)
                shutil.rmtree(path, ignore_errors=True)
                continue
            self.layers[layer.id] = layer

    def get(self, layer_id: str) -> Layer | None:
        return self.layers.get(layer_id)

    @property
    def building(self) -> bool:
        return bool(self._resolving or self._building or self._fetching)

    async def ensure(self, requirements_text: str) -> Layer | None:
        """The layer of a requirements.txt, built unless an identical one
        exists; None when it names no package. LayerBuildFailed (400) when
        pip cannot do it, BadRequest for a bad file."""
        requirements = layer_build.parse_requirements(requirements_text)
        if not requirements:
            return None
        layer = await shared_task(
            self._resolving, requirements, lambda: self._resolve_and_build(requirements)
        )
        await self.publish(layer)
        return layer

    async def publish(self, layer: Layer) -> None:
        """In a cluster, the layer stored in the database (unless it is
        already), so that other servers can run the versions using it."""
        if self.archive is None:
            return
        try:
            await shared_task(self._publishing, layer.id, lambda: asyncio.to_thread(self._publish, layer))
        except Exception as exc:
            raise LayerUnavailable(f"layer {layer.id} could not be stored in the database: {exc}") from exc

    def _publish(self, layer: Layer) -> None:
        assert self.archive is not None
        t0 = time.monotonic()
        packed = layer_archive.store(self.archive, layer.id, layer.path, self.root)
        if packed is not None:
            log.info(
                "stored layer %s in the database (%d bytes packed) in %.1f s",
                layer.id,
                packed,
                time.monotonic() - t0,
            )

    async def obtain(self, layer_id: str) -> Layer:
        """The layer `layer_id`: this server's, else (in a cluster) fetched
        from the database now; LayerUnavailable when it cannot be had."""
        layer = self.layers.get(layer_id) or await self._fetch(layer_id)
        if layer is None:
            where = "the database" if self.archive is not None else self.root
            raise LayerUnavailable(f"layer {layer_id} is missing from {where}")
        return layer

    async def _fetch(self, layer_id: str) -> Layer | None:
        """The layer from the database (None: not stored there, or alone)."""
        if self.archive is None:
            return None
        return await shared_task(self._fetching, layer_id, lambda: self._fetch_now(layer_id))

    async def _fetch_now(self, layer_id: str) -> Layer | None:
        found = self.layers.get(layer_id)  # fetched meanwhile
        if found is not None:
            return found
        t0 = time.monotonic()
        layer = await asyncio.to_thread(self._unpack_shared, layer_id)
        if layer is not None:
            log.info(
                "fetched layer %s (%d bytes) from the database in %.2f s",
                layer_id,
                layer.size_bytes,
                time.monotonic() - t0,
            )
            self.layers[layer_id] = layer
        return layer

    def _unpack_shared(self, layer_id: str) -> Layer | None:
        assert self.archive is not None
        work = tempfile.mkdtemp(prefix=".fetch-", dir=self.root)
        try:
            try:
                staging = layer_archive.fetch(self.archive, layer_id, work, self.limit_bytes)
                if staging is None:
                    return None
                with open(os.path.join(staging, MANIFEST)) as f:
                    layer = Layer.from_manifest(os.path.join(self.root, layer_id), json.load(f))
                if layer.id != layer_id:
                    raise ArchiveRefused(f"its manifest names layer {layer.id}")
            except ArchiveRefused as exc:
                log.error("layer %s from the database refused: %s", layer_id, exc)
                raise LayerUnavailable(f"layer {layer_id} from the database was refused: {exc}") from None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise LayerUnavailable(
                    f"layer {layer_id} could not be fetched from the database: {exc}"
                ) from None
            _into_place(staging, layer.path)
            return layer
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _resolve_and_build(self, requirements: tuple[str, ...]) -> Layer:
        deadline = time.monotonic() + self.build_timeout_s
        work = tempfile.mkdtemp(prefix=".resolve-", dir=self.root)
        try:
            packages = await layer_build.resolve(requirements, self.target, work, deadline)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        layer_id = content_address(packages, self.target)
        found = self.layers.get(layer_id) or await self._fetch(layer_id)
        if found is not None:
            return found
        return await shared_task(
            self._building, layer_id, lambda: self._build(layer_id, requirements, packages, deadline)
        )

    async def _build(
        self, layer_id: str, requirements: tuple[str, ...], packages: list[ResolvedPackage], deadline: float
    ) -> Layer:
        work = tempfile.mkdtemp(prefix=".build-", dir=self.root)
        try:
            staging = os.path.join(work, layer_id)
            python_dir = os.path.join(staging, PYTHON_DIR)
            os.makedirs(python_dir)
            t0 = time.monotonic()
            await layer_build.install(packages, self.target, python_dir, work, deadline)
            layer = await asyncio.to_thread(self._finish, layer_id, staging, requirements, packages)
            log.info(
                "built layer %s (%d packages, %d bytes) in %.1f s",
                layer_id,
                len(packages),
                layer.size_bytes,
                time.monotonic() - t0,
            )
            self.layers[layer_id] = layer
            return layer
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    def _finish(
        self, layer_id: str, staging: str, requirements: tuple[str, ...], packages: list[ResolvedPackage]
    ) -> Layer:
        """Shared libraries, the size check, the manifest; then into place."""
        python_dir = os.path.join(staging, PYTHON_DIR)
        layer_build.tidy(python_dir)
        lib_dir = os.path.join(staging, LIB_DIR)
        os.makedirs(lib_dir)
        for soname, path in self._libraries(python_dir).items():
            shutil.copyfile(path, os.path.join(lib_dir, soname))
        size = layer_build.tree_size(staging)
        if size > self.limit_bytes:
            raise LayerBuildFailed(
                f"the layer of {', '.join(requirements)} takes {size} bytes, over the limit of "
                f"{self.limit_bytes} bytes (layer_limit_bytes)"
            )
        requested = {p.name for p in packages if p.requested}
        layer = Layer(
            id=layer_id,
            path=os.path.join(self.root, layer_id),
            size_bytes=size,
            packages=tuple(sorted((p.name, p.version) for p in packages)),
            requirements=requirements,
            imports=layer_build.top_level_modules(python_dir, requested),
            python=self.target.tag,
            created_at=time.time(),
        )
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(layer.manifest(), f, indent=1)
        _make_readable(staging)
        _into_place(staging, layer.path)
        return layer

    async def remove(self, layer_id: str) -> None:
        """Remove a layer nothing uses: renamed away first (whole or not at
        all under its id), then deleted."""
        layer = self.layers.pop(layer_id, None)
        if layer is None:
            return
        trash = os.path.join(self.root, f".remove-{layer_id}-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(OSError):
            os.rename(layer.path, trash)
            await asyncio.to_thread(shutil.rmtree, trash, True)
        if self.archive is not None:
            try:
                if await asyncio.to_thread(self.archive.delete_unused, layer_id):
                    log.info("deleted layer %s from the database: no stored version names it", layer_id)
            except Exception as exc:  # the database's trouble: the next server to remove it tries again
                log.warning("could not delete layer %s from the database: %s", layer_id, exc)


def _into_place(staging: str, path: str) -> None:
    """A finished layer renamed to its id; one there already (the same
    content, by its address) is kept."""
    try:
        os.rename(staging, path)
    except OSError:
        if not os.path.isfile(os.path.join(path, MANIFEST)):
            raise


def _make_readable(path: str) -> None:
    """Every sandbox uid reads a layer: directories 0755, files 0644 (0755
    for shared libraries, which are mapped executable)."""
    for directory, _dirs, files in os.walk(path):
        os.chmod(directory, 0o755)
        for name in files:
            full = os.path.join(directory, name)
            if not os.path.islink(full):
                os.chmod(full, 0o755 if ".so" in name else 0o644)
