"""Layers in the invoker, on a fake factory and a layer store that makes
layers without pip: which deploys share one, when one goes, and what the
factory is told (no root, no network)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from invoker.config import InvokerConfig
from invoker.errors import BadRequest, LayerBuildFailed
from invoker.invoker import Invoker
from invoker.layers import MANIFEST, Layer, LayerStore
from invoker.metrics import Metrics
from invoker.model import Invocation

from .fakes import FakeFactory

HANDLER = base64.b64encode(b"def handle(event, context):\n    return 'hi'\n").decode()


def body(name: str, requirements: str | None) -> dict[str, Any]:
    files = {"handler.py": HANDLER}
    if requirements is not None:
        files["requirements.txt"] = base64.b64encode(requirements.encode()).decode()
    return {"name": name, "files": files}


class PiplessLayerStore(LayerStore):
    """Resolves each requirement to version 1.0 and "installs" an empty
    package; a gate holds builds until the test opens it."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.builds: list[tuple[str, ...]] = []
        self.gate: asyncio.Event | None = None

    async def _resolve_and_build(self, requirements: tuple[str, ...]) -> Layer:
        self.builds.append(requirements)
        if self.gate is not None:
            await self.gate.wait()
        if any(r.startswith("missing") for r in requirements):
            raise LayerBuildFailed(
                f"cannot install {requirements[0]}: pip said: ERROR: No matching distribution"
            )
        layer_id = "l" + "".join(r[0] for r in requirements).ljust(19, "0")
        found = self.layers.get(layer_id)
        if found is not None:
            return found
        path = os.path.join(self.root, layer_id)
        os.makedirs(os.path.join(path, "python"))
        packages = tuple((r, "1.0") for r in requirements)
        layer = Layer(layer_id, path, 123, packages, requirements, requirements, "cp311-test", 1.0)
        with open(os.path.join(path, MANIFEST), "w") as f:
            json.dump(layer.manifest(), f)
        self.layers[layer_id] = layer
        return layer


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
async def invoker(tmp_path: Path, factory: FakeFactory) -> AsyncIterator[Invoker]:
    inv = Invoker(InvokerConfig(data_dir=str(tmp_path)), Metrics(), factory=factory)
    inv.catalog.layers = PiplessLayerStore(os.path.join(tmp_path, "layers"))
    async with inv:
        yield inv


def store(invoker: Invoker) -> PiplessLayerStore:
    assert isinstance(invoker.catalog.layers, PiplessLayerStore)
    return invoker.catalog.layers


def layer_dirs(invoker: Invoker) -> list[str]:
    return sorted(os.listdir(store(invoker).root))


async def test_a_deploy_with_requirements_gets_its_layer(invoker: Invoker, factory: FakeFactory) -> None:
    config, created = await invoker.deploy(body("f", "six\n"))
    record = config.to_record()
    assert created and record["layer"]["packages"] == {"six": "1.0"} and record["build_ms"] >= 0
    assert record["layer"]["size_bytes"] == 123
    [image] = factory.loaded_layers  # its import cache is asked for at once
    assert image.layer_dir == store(invoker).layers[config.layer_id].path and image.imports == ("six",)
    await invoker.invoke(Invocation("f", "c1", "GET", "/", {}, (), b""))
    [sandbox] = factory.made
    assert sandbox.function is not None and sandbox.function.layer_dir == image.layer_dir


async def test_a_deploy_without_requirements_has_no_layer(invoker: Invoker) -> None:
    config, _ = await invoker.deploy(body("f", None))
    assert config.to_record()["layer"] is None and config.to_record()["build_ms"] is None
    config, _ = await invoker.deploy(body("g", "# only a comment\n"))
    assert config.to_record()["layer"] is None and config.build_ms is not None
    assert layer_dirs(invoker) == []


async def test_functions_with_the_same_requirements_share_one_layer(invoker: Invoker) -> None:
    a, _ = await invoker.deploy(body("a", "six\npyyaml\n"))
    b, _ = await invoker.deploy(body("b", "pyyaml\n\nsix  # same set\n"))
    assert a.layer_id == b.layer_id and layer_dirs(invoker) == [a.layer_id]
    [listed] = invoker.layers()
    assert listed["functions"] == ["a", "b"] and listed["packages"] == {"pyyaml": "1.0", "six": "1.0"}


