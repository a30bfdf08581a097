"""Layers shared through a real PostgreSQL (invoker/pg_layers.py,
invoker/layer_archive.py): stored by the server that has one, fetched and
checked by another on first use, once for concurrent users; tampered and
hostile archives refused with a clear error and nothing left behind."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import tarfile
from pathlib import Path

import psycopg
import pytest

from invoker.errors import LayerUnavailable
from invoker.layer_archive import pack, tree_digest
from invoker.layers import MANIFEST, Layer, LayerStore
from invoker.model import FunctionConfig
from invoker.pg_layers import PostgresLayerArchive
from invoker.pg_registry import PostgresRegistry
from invoker.pg_schema import migrate
from invoker.registry import LayerGone

LAYER_ID = "0123456789abcdef0123"


class CountingArchive(PostgresLayerArchive):
    """The real archive, counting fetches."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.fetches = 0

    def fetch(self, layer_id: str, archive_path: str) -> str | None:
        self.fetches += 1
        return super().fetch(layer_id, archive_path)


def make_layer(root: Path, layer_id: str = LAYER_ID) -> Layer:
    """A built layer as LayerStore leaves one: python/, lib/, a link, the manifest."""
    path = root / layer_id
    (path / "python" / "pkg").mkdir(parents=True)
    (path / "python" / "pkg" / "__init__.py").write_text("VALUE = 42\n")
    (path / "lib").mkdir()
    (path / "lib" / "libdemo.so.1").write_bytes(os.urandom(4096))
    (path / "lib" / "libdemo.so").symlink_to("libdemo.so.1")
    layer = Layer(layer_id, str(path), 4200, (("pkg", "1.0"),), ("pkg",), ("pkg",), "cp311", 1.0)
    (path / MANIFEST).write_text(json.dumps(layer.manifest()))
    return layer


def store(root: Path, archive: PostgresLayerArchive) -> LayerStore:
    layers = LayerStore(str(root))
    layers.load()
    layers.share(archive)
    return layers


@pytest.fixture
def url(pg_url: str) -> str:
    migrate(pg_url)
    return pg_url


async def test_a_layer_stored_by_one_server_is_fetched_once_by_another(tmp_path: Path, url: str) -> None:
    built = make_layer(tmp_path / "a")
    a = store(tmp_path / "a", PostgresLayerArchive(url))
    await a.publish(a.layers[LAYER_ID])
    await a.publish(a.layers[LAYER_ID])  # stored already: nothing more
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id, chunks > 0 FROM layers").fetchall() == [(LAYER_ID, True)]
    archive = CountingArchive(url)
    b = store(tmp_path / "b", archive)
    got = await asyncio.gather(*(b.obtain(LAYER_ID) for _ in range(5)))
    assert archive.fetches == 1 and all(layer == got[0] for layer in got)
    assert got[0] == dataclasses.replace(built, path=str(tmp_path / "b" / LAYER_ID))
    assert tree_digest(got[0].path) == tree_digest(built.path)
    assert os.readlink(tmp_path / "b" / LAYER_ID / "lib" / "libdemo.so") == "libdemo.so.1"
    assert sorted(os.listdir(tmp_path / "b")) == [LAYER_ID]  # no work directory left
    assert await b.obtain(LAYER_ID) is got[0] and archive.fetches == 1  # cached


async def test_the_archive_goes_with_the_last_stored_version_naming_it(tmp_path: Path, url: str) -> None:
    make_layer(tmp_path / "a")
    a = store(tmp_path / "a", PostgresLayerArchive(url))
    await a.publish(a.layers[LAYER_ID])
    registry = PostgresRegistry(url)
    config = FunctionConfig(name="f", version=0, handler_module="handler", entry="handle",
                            files=("handler.py",), layer_id=LAYER_ID)  # fmt: skip
    registry.put(config, {"handler.py": b""})
    archive = PostgresLayerArchive(url)
    assert not archive.delete_unused(LAYER_ID)  # version 1 names it
    registry.delete("f")
    await a.remove(LAYER_ID)
    assert not archive.has(LAYER_ID) and not (tmp_path / "a" / LAYER_ID).exists()
    registry.close()


async def test_a_version_is_never_stored_naming_a_layer_removed_meanwhile(tmp_path: Path, url: str) -> None:
    """A deploy resolved its layer (stored), then another server removed it
    as unused before the version was written: the registry refuses the
    version (LayerGone), and once the layer is stored again it takes it."""
    make_layer(tmp_path / "a")
    a = store(tmp_path / "a", PostgresLayerArchive(url))
    await a.publish(a.layers[LAYER_ID])
    assert PostgresLayerArchive(url).delete_unused(LAYER_ID)  # the other server's removal
    registry = PostgresRegistry(url)
    config = FunctionConfig(name="f", version=0, handler_module="handler", entry="handle",
                            files=("handler.py",), layer_id=LAYER_ID)  # fmt: skip
    with pytest.raises(LayerGone):
        registry.put(config, {"handler.py": b""})
    assert registry.load_function("f") == ([], [])
    await a.publish(a.layers[LAYER_ID])  # what Catalog.put does on LayerGone
    stored, changed = registry.put(config, {"handler.py": b""})
    assert changed and stored.version == 1
    assert not PostgresLayerArchive(url).delete_unused(LAYER_ID)  # now a version keeps it
    registry.close()


