"""deploy/ against the real API server: every overlay and the demo pass server-side validation, and the
ServiceAccounts the manifests create can make exactly the API calls the server's code makes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigil_testing.controlplane import ControlPlane, ControlPlaneError
from sigil_testing.issuer import running_issuer
from sigil_testing.operator import DEPLOY, run_kubectl
from sigil_testing.waiting import eventually

from sigil.issuer.policies.foreign_crds import FOREIGN_KINDS
from sigil.issuer.settings import load_server_settings

pytestmark = pytest.mark.kube

_SYSTEM = "sigil-system"
_IDENTITY_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
}

# Every Kubernetes call sigil-server makes (sigil.issuer.kube.api and its callers): TokenReview, the pod cache's
# list+watch and the GET behind node authorization, node GETs, the namespace and policy informers, the policy
# status it writes, and the bundle ConfigMap it patches in its own namespace.
_SERVER_CALLS = [
    ("create", "tokenreviews.authentication.k8s.io", ()),
    ("get", "pods", ("-n", "anywhere")),
    ("list", "pods", ("-A",)),
    ("watch", "pods", ("-A",)),
    ("get", "nodes", ()),
    ("list", "namespaces", ()),
    ("watch", "namespaces", ()),
    ("list", "authorizationpolicies.authz.sigil.dev", ("-A",)),
    ("watch", "authorizationpolicies.authz.sigil.dev", ("-A",)),
    ("list", "clusterauthorizationpolicies.authz.sigil.dev", ()),
    ("watch", "clusterauthorizationpolicies.authz.sigil.dev", ()),
    ("patch", "authorizationpolicies.authz.sigil.dev", ("-A", "--subresource=status")),
    ("patch", "clusterauthorizationpolicies.authz.sigil.dev", ("--subresource=status",)),
    ("get", "configmaps/sigil-bundle", ("-n", _SYSTEM)),
    ("patch", "configmaps/sigil-bundle", ("-n", _SYSTEM)),
    # Every foreign kind the issuer follows (their plurals are the kinds' lower case, English plural).
    *(
        (verb, f"{re.sub('y$', 'ie', kind.lower())}s.{group}", ("-A",))
        for group, kinds in FOREIGN_KINDS.items()
        for kind in kinds
        for verb in ("list", "watch")
    ),
]
_OUTSIDE = [
    ("list", "secrets", ("-A",)),
    ("get", "secrets", ("-n", _SYSTEM)),
    ("delete", "pods", ("-n", "anywhere")),
    ("create", "pods", ("-n", _SYSTEM)),
    ("patch", "nodes", ()),
    ("list", "nodes", ()),
    ("get", "namespaces", ()),
    ("update", "configmaps/sigil-bundle", ("-n", _SYSTEM)),
    ("get", "configmaps/sigil-server-config", ("-n", _SYSTEM)),
    ("create", "serviceaccounts/token", ("-n", _SYSTEM)),
    ("patch", "authorizationpolicies.authz.sigil.dev", ("-A",)),
    ("create", "clusterauthorizationpolicies.authz.sigil.dev", ()),
    ("patch", "configmaps/sigil-bundle", ("-n", "kube-system")),
    ("patch", "configmaps/sigil-server-config", ("-n", _SYSTEM)),
    ("create", "configmaps", ("-n", _SYSTEM)),
    ("create", "authorizationpolicies.security.istio.io", ("-n", "anywhere")),
    ("patch", "servers.policy.linkerd.io", ("-n", "anywhere")),
    ("delete", "authorizationpolicies.policy.linkerd.io", ("-n", "anywhere")),
]


def _rendered(path: str, plane: ControlPlane) -> list[dict[str, Any]]:
    built = run_kubectl(plane, "kustomize", str(DEPLOY / path))
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def _ensure_namespace(plane: ControlPlane, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    try:
        plane.request("POST", "/api/v1/namespaces", body)
    except ControlPlaneError as err:
        if "HTTP 409" not in str(err):  # already there, from an earlier test of the session
            raise


@pytest.mark.parametrize(
    "path", ["kustomize/overlays/single", "kustomize/overlays/ha", "kind/demo", "kind/demo-envoy"]
)
def test_manifests_pass_server_side_dry_run(policy_crds: ControlPlane, path: str) -> None:
    """Each overlay and the demo are accepted by the API server's own validation and admission (dry run)."""
    objects = _rendered(path, policy_crds)
    for obj in objects:
        if obj["kind"] == "Namespace":
            _ensure_namespace(policy_crds, obj["metadata"]["name"])
    applied = run_kubectl(
        policy_crds, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(objects)
    )
    assert applied.returncode == 0, applied.stderr
    assert "(server dry run)" in applied.stdout


@pytest.fixture(scope="module")
def identities(policy_crds: ControlPlane) -> dict[str, str]:
    """The base's namespace, ServiceAccounts and RBAC applied for real; a TokenRequest token for each account."""
    objects = [o for o in _rendered("kustomize/base", policy_crds) if o["kind"] in _IDENTITY_KINDS]
    applied = run_kubectl(
        policy_crds, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(objects)
    )
    assert applied.returncode == 0, applied.stderr
    tokens = {}
    for account in ("sigil-server", "sigil-agent"):
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
        path = f"/api/v1/namespaces/{_SYSTEM}/serviceaccounts/{account}/token"
        tokens[account] = policy_crds.request("POST", path, request)["status"]["token"]
    return tokens