async def test_concurrent_identical_deploys_resolve_and_build_once(invoker: Invoker) -> None:
    store(invoker).gate = asyncio.Event()
    deploys = [asyncio.create_task(invoker.deploy(body(f"f{i}", "humanize\n"))) for i in range(3)]
    await asyncio.sleep(0)
    store(invoker).gate.set()
    configs = [config for config, _ in await asyncio.gather(*deploys)]
    assert len({c.layer_id for c in configs}) == 1
    assert store(invoker).builds == [("humanize",)]


async def test_a_failed_build_stores_nothing(invoker: Invoker) -> None:
    with pytest.raises(LayerBuildFailed, match="missing-package"):
        await invoker.deploy(body("f", "missing-package\n"))
    with pytest.raises(BadRequest, match="requirements.txt is not UTF-8"):
        await invoker.deploy({"name": "g", "files": {"handler.py": HANDLER, "requirements.txt": "/w=="}})
    assert invoker.functions() == [] and layer_dirs(invoker) == []


async def test_a_layer_goes_with_its_last_function(invoker: Invoker, factory: FakeFactory) -> None:
    a, _ = await invoker.deploy(body("a", "six\n"))
    await invoker.deploy(body("b", "six\n"))
    path = store(invoker).layers[a.layer_id].path
    await invoker.delete("a")
    assert layer_dirs(invoker) == [a.layer_id] and factory.unloaded_layers == []
    await invoker.delete("b")
    assert layer_dirs(invoker) == [] and factory.unloaded_layers == [path]
    assert invoker.layers() == []


async def test_a_layer_stays_while_a_retained_version_uses_it(invoker: Invoker) -> None:
    old, _ = await invoker.deploy(body("a", "six\n"))
    new, _ = await invoker.deploy(body("a", "pyyaml\n"))
    assert old.layer_id != new.layer_id
    assert layer_dirs(invoker) == sorted([old.layer_id, new.layer_id])  # version 1 is retained
    same, created = await invoker.deploy(body("a", "pyyaml\n"))  # identical: no version, no build
    assert not created and same.version == new.version and store(invoker).builds == [("six",), ("pyyaml",)]


async def test_a_layer_goes_with_the_last_version_using_it(tmp_path: Path, factory: FakeFactory) -> None:
    inv = Invoker(InvokerConfig(data_dir=str(tmp_path), versions_kept=1), Metrics(), factory=factory)
    inv.catalog.layers = PiplessLayerStore(os.path.join(tmp_path, "layers"))
    async with inv:
        old, _ = await inv.deploy(body("a", "six\n"))
        new, _ = await inv.deploy(body("a", "pyyaml\n"))  # version 1 is let go
        assert layer_dirs(inv) == [new.layer_id] and old.layer_id not in layer_dirs(inv)


async def test_a_sandbox_holds_its_layer_until_it_goes(invoker: Invoker, factory: FakeFactory) -> None:
    factory.gate = asyncio.Event()  # calls wait on it
    config, _ = await invoker.deploy(body("a", "six\n"))
    call = asyncio.create_task(invoker.invoke(Invocation("a", "c1", "GET", "/", {}, (), b"")))
    for _ in range(100):
        if factory.in_flight:
            break
        await asyncio.sleep(0)
    await invoker.delete("a")
    assert layer_dirs(invoker) == [config.layer_id]  # a call still runs with it
    factory.gate.set()
    await call
    await invoker.catalog.collect_layers(factory.unload_layer)  # what the keep-alive loop does
    assert layer_dirs(invoker) == []


async def test_no_layer_goes_while_a_deploy_is_under_way(invoker: Invoker) -> None:
    first, _ = await invoker.deploy(body("a", "six\n"))
    store(invoker).gate = asyncio.Event()
    second = asyncio.create_task(invoker.deploy(body("b", "six\n")))
    await asyncio.sleep(0)
    await invoker.delete("a")  # would leave the layer unused, but b's deploy is about to use it
    assert layer_dirs(invoker) == [first.layer_id]
    store(invoker).gate.set()
    config, _ = await second
    assert config.layer_id == first.layer_id and layer_dirs(invoker) == [first.layer_id]