async def test_a_layer_in_no_database_is_unavailable_saying_so(tmp_path: Path, url: str) -> None:
    b = store(tmp_path / "b", PostgresLayerArchive(url))
    with pytest.raises(LayerUnavailable, match=f"layer {LAYER_ID} is missing from the database"):
        await b.obtain(LAYER_ID)


def store_raw(url: str, archive: bytes, digest: str) -> None:
    """An archive put straight into the database, as an attacker with write access would."""
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM layers WHERE id = %s", (LAYER_ID,))
        conn.execute(
            "INSERT INTO layers (id, tree_digest, archive_bytes, chunks) VALUES (%s, %s, %s, 1)",
            (LAYER_ID, digest, len(archive)),
        )
        conn.execute("INSERT INTO layer_chunks (layer_id, seq, data) VALUES (%s, 0, %s)", (LAYER_ID, archive))


async def test_a_tampered_archive_is_refused_by_its_digest(tmp_path: Path, url: str) -> None:
    built = make_layer(tmp_path / "a")
    good = str(tmp_path / "good.tar.gz")
    digest = pack(built.path, good)
    (Path(built.path) / "python" / "pkg" / "__init__.py").write_text("import os; os.system('id')\n")
    pack(built.path, str(tmp_path / "evil.tar.gz"))
    store_raw(url, (tmp_path / "evil.tar.gz").read_bytes(), digest)  # the digest of the good one
    b = store(tmp_path / "b", PostgresLayerArchive(url))
    with pytest.raises(LayerUnavailable, match=r"from the database was refused: its digest is .* not the"):
        await b.obtain(LAYER_ID)
    assert os.listdir(tmp_path / "b") == [] and b.get(LAYER_ID) is None
    store_raw(url, Path(good).read_bytes()[:-40] + b"\0" * 40, digest)  # a damaged gzip
    with pytest.raises(LayerUnavailable, match="was refused: it cannot be unpacked"):
        await b.obtain(LAYER_ID)
    store_raw(url, Path(good).read_bytes(), digest)
    assert (await b.obtain(LAYER_ID)).id == LAYER_ID  # the real one passes


def hostile(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """A gzipped tar of one good directory and then `member`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        top = tarfile.TarInfo("python")
        top.type = tarfile.DIRTYPE
        top.mode = 0o755
        tar.addfile(top)
        if member.isreg():
            member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (member("../escaped"), "would land outside the layer"),
        (member("/tmp/escaped-absolute"), "would land outside the layer"),
        (member("python/../../escaped"), "would land outside the layer"),
        (member("python/etc", tarfile.SYMTYPE, "/etc"), "points outside the layer"),
        (member("python/up", tarfile.SYMTYPE, "../.."), "points outside the layer"),
        (member("python/hard", tarfile.LNKTYPE, "/etc/passwd"), "device, FIFO or hard link"),
        (member("python/null", tarfile.CHRTYPE), "device, FIFO or hard link"),
        (member("python/fifo", tarfile.FIFOTYPE), "device, FIFO or hard link"),
    ],
)
async def test_hostile_archives_are_refused_and_write_nothing_outside(
    tmp_path: Path, url: str, bad: tarfile.TarInfo, why: str
) -> None:
    store_raw(url, hostile(bad, b"owned"), "0" * 64)
    (tmp_path / "b").mkdir()
    b = store(tmp_path / "b", PostgresLayerArchive(url))
    with pytest.raises(LayerUnavailable, match=why):
        await b.obtain(LAYER_ID)
    assert os.listdir(tmp_path / "b") == []
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped-absolute").exists()


async def test_a_member_written_through_a_link_is_refused(tmp_path: Path, url: str) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.addfile(member("python/inside", tarfile.SYMTYPE, "."))  # a link that stays inside...
        payload = member("python/inside/file")  # ...and a file written through it
        payload.size = 1
        tar.addfile(payload, io.BytesIO(b"x"))
    store_raw(url, out.getvalue(), "0" * 64)
    b = store(tmp_path / "b", PostgresLayerArchive(url))
    with pytest.raises(LayerUnavailable, match="would be written through the link 'python/inside'"):
        await b.obtain(LAYER_ID)


async def test_an_archive_unpacking_past_the_limit_is_refused(tmp_path: Path, url: str) -> None:
    big = member("python/big")
    store_raw(url, hostile(big, b"\0" * 10_000), "0" * 64)
    (tmp_path / "b").mkdir()
    b = LayerStore(str(tmp_path / "b"), limit_bytes=5_000)
    b.load()
    b.share(PostgresLayerArchive(url))
    with pytest.raises(LayerUnavailable, match="more than 5000 bytes"):
        await b.obtain(LAYER_ID)
