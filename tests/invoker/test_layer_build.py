"""Layer building without pip or a network: requirements parsing, pip's
options and error messages, the content address, what a layer preloads,
and what a start keeps of an interrupted build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from invoker.errors import BadRequest
from invoker.layer_build import (
    ResolvedPackage,
    TargetPython,
    _failure_message,
    parse_requirements,
    top_level_modules,
)
from invoker.layers import MANIFEST, Layer, LayerStore, content_address

TARGET = TargetPython(
    version="3.11",
    implementation="cp",
    abis=("cp311", "abi3", "none"),
    platforms=("linux_x86_64", "manylinux_2_36_x86_64", "manylinux2014_x86_64"),
)


def test_requirements_are_normalized_sorted_and_deduplicated() -> None:
    text = "# a comment\nsix>=1.16  # trailing\n\nPyYAML==6.0.1 ; python_version >= '3.8'\nsix>=1.16\nhumanize[x] \\\n  <5\n"
    assert parse_requirements(text) == (
        'PyYAML==6.0.1; python_version >= "3.8"',
        "humanize[x]<5",
        "six>=1.16",
    )


def test_an_empty_file_names_nothing() -> None:
    assert parse_requirements("\n# nothing here\n   \n") == ()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("-e git+https://example.com/x.git#egg=x", "pip options (-e)"),
        ("--index-url https://evil.example/simple", "pip options (--index-url)"),
        ("-r other.txt", "pip options (-r)"),
        ("x @ https://example.com/x-1.0.tar.gz", "named by URL"),
        ("./local/dir", "not a requirement"),
        ("six===", "not a requirement"),
    ],
)
def test_anything_but_index_packages_is_refused(line: str, says: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_requirements(f"six\n{line}\n")
    assert "requirements.txt line 2" in info.value.message
    assert says in info.value.message


def test_too_many_requirements() -> None:
    with pytest.raises(BadRequest, match="more than 200"):
        parse_requirements("\n".join(f"pkg{i}" for i in range(201)))


def test_pip_runs_for_the_sandboxes_interpreter_with_wheels_only() -> None:
    options = TARGET.pip_options()
    assert options[0] == "--only-binary=:all:"
    assert options[options.index("--python-version") + 1] == "3.11"
    assert options[options.index("--implementation") + 1] == "cp"
    assert [options[i + 1] for i, o in enumerate(options) if o == "--abi"] == list(TARGET.abis)
    assert [options[i + 1] for i, o in enumerate(options) if o == "--platform"] == list(TARGET.platforms)
    assert TARGET.tag == "cp311-manylinux_2_36_x86_64"


def test_the_current_interpreter_is_described() -> None:
    target = TargetPython.current()
    assert target.implementation == "cp"
    assert target.abis[0].startswith("cp3")
    assert any(p.startswith(("manylinux", "linux")) for p in target.platforms)


def test_a_failure_names_the_requirement_and_keeps_pips_lines() -> None:
    stderr = (
        "WARNING: Location 'file:///opt/x/simple/six/' is ignored: it is neither a file nor a directory.\n"
        "ERROR: Could not find a version that satisfies the requirement docopt (from versions: none)\n"
        "ERROR: No matching distribution found for docopt\n"
    )
    message = _failure_message(stderr, ("docopt", "six"))
    assert message.startswith("cannot install docopt from binary wheels")
    assert "six" not in message.split(" (")[0]
    assert "ERROR: No matching distribution found for docopt" in message
    assert "is ignored" not in message


def test_a_failure_naming_no_requirement_still_carries_pips_lines() -> None:
    message = _failure_message("ERROR: ResolutionImpossible: for help visit ...\n", ("a>1", "b<1"))
    assert message.startswith("cannot install the requirements")
    assert "ResolutionImpossible" in message


def _package(name: str, version: str, wheel: str) -> ResolvedPackage:
    return ResolvedPackage(name, version, f"https://files.example/{wheel}#sha256=00", requested=True)


def test_the_content_address_is_the_resolution_python_and_platform() -> None:
    six = _package("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl")
    yaml = _package("pyyaml", "6.0.3", "pyyaml-6.0.3-cp311-cp311-manylinux_2_17_x86_64.whl")
    first = content_address([six, yaml], TARGET)
    assert first == content_address([yaml, six], TARGET)  # order does not matter
    assert first != content_address([six], TARGET)
    newer = _package("six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl")
    assert first != content_address([newer, yaml], TARGET)
    other_python = TargetPython("3.12", "cp", ("cp312", "abi3", "none"), TARGET.platforms)
    assert first != content_address([six, yaml], other_python)


def _dist(python_dir: Path, name: str, version: str, top_level: list[str] | None, record: list[str]) -> None:
    info = python_dir / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    if top_level is not None:
        (info / "top_level.txt").write_text("\n".join(top_level) + "\n")
    (info / "RECORD").write_text("\n".join(f"{path},sha256=x,1" for path in record) + "\n")


def test_preloaded_modules_are_the_requested_packages_top_levels(tmp_path: Path) -> None:
    _dist(tmp_path, "PyYAML", "6.0", ["_yaml", "yaml"], [])
    _dist(tmp_path, "six", "1.17.0", None, ["six.py", "six-1.17.0.dist-info/RECORD"])
    _dist(tmp_path, "numpy", "2.0", None, ["numpy/__init__.py", "numpy.libs/libx.so", "../../bin/f2py"])
    _dist(tmp_path, "python_dateutil", "2.9", ["dateutil"], [])
    modules = top_level_modules(str(tmp_path), {"pyyaml", "six", "numpy"})
    assert modules == ("yaml", "numpy", "six")  # private modules and unrequested dependencies left out


def _layer_dir(root: Path, layer_id: str, manifest: bool = True) -> Path:
    path = root / layer_id
    (path / "python").mkdir(parents=True)
    if manifest:
        layer = Layer(layer_id, str(path), 10, (("six", "1.17.0"),), ("six",), ("six",), TARGET.tag, 1.0)
        (path / MANIFEST).write_text(json.dumps(layer.manifest()))
    return path


def test_a_start_keeps_complete_layers_only(tmp_path: Path) -> None:
    _layer_dir(tmp_path, "a" * 20)
    _layer_dir(tmp_path, "b" * 20, manifest=False)  # half-made: never renamed into place whole
    _layer_dir(tmp_path, "c" * 20)
    (tmp_path / ("c" * 20) / MANIFEST).write_text(json.dumps({"id": "d" * 20}))  # names another layer
    interrupted = tmp_path / ".build-x1" / ("e" * 20)
    interrupted.mkdir(parents=True)
    (tmp_path / ".resolve-x2").mkdir()
    (tmp_path / ".remove-x3").mkdir()
    store = LayerStore(str(tmp_path), target=TARGET)
    store.load()
    assert sorted(store.layers) == ["a" * 20]
    assert sorted(os.listdir(tmp_path)) == ["a" * 20]
    assert store.layers["a" * 20].packages == (("six", "1.17.0"),)