_NOT_INSTALLED = tuple(FOREIGN_KINDS)


def _can(plane: ControlPlane, token: str, verb: str, resource: str, flags: tuple[str, ...]) -> bool:
    """``kubectl auth can-i`` asked with the account's own token (a SelfSubjectAccessReview).

    kubectl maps ``plural.group`` through discovery, so for the groups whose CRDs this cluster does not have
    (Istio's, Linkerd's) the review is written out and created directly, still with the account's token."""
    plural, _, group = resource.partition(".")
    if group in _NOT_INSTALLED:
        namespace = flags[flags.index("-n") + 1] if "-n" in flags else ""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "verb": verb,
                    "group": group,
                    "resource": plural,
                    "namespace": namespace,
                }
            },
        }
        done = run_kubectl(
            plane,
            f"--token={token}",
            "create",
            "--validate=false",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.allowed}",
            stdin=json.dumps(review),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip() == "true"
    done = run_kubectl(plane, f"--token={token}", "auth", "can-i", verb, resource, *flags)
    assert done.stdout.strip() in {"yes", "no"}, done.stderr
    return done.stdout.strip() == "yes"


def test_the_server_account_may_make_every_call_it_makes(
    policy_crds: ControlPlane, identities: dict[str, str]
) -> None:
    """sigil-server's own token is allowed each API call its code makes."""
    token = identities["sigil-server"]
    refused = [c for c in _SERVER_CALLS if not _can(policy_crds, token, *c)]
    assert refused == [], refused


def test_the_server_account_may_do_nothing_else(
    policy_crds: ControlPlane, identities: dict[str, str]
) -> None:
    """Calls outside that list (secrets, deleting pods, other ConfigMaps, writing policy specs) are forbidden."""
    token = identities["sigil-server"]
    allowed = [c for c in _OUTSIDE if _can(policy_crds, token, *c)]
    assert allowed == []


def test_the_agent_account_may_do_nothing(
    policy_crds: ControlPlane, identities: dict[str, str]
) -> None:
    """The agent has no RBAC: none of the server's calls, nor anything else, is allowed to its token."""
    token = identities["sigil-agent"]
    allowed = [c for c in _SERVER_CALLS + _OUTSIDE if _can(policy_crds, token, *c)]
    assert allowed == []


async def test_the_server_runs_on_the_manifests_config_with_only_its_own_rbac(
    policy_crds: ControlPlane,
    identities: dict[str, str],
    namespace: str,
    tmp_path: Path,
    short_tmp: Path,
) -> None:
    """sigil-server on the base's ConfigMap and its own token (the only change: a kubeconfig instead of the pod's
    mount) becomes ready, publishes the bundle ConfigMap and writes a policy's status."""
    objects = _rendered("kustomize/base", policy_crds)
    bundle = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sigil-bundle"
    ]
    applied = run_kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump_all(bundle))
    assert applied.returncode == 0, applied.stderr
    (configmap,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sigil-server-config"
    ]
    config = yaml.safe_load(configmap["data"]["sigil.yaml"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": policy_crds.url,
                            "certificate-authority": str(policy_crds.ca_file),
                        },
                    }
                ],
                "users": [{"name": "sigil-server", "user": {"token": identities["sigil-server"]}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sigil-server"}}],
                "current-context": "c",
            }
        )
    )
    kube = config["server"]["kubernetes"]
    del kube["in_cluster"]
    # In a pod these come from the mounted ServiceAccount: its token and CA, and its namespace file.
    kube["kubeconfig"] = str(kubeconfig)
    kube["bundle_configmap_namespace"] = _SYSTEM
    config["data_dir"] = str(tmp_path / "data")
    config["server"]["listen"] = "127.0.0.1:0"
    config["server"]["admin_socket"] = str(short_tmp / "a.sock")
    (tmp_path / "sigil.yaml").write_text(yaml.safe_dump(config))
    settings = load_server_settings(tmp_path / "sigil.yaml")
    policy = {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Pod", "selector": {}}],
            "action": "ALLOW",
            "enforcementLevel": "Network",
            "rules": [{"sources": [{"type": "ServiceAccount", "serviceAccount": {"name": "web"}}]}],
        },
    }
    path = f"/apis/authz.sigil.dev/v1alpha1/namespaces/{namespace}/authorizationpolicies/web"
    async with running_issuer(settings) as server:
        assert server.issuer.ready
        await asyncio.to_thread(
            run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(policy)
        )

        async def written() -> list[dict[str, Any]] | None:
            """The policy's conditions once the server has published the bundle and judged the policy."""
            published = await asyncio.to_thread(
                policy_crds.request, "GET", f"/api/v1/namespaces/{_SYSTEM}/configmaps/sigil-bundle"
            )
            stored = await asyncio.to_thread(policy_crds.request, "GET", path)
            conditions = (stored.get("status") or {}).get("conditions") or []
            return conditions if "BEGIN CERTIFICATE" in published["data"]["bundle.pem"] else None

        # Polling the API server for the server's own writes.
        conditions = await eventually(
            written, what="the bundle published and the policy judged", within=15, interval=0.05
        )
    assert [(c["type"], c["status"]) for c in conditions] == [("Accepted", "True")]
