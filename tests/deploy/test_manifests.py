"""deploy/kubernetes/: valid under `kubernetes-validate --strict`, and the
facts a schema cannot check: the containers' command lines are ones `faas
serve` accepts, the invoker's privileges, probes, grace periods, references
to Secrets and ConfigMaps, the kustomizations."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from gateway.config import load

from .manifests import (
    ENV_REFERENCE,
    KUBERNETES,
    KUSTOMIZATION,
    configmap_file,
    faas_containers,
    flag_value,
    kustomization_files,
    manifest_files,
    parse_serve,
    pod_spec,
    resource,
    resources,
)

# Seconds a pod may take beyond shutdown_timeout_s to tear down (sandboxes,
# the usage ledger's last batch): its terminationGracePeriodSeconds is in between.
TEARDOWN_MARGIN_S = (10, 60)


def _validator() -> str:
    found = Path(sys.executable).with_name("kubernetes-validate")
    path = str(found) if found.exists() else shutil.which("kubernetes-validate")
    assert path, "kubernetes-validate is missing: pip install -e '.[test]'"
    return path


def _validate(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_validator(), "--strict", "--quiet", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_manifest_passes_kubernetes_validate_strict() -> None:
    files = manifest_files()
    assert len(files) >= 7, files
    result = _validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_kubernetes_validate_strict_rejects_an_unknown_field(tmp_path: Path) -> None:
    # The check above can fail: a field the schema does not have is an error under --strict.
    docs = list(yaml.safe_load_all((KUBERNETES / "faas" / "gateway.yaml").read_text()))
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    broken = tmp_path / "gateway.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    result = _validate(broken)
    assert result.returncode != 0
    assert "readinessProbes" in result.stdout + result.stderr


def test_container_args_are_flags_faas_serve_accepts() -> None:
    seen = set()
    for workload, container in faas_containers():
        args = container["args"]
        assert args[0] == "serve", f"{workload['metadata']['name']}: {args}"
        parsed = parse_serve(args)
        seen.add(parsed.role)
        defined = {e["name"] for e in container.get("env", [])}
        for arg in args:
            for name in ENV_REFERENCE.findall(arg):
                assert name in defined, f"{workload['metadata']['name']}: $({name}) is not in its env"
    assert seen == {"gateway", "invoker"}


def test_invoker_is_privileged_root_with_the_nodes_cgroup2() -> None:
    invoker = resource("DaemonSet", "faas-invoker")
    spec = pod_spec(invoker)
    (container,) = spec["containers"]
    context = container["securityContext"]
    # Privileged: the runtime mounts the node's cgroup2 hierarchy read-write
    # at /sys/fs/cgroup, rooted at the container's cgroup.
    assert context["privileged"] is True
    assert context.get("runAsUser", 0) == 0 and not context.get("runAsNonRoot", False)
    # A hostPath over it would make the server's cgroup read as the node's
    # root (its cgroup namespace), putting sandboxes outside the pod.
    host_paths = {v["name"] for v in spec.get("volumes", []) if "hostPath" in v}
    for mount in container.get("volumeMounts", []):
        assert not (mount["mountPath"].startswith("/sys") and mount["name"] in host_paths), mount
    assert not spec.get("hostNetwork", False)
    # Pod Security Admission refuses privileged pods in a namespace not labelled so.
    labels = resource("Namespace", invoker["metadata"]["namespace"])["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_invoker_advertises_its_pod_ip_and_port() -> None:
    (container,) = pod_spec(resource("DaemonSet", "faas-invoker"))["containers"]
    args = container["args"]
    port = flag_value(args, "--port")
    assert flag_value(args, "--advertise") == f"$(POD_IP):{port}"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert [p["containerPort"] for p in container["ports"]] == [int(port)]


@pytest.mark.parametrize("kind, name", [("Deployment", "faas-gateway"), ("DaemonSet", "faas-invoker")])
def test_probes_point_at_readyz_and_healthz_on_the_served_port(kind: str, name: str) -> None:
    (container,) = pod_spec(resource(kind, name))["containers"]
    port = int(flag_value(container["args"], "--port"))
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            target = container[probe]["httpGet"]["port"]
            assert named.get(target, target) == port, f"{name} {probe} port {target}"


@pytest.mark.parametrize("kind, name", [("Deployment", "faas-gateway"), ("DaemonSet", "faas-invoker")])
def test_grace_period_matches_shutdown_timeout(kind: str, name: str, tmp_path: Path) -> None:
    workload = resource(kind, name)
    spec = pod_spec(workload)
    (container,) = spec["containers"]
    text = configmap_file(
        flag_value(container["args"], "--config"), spec["volumes"], container["volumeMounts"]
    )
    config_file = tmp_path / "config.toml"
    config_file.write_text(text)
    # Every key of the mounted file is one the server knows, of the right kind.
    shutdown_timeout_s = load(str(config_file)).shutdown_timeout_s
    assert "shutdown_timeout_s" in tomllib.loads(text), "set it where the grace period can follow it"
    grace = spec["terminationGracePeriodSeconds"]
    low, high = TEARDOWN_MARGIN_S
    assert shutdown_timeout_s + low <= grace <= shutdown_timeout_s + high, (grace, shutdown_timeout_s)


def test_gateway_deployment_and_service() -> None:
    gateway = resource("Deployment", "faas-gateway")
    assert gateway["spec"]["replicas"] == 2
    (container,) = pod_spec(gateway)["containers"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    service = resource("Service", "faas-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    named = {p["name"] for p in container["ports"]}
    assert all(p["targetPort"] in named for p in service["spec"]["ports"])
    budget = resource("PodDisruptionBudget", "faas-gateway")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < budget["minAvailable"] < gateway["spec"]["replicas"]


def test_every_secret_and_configmap_reference_exists() -> None:
    secrets = {r["metadata"]["name"]: r for r in resources() if r["kind"] == "Secret"}
    for r in resources():
        if r["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        spec = pod_spec(r)
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (r["metadata"]["name"], ref)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                resource("ConfigMap", volume["configMap"]["name"])


def test_only_gateways_reach_the_invokers_port() -> None:
    policy = resource("NetworkPolicy", "faas-invoker")
    invoker = resource("DaemonSet", "faas-invoker")
    gateway = resource("Deployment", "faas-gateway")
    (container,) = pod_spec(invoker)["containers"]
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= invoker["spec"]["template"]["metadata"]["labels"].items()
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert (
        source["podSelector"]["matchLabels"].items()
        <= gateway["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [p["port"] for p in rule["ports"]] == [int(flag_value(container["args"], "--port"))]


@pytest.mark.parametrize("name, port", [("postgres", 5432), ("nats", 4222)])
def test_only_faas_pods_reach_postgres_and_nats(name: str, port: int) -> None:
    policy = resource("NetworkPolicy", name)
    labels = resource("StatefulSet", name)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    for workload in (resource("Deployment", "faas-gateway"), resource("DaemonSet", "faas-invoker")):
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert source["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for p in rule["ports"]] == [port]


def test_nats_runs_jetstream_on_a_volume() -> None:
    nats = resource("StatefulSet", "nats")
    (container,) = pod_spec(nats)["containers"]
    args = container["args"]
    assert "-js" in args
    store = flag_value(args, "-sd")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in nats["spec"]["volumeClaimTemplates"]}
    assert mounts[store] in claims


def test_kustomizations_list_every_manifest() -> None:
    for path in kustomization_files():
        listed = yaml.safe_load(path.read_text())["resources"]
        for entry in listed:
            assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"
        here = {p.name for p in path.parent.glob("*.yaml") if p.name != KUSTOMIZATION}
        subdirs = {p.name for p in path.parent.iterdir() if (p / KUSTOMIZATION).exists()}
        assert here | subdirs == set(listed), f"{path} lists {sorted(listed)}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
@pytest.mark.parametrize("directory, count", [(".", 14), ("faas", 8)])
def test_kustomize_renders_the_resources(directory: str, count: int) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(rendered) == count
    assert all(d["metadata"].get("namespace", "faas") == "faas" for d in rendered)
