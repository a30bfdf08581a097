"""Reading deploy/: the Kubernetes manifests, the config files they mount,
and the `faas serve` command lines of the manifests and the systemd units."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from gateway.cli_args import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
KUSTOMIZATION = "kustomization.yaml"
# A reference to a container's environment variable in its args, which
# Kubernetes expands; an undefined one is left as it is, silently.
ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# The image every faas container runs (its ENTRYPOINT is `faas`).
FAAS_IMAGE = "faas"


def manifest_files() -> list[Path]:
    """Every Kubernetes resource file (kustomizations are kustomize's, not the API's)."""
    return sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != KUSTOMIZATION)


def kustomization_files() -> list[Path]:
    return sorted(KUBERNETES.rglob(KUSTOMIZATION))


def resources() -> list[dict[str, Any]]:
    found = []
    for path in manifest_files():
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def resource(kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found under {KUBERNETES}"
    return matches[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def faas_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) of every container running the faas image."""
    for r in resources():
        if r["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        for container in pod_spec(r)["containers"]:
            if container["image"].split(":")[0] == FAAS_IMAGE:
                yield r, container


def parse_serve(args: list[str]) -> argparse.Namespace:
    """`faas ARGS` parsed by the command's own parser: fails as `faas` would
    on a flag it does not accept or a value of the wrong kind."""
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"faas {' '.join(args)}: rejected by `faas serve`'s parser") from exc


def configmap_file(mount_path: str, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> str:
    """The text of a file a container reads from a mounted ConfigMap."""
    for mount in mounts:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not mount_path.startswith(prefix):
            continue
        volume = next(v for v in volumes if v["name"] == mount["name"])
        data = resource("ConfigMap", volume["configMap"]["name"])["data"]
        key = mount_path[len(prefix) :]
        assert key in data, f"{mount_path}: no key {key!r} in ConfigMap {volume['configMap']['name']}"
        return str(data[key])
    raise AssertionError(f"{mount_path} is on no mounted ConfigMap")


def flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def unit_sections(path: Path) -> dict[str, dict[str, str]]:
    """A systemd unit's settings by section (continuation lines joined; the
    last assignment of a key wins, which is enough for these units)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections
