"""The deploy/ manifests, checked offline: they build, validate, grant exactly what is listed, and say what the
code reads (config keys, ports, paths, audiences, socket locations)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from sigil_testing.binaries import envoy, kubectl

from sigil.enforcer.cli import build_parser
from sigil.enforcer.policy.store import PolicyStore
from sigil.issuer.edge.routes.health import routes as health_routes
from sigil.issuer.settings import load_server_settings
from sigil.node_agent.settings import load_agent_settings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("single", "ha")
KUBERNETES_VERSION = "1.33.0"

Obj = dict[str, Any]


def _kustomize(path: Path) -> list[Obj]:
    result = subprocess.run(  # noqa: S603 - a fixed command on our own files
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    built = {name: _kustomize(DEPLOY / "kustomize" / "overlays" / name) for name in OVERLAYS}
    built["demo"] = _kustomize(DEPLOY / "kind" / "demo")
    built["demo-envoy"] = _kustomize(DEPLOY / "kind" / "demo-envoy")
    return built


def _find(objs: list[Obj], kind: str, name: str) -> Obj:
    for obj in objs:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind}/{name} in the rendered manifests")


def _container(workload: Obj, name: str) -> Obj:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _volumes(workload: Obj) -> dict[str, Obj]:
    return {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}


def _mounts(container: Obj) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def _write_config(objs: list[Obj], configmap: str, key: str, tmp_path: Path) -> Path:
    path = tmp_path / key
    path.write_text(_find(objs, "ConfigMap", configmap)["data"][key])
    return path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_build_with_everything_sigil_needs(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """Each overlay renders the CRDs, RBAC, server Deployment, Service, PDB and agent DaemonSet."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered[overlay]}
    for expected in [
        ("CustomResourceDefinition", "authorizationpolicies.authz.sigil.dev"),
        ("CustomResourceDefinition", "clusterauthorizationpolicies.authz.sigil.dev"),
        ("Deployment", "sigil-server"),
        ("Service", "sigil-server"),
        ("PodDisruptionBudget", "sigil-server"),
        ("DaemonSet", "sigil-agent"),
        ("ConfigMap", "sigil-bundle"),
    ]:
        assert expected in kinds
    replicas = _find(rendered[overlay], "Deployment", "sigil-server")["spec"]["replicas"]
    assert replicas == (1 if overlay == "single" else 2)


def _all_objects(rendered: dict[str, list[Obj]]) -> Iterator[tuple[str, Obj]]:
    for name, objs in rendered.items():
        for obj in objs:
            yield name, obj


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[Obj]],
) -> None:
    """Every rendered object passes strict schema validation (unknown fields are errors)."""
    for where, obj in _all_objects(rendered):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where}: {obj['kind']}/{obj['metadata']['name']}: {err.message}")


def _rules(
    obj: Obj,
) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    return [
        (
            tuple(r.get("apiGroups", [])),
            tuple(r.get("resources", [])),
            tuple(r.get("verbs", [])),
            tuple(r.get("resourceNames", [])),
        )
        for r in obj["rules"]
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_is_exactly_what_is_listed(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """The server and agent get exactly the listed rules, no wildcards, no cluster-admin."""
    objs = rendered[overlay]
    assert _rules(_find(objs, "ClusterRole", "sigil-server")) == [
        (("authentication.k8s.io",), ("tokenreviews",), ("create",), ()),
        (("",), ("pods",), ("get", "list", "watch"), ()),
        (("",), ("nodes",), ("get",), ()),
        (("",), ("namespaces",), ("list", "watch"), ()),
        (
            ("authz.sigil.dev",),
            ("authorizationpolicies", "clusterauthorizationpolicies"),
            ("list", "watch"),
            (),
        ),
        (
            ("authz.sigil.dev",),
            ("authorizationpolicies/status", "clusterauthorizationpolicies/status"),
            ("patch",),
            (),
        ),
        (("security.istio.io",), ("authorizationpolicies",), ("list", "watch"), ()),
        (
            ("policy.linkerd.io",),
            (
                "servers",
                "authorizationpolicies",
                "meshtlsauthentications",
                "networkauthentications",
                "serverauthorizations",
                "httproutes",
            ),
            ("list", "watch"),
            (),
        ),
    ]
    assert _rules(_find(objs, "Role", "sigil-server-bundle")) == [
        (("",), ("configmaps",), ("get", "patch"), ("sigil-bundle",))
    ]
    assert _find(objs, "Role", "sigil-server-bundle")["metadata"]["namespace"] == "sigil-system"
    roles = [o for o in objs if o["kind"] in {"Role", "ClusterRole"}]
    assert sorted(r["metadata"]["name"] for r in roles) == ["sigil-server", "sigil-server-bundle"]
    for role in roles:
        for group, resources, verbs, _ in _rules(role):
            assert "*" not in group + resources + verbs
    for binding in (o for o in objs if o["kind"] in {"RoleBinding", "ClusterRoleBinding"}):
        assert binding["roleRef"]["name"] in {"sigil-server", "sigil-server-bundle"}
        assert all(s["name"] != "sigil-agent" for s in binding["subjects"])
    # The agent reads no Kubernetes object (its node's pods come from the issuer), so it gets no API token.
    assert _find(objs, "ServiceAccount", "sigil-agent")["automountServiceAccountToken"] is False
    assert (
        _find(objs, "DaemonSet", "sigil-agent")["spec"]["template"]["spec"][
            "automountServiceAccountToken"
        ]
        is False
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_config_is_what_the_server_reads(
    rendered: dict[str, list[Obj]], overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered server ConfigMap loads with the real loader, and its port, audience and names match."""
    monkeypatch.delenv("SIGIL_DATABASE_URL", raising=False)
    objs = rendered[overlay]
    settings = load_server_settings(
        _write_config(objs, "sigil-server-config", "sigil.yaml", tmp_path)
    )
    deployment = _find(objs, "Deployment", "sigil-server")
    server = _container(deployment, "server")
    assert server["args"][-2:] == ["--config", "/etc/sigil/sigil.yaml"]
    assert _mounts(server)["config"] == "/etc/sigil"
    port = settings.server.port
    assert server["ports"] == [{"name": "api", "containerPort": port}]
    service = _find(objs, "Service", "sigil-server")
    assert service["spec"]["ports"][0]["port"] == port
    assert str(settings.data_dir) == _mounts(server)["data"]
    kube = settings.server.kubernetes
    assert kube is not None
    assert kube.in_cluster
    agent_token = _volumes(_find(objs, "DaemonSet", "sigil-agent"))["agent-token"]
    projected = agent_token["projected"]["sources"][0]["serviceAccountToken"]
    assert projected["audience"] == kube.agent_audience
    assert projected["expirationSeconds"] <= 3600
    assert ("sigil-system", "sigil-agent") in {
        (a.namespace, a.name) for a in kube.agent_service_accounts
    }
    assert kube.bundle_configmap == "sigil-bundle"
    if overlay == "ha":
        assert settings.ca.key_store == "database"
        kek_mount = _mounts(server)["kek"]
        assert str(settings.ca.key_encryption_key_file).startswith(kek_mount + "/")
        env = {e["name"]: e for e in server["env"]}
        assert env["SIGIL_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "sigil-postgres"
    else:
        assert settings.ca.effective_database_url.startswith("sqlite")
        assert "persistentVolumeClaim" in _volumes(deployment)["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_real_health_endpoints(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """The server's probes call paths the issuer serves, over HTTPS on its API port."""
    served = {route.path for route in health_routes}  # type: ignore[attr-defined]
    server = _container(_find(rendered[overlay], "Deployment", "sigil-server"), "server")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/live")):
        http = server[probe]["httpGet"]
        assert http == {"path": path, "port": "api", "scheme": "HTTPS"}
        assert path in served


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_config_is_what_the_agent_reads(
    rendered: dict[str, list[Obj]], overlay: str, tmp_path: Path
) -> None:
    """The agent ConfigMap loads with the real loader; socket, token, bundle and server address line up."""
    objs = rendered[overlay]
    settings = load_agent_settings(
        _write_config(objs, "sigil-agent-config", "agent.yaml", tmp_path), node_name="kind-worker"
    )
    daemonset = _find(objs, "DaemonSet", "sigil-agent")
    agent = _container(daemonset, "agent")
    mounts = _mounts(agent)
    volumes = _volumes(daemonset)
    assert daemonset["spec"]["template"]["spec"]["hostPID"] is True
    assert str(settings.socket_path.parent) == mounts["socket-dir"]
    assert volumes["socket-dir"]["hostPath"]["path"] == mounts["socket-dir"]
    token = volumes["agent-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert settings.attestation.method == "k8s"
    assert settings.event_loop == "uvloop"  # the image installs sigil[uvloop] (deploy/Dockerfile)
    assert str(settings.attestation.token_path) == f"{mounts['agent-token']}/{token['path']}"
    assert settings.trust_bundle_path is not None
    assert settings.trust_bundle_path.parent == Path(mounts["bundle"])
    assert volumes["bundle"]["configMap"]["name"] == "sigil-bundle"
    assert settings.trust_bundle_path.name in _find(objs, "ConfigMap", "sigil-bundle")["data"]
    assert str(settings.data_dir) == mounts["state"]
    assert settings.health_listen is not None
    health_port = int(settings.health_listen.rsplit(":", 1)[1])
    assert agent["ports"] == [{"name": "health", "containerPort": health_port}]
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/live")):
        assert agent[probe]["httpGet"] == {"path": path, "port": "health"}
    env = {e["name"]: e for e in agent["env"]}
    assert env["SIGIL_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    url = urlsplit(settings.issuer_url)
    service = _find(objs, "Service", "sigil-server")
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert url.port == service["spec"]["ports"][0]["port"]
    server_settings = yaml.safe_load(
        _find(objs, "ConfigMap", "sigil-server-config")["data"]["sigil.yaml"]
    )
    assert url.hostname in server_settings["server"]["dns_names"]
    assert settings.trust_domain.name == server_settings["trust_domain"]


def test_demo_policy_and_proxies_are_what_the_enforcer_reads(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    """The demo policy parses with the enforcer's parser, and its proxies' flags with the real CLI."""

    objs = rendered["demo"]
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "policy.yaml").write_text(
        _find(objs, "ConfigMap", "backend-policies")["data"]["policy.yaml"]
    )
    store = PolicyStore()
    report = store.load_directory(policy_dir)
    assert report.ok, report.errors
    assert len(store.current.policies) == 1
    parser: argparse.ArgumentParser = build_parser()
    backend = _find(objs, "Deployment", "backend")
    inbound = parser.parse_args(_container(backend, "proxy")["args"][1:])
    assert inbound.mode == "inbound"
    assert str(inbound.port) == "9443"
    assert _mounts(_container(backend, "proxy"))["policies"] == str(inbound.policies)
    for caller in ("frontend", "intruder"):
        outbound = parser.parse_args(
            _container(_find(objs, "Deployment", caller), "proxy")["args"][1:]
        )
        assert outbound.expect_id == "spiffe://example.org/ns/demo/sa/backend"


def test_envoy_demo_wires_envoy_sds_and_ext_authz_as_the_code_reads_them(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    """In the Envoy variant, the policy parses, the ext-authz sidecar's flags parse with the real CLI, Envoy's
    sockets are the ones mounted (the agent's, and the one ext-authz listens on), and SDS asks for the
    resources SPIRE names (``default``, ``ROOTCA``)."""
    objs = rendered["demo-envoy"]
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "policy.yaml").write_text(
        _find(objs, "ConfigMap", "backend-policies")["data"]["policy.yaml"]
    )
    report = PolicyStore().load_directory(policy_dir)
    assert report.ok, report.errors
    backend = _find(objs, "Deployment", "backend")
    authz = build_parser().parse_args(_container(backend, "ext-authz")["args"][1:])
    assert _mounts(_container(backend, "ext-authz"))["policies"] == str(authz.policies)
    assert (authz.namespace, authz.labels, authz.port) == ("demo-envoy", "app=backend", 9443)
    envoy = yaml.safe_load(_find(objs, "ConfigMap", "backend-envoy")["data"]["envoy.yaml"])
    pipes = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        for c in envoy["static_resources"]["clusters"]
    }
    envoy_mounts = _mounts(_container(backend, "envoy"))
    assert Path(pipes["sigil_ext_authz"]["pipe"]["path"]) == authz.listen
    assert Path(envoy_mounts["authz-socket"]) == authz.listen.parent
    assert pipes["sigil_agent"]["pipe"]["path"] == envoy_mounts["sigil-socket"] + "/agent.sock"
    (listener,) = envoy["static_resources"]["listeners"]
    chain = listener["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert [s["name"] for s in tls["tls_certificate_sds_secret_configs"]] == ["default"]
    assert tls["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert chain["filters"][0]["name"] == "envoy.filters.network.ext_authz"
    assert listener["address"]["socket_address"]["port_value"] == authz.port


def test_envoy_demo_config_is_accepted_by_envoy(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    """The sidecar's envoy.yaml passes the pinned Envoy's own validation (``--mode validate``)."""
    config = tmp_path / "envoy.yaml"
    config.write_text(
        _find(rendered["demo-envoy"], "ConfigMap", "backend-envoy")["data"]["envoy.yaml"]
    )
    result = subprocess.run(  # noqa: S603 - the pinned Envoy on our own file
        [envoy(), "--mode", "validate", "--config-path", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_demo_backends_probes_go_through_its_proxys_probe_paths(
    rendered: dict[str, list[Obj]],
) -> None:
    """Every kubelet probe of the backend is an httpGet of a --probe-path on the proxy's own (mTLS) port, and
    the application serves that path."""
    backend = _find(rendered["demo"], "Deployment", "backend")
    proxy = _container(backend, "proxy")
    inbound = build_parser().parse_args(proxy["args"][1:])
    ports = {port["name"]: port["containerPort"] for port in proxy["ports"]}
    probes = [proxy[kind] for kind in ("readinessProbe", "livenessProbe")]
    for probe in probes:
        assert probe["httpGet"]["path"] in inbound.probe_path
        assert ports[probe["httpGet"]["port"]] == inbound.listen.port
    content = _find(rendered["demo"], "ConfigMap", "backend-content")["data"]
    assert {path.lstrip("/") for path in inbound.probe_path} <= set(content)


def test_scripts_pass_shellcheck() -> None:
    """deploy/kind/up.sh and down.sh pass shellcheck."""
    shellcheck = shutil.which("shellcheck") or str(
        Path(__import__("sys").executable).parent / "shellcheck"
    )
    scripts = [str(DEPLOY / "kind" / name) for name in ("up.sh", "down.sh")]
    result = subprocess.run([shellcheck, *scripts], capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout


def test_image_is_multi_stage_and_runs_unprivileged() -> None:
    """The Dockerfile builds in one stage, runs from a slim one, as a non-root user."""
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user
    assert user[-1].split(":")[0] not in {"0", "root"}
