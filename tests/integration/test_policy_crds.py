"""The ``authz.sigil.dev`` CRDs on the real API server: what it accepts, refuses and prunes, and the status the
real issuer writes back on every policy it watches."""

from __future__ import annotations

import asyncio
import copy
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigil_testing.controlplane import ControlPlane, ControlPlaneError
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer
from sigil_testing.operator import DEPLOY, run_kubectl
from sigil_testing.waiting import eventually

from sigil.enforcer.policy import AuthorizationPolicy, parse_policy
from sigil.enforcer.policy.origin import policy_revision
from sigil.issuer.kube import KubeApi
from sigil.issuer.policies.crd_status import write_statuses
from sigil.issuer.settings import PolicySettings

pytestmark = pytest.mark.kube

_README = Path(__file__).resolve().parents[2] / "README.md"
_GROUP = "/apis/authz.sigil.dev/v1alpha1"


def _readme_policies() -> list[dict[str, Any]]:
    """The YAML example of the README's "Authorization policy" section, every document of it."""
    text = _README.read_text()
    section = text[text.index("## Authorization policy") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [d for d in yaml.safe_load_all(block.group(1)) if d]


def _demo_policies() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kind/demo/policy.yaml").read_text()) if d]


def _placed(document: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The document in the test's namespace (namespaced) or under a unique name (cluster-scoped)."""
    placed = copy.deepcopy(document)
    if placed["kind"] == "AuthorizationPolicy":
        placed["metadata"]["namespace"] = namespace
    else:
        placed["metadata"]["name"] += f"-{namespace}"
    return placed


def _allow(namespace: str, name: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Pod", "selector": {}}],
            "action": "ALLOW",
            "enforcementLevel": "Network",
            "rules": [rule],
        },
    }


def _web_source(spiffe: str) -> dict[str, Any]:
    return {
        "sources": [
            {"type": "ServiceAccount", "serviceAccount": {"name": "web"}},
            {"type": "SPIFFE", "spiffe": spiffe},
        ],
        "networkAttributes": {"ports": [5432]},
    }


@pytest.mark.parametrize("examples", [_readme_policies, _demo_policies], ids=["readme", "demo"])
def test_documented_policies_are_accepted(
    policy_crds: ControlPlane, namespace: str, examples: Callable[[], list[dict[str, Any]]]
) -> None:
    """The README's and the demo's policies apply with the pinned kubectl and read back unchanged."""
    documents = [_placed(d, namespace) for d in examples()]
    applied = run_kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert applied.returncode == 0, applied.stderr
    for document in documents:
        meta = document["metadata"]
        plural = (
            f"namespaces/{namespace}/authorizationpolicies"
            if document["kind"] == "AuthorizationPolicy"
            else "clusterauthorizationpolicies"
        )
        stored = policy_crds.request("GET", f"{_GROUP}/{plural}/{meta['name']}")
        assert stored["spec"] == document["spec"]  # nothing pruned, nothing defaulted


def test_kubectl_refuses_a_misspelled_field(policy_crds: ControlPlane, namespace: str) -> None:
    """kubectl asks for strict field validation: a misspelled ``sources`` is refused by name, nothing stored."""
    typo = _allow(namespace, "typo", {"soruces": [{"type": "Any"}]})
    applied = run_kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(typo))
    assert applied.returncode != 0
    assert 'unknown field "spec.rules[0].soruces"' in applied.stderr
    listed = policy_crds.request("GET", f"{_GROUP}/namespaces/{namespace}/authorizationpolicies")
    assert listed["items"] == []


@pytest.mark.parametrize("validation", ["Ignore", "Warn"])
def test_a_lax_client_gets_pruning_and_the_cel_rule_still_refuses_an_empty_rule(
    policy_crds: ControlPlane, namespace: str, validation: str
) -> None:
    """Without strict validation the API server prunes unknown fields: a rule pruned to ``{}`` (which would match
    every peer) is still refused by the CRD's CEL rule, but a misspelled criterion beside a real one is dropped
    silently (only strict validation, kubectl's default, refuses it)."""
    collection = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies"
    query = f"?fieldValidation={validation}"
    empty = _allow(namespace, "empty", {"soruces": [{"type": "Any"}]})
    with pytest.raises(ControlPlaneError) as refused:
        policy_crds.request("POST", collection + query, empty)
    assert "HTTP 422" in str(refused.value)
    assert "a rule must name sources, notSources or networkAttributes" in str(refused.value)
    rule = {
        "sources": [{"type": "ServiceAccount", "serviceAccount": {"name": "web"}}],
        "networkAtributes": {"ports": [80]},
    }
    stored = policy_crds.request("POST", collection + query, _allow(namespace, "extra", rule))
    assert stored["spec"]["rules"] == [
        {"sources": [{"type": "ServiceAccount", "serviceAccount": {"name": "web"}}]}
    ]


def test_the_crds_are_structural_and_served_with_status(policy_crds: ControlPlane) -> None:
    """The API server reports no structural or CEL problem, and serves the status subresource for both."""
    for plural in ("authorizationpolicies", "clusterauthorizationpolicies"):
        crd = policy_crds.request(
            "GET",
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.authz.sigil.dev",
        )
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions.get("NonStructuralSchema", "False") == "False"
        (version,) = crd["spec"]["versions"]
        assert version["subresources"] == {"status": {}}
    resources = policy_crds.request("GET", _GROUP)["resources"]
    assert {r["name"] for r in resources} >= {
        "authorizationpolicies/status",
        "clusterauthorizationpolicies/status",
    }


async def _accepted(plane: ControlPlane, path: str, generation: int) -> dict[str, Any]:
    """The object's Accepted condition once it reports ``generation`` (a few seconds at most)."""

    async def accepted() -> dict[str, Any] | None:
        obj = await asyncio.to_thread(plane.request, "GET", path)
        for condition in (obj.get("status") or {}).get("conditions") or ():
            if condition["type"] == "Accepted" and condition["observedGeneration"] == generation:
                assert obj["metadata"]["generation"] == generation
                return dict(condition)
        return None

    # Polling the API server: the issuer's write is not ours to await.
    return await eventually(
        accepted, what=f"Accepted for generation {generation}", within=15, interval=0.05
    )


async def test_the_issuer_writes_whether_each_policy_is_in_force(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A valid policy reads Accepted=True; a version only Sigil refuses reads Accepted=False with the field and
    reason, and the last good version stays in force; ``kubectl get`` shows both."""
    good = _allow(namespace, "db", _web_source("spiffe://partner.org/billing/*"))
    # The schema's pattern lets a dot segment through; SPIFFE IDs forbid it, which only Sigil checks.
    bad = _allow(namespace, "db", _web_source("spiffe://partner.org/billing/../admin"))
    path = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies/db"
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    async with running_issuer(settings) as server, attested_agent(server) as agent:
        applied = await asyncio.to_thread(
            run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(good)
        )
        assert applied.returncode == 0, applied.stderr
        accepted = await _accepted(policy_crds, path, 1)
        assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
        update = await agent.policies()
        (in_force,) = [d for d in update.documents if d["metadata"] == good["metadata"]]

        applied = await asyncio.to_thread(
            run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(bad)
        )
        assert applied.returncode == 0, applied.stderr  # the API server takes it
        refused = await _accepted(policy_crds, path, 2)
        assert (refused["status"], refused["reason"]) == ("False", "Invalid")
        assert refused["message"].startswith("refused: spec.rules[0].sources[1].spiffe: expected")
        assert refused["message"].endswith("the last accepted version stays in force")
        update = await agent.policies()
        assert [d for d in update.documents if d["metadata"] == good["metadata"]] == [in_force]

        listed = await asyncio.to_thread(
            run_kubectl, policy_crds, "get", "authorizationpolicies", "-n", namespace
        )
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split()[:4] == ["NAME", "ACTION", "DRY-RUN", "ACCEPTED"]
        assert row.split()[:2] == ["db", "ALLOW"]
        assert "False" in row.split()

        cluster = f"quarantine-{secrets.token_hex(3)}"
        document = {
            "apiVersion": "authz.sigil.dev/v1alpha1",
            "kind": "ClusterAuthorizationPolicy",
            "metadata": {"name": cluster},
            "spec": {
                "tier": "Admin",
                "priority": 10,
                "namespaceSelector": {"matchLabels": {"env": "prod"}},
                "rules": [{"action": "Deny", "sources": [{"type": "Any"}]}],
            },
        }
        applied = await asyncio.to_thread(
            run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(document)
        )
        assert applied.returncode == 0, applied.stderr
        accepted = await _accepted(
            policy_crds, f"{_GROUP}/clusterauthorizationpolicies/{cluster}", 1
        )
        assert accepted["status"] == "True"


async def test_a_policy_a_file_overrides_reads_conflicted(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A valid CR whose kind and name a policy file already holds reads Accepted=False, Conflicted, naming the file."""
    document = _allow(namespace, "db", _web_source("spiffe://partner.org/billing/*"))
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "db.yaml").write_text(yaml.safe_dump(document))
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(directory=directory, poll_interval=timedelta(seconds=0.2)),
    )
    async with running_issuer(settings):
        applied = await asyncio.to_thread(
            run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(document)
        )
        assert applied.returncode == 0, applied.stderr
        path = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies/db"
        condition = await _accepted(policy_crds, path, 1)
    assert (condition["status"], condition["reason"]) == ("False", "Conflicted")
    assert str(directory / "db.yaml") in condition["message"]


async def test_a_replica_judging_an_older_version_writes_nothing(
    policy_crds: ControlPlane, namespace: str
) -> None:
    """A status computed from a version that has since changed is refused by the API server (409), and one equal
    to what the object already says is not written at all: replicas can neither overwrite nor loop."""
    document = _allow(namespace, "db", _web_source("spiffe://partner.org/billing/*"))
    collection = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies"
    old = await asyncio.to_thread(policy_crds.request, "POST", collection, document)
    resource = ("authz.sigil.dev", "v1alpha1", "authorizationpolicies")
    condition = {
        "type": "Accepted",
        "status": "True",
        "reason": "Accepted",
        "message": "in force",
        "observedGeneration": 1,
    }
    api = KubeApi.from_kubeconfig(policy_crds.kubeconfig)
    try:
        await write_statuses(
            api, resource, {(namespace, "db"): (condition, old)}, now=lambda: datetime.now(UTC)
        )
        written = await asyncio.to_thread(policy_crds.request, "GET", f"{collection}/db")
        assert written["status"]["conditions"][0]["status"] == "True"
        stale = {**condition, "status": "False", "reason": "Invalid", "message": "refused: x"}
        await write_statuses(
            api, resource, {(namespace, "db"): (stale, old)}, now=lambda: datetime.now(UTC)
        )
        await write_statuses(
            api, resource, {(namespace, "db"): (condition, written)}, now=lambda: datetime.now(UTC)
        )
    finally:
        await api.aclose()
    after = await asyncio.to_thread(policy_crds.request, "GET", f"{collection}/db")
    assert after["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    assert after["status"] == written["status"]


def test_a_status_out_of_the_condition_schema_is_refused(
    policy_crds: ControlPlane, namespace: str
) -> None:
    """The status subresource takes Kubernetes conditions only: a condition status other than True, False or
    Unknown, or one without a reason, is refused by the API server."""
    document = _allow(namespace, "db", _web_source("spiffe://partner.org/billing/*"))
    collection = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies"
    stored = policy_crds.request("POST", collection, document)
    condition = {
        "type": "Accepted",
        "status": "True",
        "reason": "Accepted",
        "message": "in force",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    for bad in (
        {**condition, "status": "Maybe"},
        {k: v for k, v in condition.items() if k != "reason"},
    ):
        with pytest.raises(ControlPlaneError) as refused:
            policy_crds.request(
                "PUT", f"{collection}/db/status", {**stored, "status": {"conditions": [bad]}}
            )
        assert "HTTP 422" in str(refused.value)
    written = policy_crds.request(
        "PUT", f"{collection}/db/status", {**stored, "status": {"conditions": [condition]}}
    )
    assert written["status"]["conditions"] == [condition]


def _rule_with(**fields: Any) -> dict[str, Any]:
    return {"sources": [{"type": "Any"}], **fields}


def test_every_section_seven_one_field_is_stored_as_written(
    policy_crds: ControlPlane, namespace: str
) -> None:
    """Authenticated, SameNamespace and Namespaces sources, ports: [], portRanges and CIDR blocks (IPv4 and IPv6)
    apply with kubectl and read back unchanged, for both kinds."""
    rule = {
        "sources": [
            {"type": "Authenticated", "authenticated": {"trustDomains": ["partner.org"]}},
            {"type": "Authenticated"},
            {"type": "SameNamespace"},
            {"type": "Namespaces", "namespaces": {"selector": {"matchLabels": {"env": "prod"}}}},
        ],
        "networkAttributes": {
            "ports": [],
            "portRanges": [{"start": 8000, "end": 8100}],
            "sourceCIDRs": ["10.0.0.0/8", "fd00::/8"],
            "exceptSourceCIDRs": ["10.9.0.0/16"],
        },
    }
    cluster = {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "ClusterAuthorizationPolicy",
        "metadata": {"name": f"isolate-{namespace}"},
        "spec": {
            "tier": "Admin",
            "priority": 5,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "rules": [{"action": "Pass", **rule}, {"action": "Deny", "sources": [{"type": "Any"}]}],
        },
    }
    documents = [_allow(namespace, "everything", rule), cluster]
    applied = run_kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert applied.returncode == 0, applied.stderr
    stored = policy_crds.request(
        "GET", f"{_GROUP}/namespaces/{namespace}/authorizationpolicies/everything"
    )
    assert stored["spec"] == documents[0]["spec"]
    stored = policy_crds.request(
        "GET", f"{_GROUP}/clusterauthorizationpolicies/isolate-{namespace}"
    )
    assert stored["spec"] == cluster["spec"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            _rule_with(networkAttributes={"portRanges": [{"start": 90, "end": 80}]}),
            "a port range's end must not be below its start",
        ),
        (
            _rule_with(networkAttributes={"sourceCIDRs": ["10.0.0.0/33"]}),
            "every sourceCIDRs entry must be a CIDR block",
        ),
        (
            _rule_with(networkAttributes={"exceptSourceCIDRs": ["not::a::block/8"]}),
            "every exceptSourceCIDRs entry must be a CIDR block",
        ),
        (
            {"sources": [{"type": "Any"}], "networkAttributes": {}},
            "networkAttributes must name ports, portRanges, exceptPorts, exceptPortRanges, sourceCIDRs or exceptSourceCIDRs",
        ),
        ({"sources": [{"type": "Namespaces"}]}, "namespaces is required when type is Namespaces"),
        (
            {"sources": [{"type": "SameNamespace", "spiffe": "spiffe://a.org/x"}]},
            "spiffe must not be set unless type is SPIFFE",
        ),
    ],
    ids=["range", "cidr", "except-cidr", "empty-network", "namespaces", "stray-field"],
)
def test_the_api_server_refuses_malformed_section_seven_one_fields(
    policy_crds: ControlPlane, namespace: str, rule: dict[str, Any], message: str
) -> None:
    """The CRD's CEL rules refuse what Sigil's own validator refuses, with the same words."""
    collection = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies"
    with pytest.raises(ControlPlaneError) as refused:
        policy_crds.request("POST", collection, _allow(namespace, "bad", rule))
    assert "HTTP 422" in str(refused.value)
    assert message in str(refused.value)


def test_every_mesh_extension_field_is_stored_as_written(
    policy_crds: ControlPlane, namespace: str
) -> None:
    """notSources, AllOf and SPIFFEPattern sources, exceptPorts/exceptPortRanges, spec.scope and targetRefs[].ports
    apply with kubectl and read back unchanged, for both kinds, and Sigil parses what was stored."""
    rule = {
        "sources": [
            {
                "type": "AllOf",
                "allOf": [
                    {"type": "SPIFFEPattern", "spiffePattern": "spiffe://*/ns/prod-*/sa/*"},
                    {"type": "Authenticated", "authenticated": {"trustDomains": ["partner.org"]}},
                ],
            }
        ],
        "notSources": [
            {"type": "ServiceAccount", "serviceAccount": {"namespace": "kube-system", "name": "*"}},
            {"type": "AllOf", "allOf": [{"type": "SameNamespace"}]},
        ],
        "networkAttributes": {
            "portRanges": [{"start": 8000, "end": 8100}],
            "exceptPorts": [8080],
            "exceptPortRanges": [{"start": 8090, "end": 8099}],
        },
    }
    allow = _allow(namespace, "mesh", rule)
    allow["spec"]["scope"] = "Mesh"
    allow["spec"]["targetRefs"][0]["ports"] = [8000, 8050]
    cluster = {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "ClusterAuthorizationPolicy",
        "metadata": {"name": f"mesh-{namespace}"},
        "spec": {
            "tier": "Baseline",
            "priority": 5,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "rules": [{"action": "Deny", **rule}],
        },
    }
    documents = [allow, cluster]
    applied = run_kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert applied.returncode == 0, applied.stderr
    try:
        stored = policy_crds.request(
            "GET", f"{_GROUP}/namespaces/{namespace}/authorizationpolicies/mesh"
        )
        assert stored["spec"] == allow["spec"]
        parsed = parse_policy(stored)
        assert isinstance(parsed, AuthorizationPolicy)
        assert parsed.mesh
        assert parsed.target_ports == frozenset({8000, 8050})
        stored = policy_crds.request(
            "GET", f"{_GROUP}/clusterauthorizationpolicies/mesh-{namespace}"
        )
        assert stored["spec"] == cluster["spec"]
    finally:
        # A Mesh policy selecting every pod reaches every namespace of this shared control plane: the
        # effective-view tests of other namespaces would see it.
        deleted = run_kubectl(policy_crds, "delete", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert deleted.returncode == 0, deleted.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scope": "Cluster"}, "supported values"),
        ({"rules": [{"notSources": [{"type": "Any"}]}]}, "supported values"),
        (
            {"rules": [{"sources": [{"type": "AllOf", "allOf": []}]}]},
            "should have at least 1 items",
        ),
        ({"rules": [{"sources": [{"type": "AllOf"}]}]}, "allOf is required when type is AllOf"),
        (
            {"rules": [{"sources": [{"type": "SPIFFEPattern", "spiffePattern": "prod-*"}]}]},
            "should match",
        ),
        (
            {
                "rules": [
                    _rule_with(networkAttributes={"exceptPortRanges": [{"start": 9, "end": 8}]})
                ]
            },
            "a port range's end must not be below its start",
        ),
    ],
    ids=["scope", "not-any", "empty-all-of", "all-of-missing", "pattern", "except-range"],
)
def test_the_api_server_refuses_malformed_mesh_extension_fields(
    policy_crds: ControlPlane, namespace: str, change: dict[str, Any], message: str
) -> None:
    """The CRD refuses a bad scope, a negated Any, an empty or missing allOf, a pattern without spiffe:// and a
    descending excepted range."""
    document = _allow(namespace, "bad", _rule_with())
    document["spec"].update(change)
    collection = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies"
    with pytest.raises(ControlPlaneError) as refused:
        policy_crds.request("POST", collection, document)
    assert "HTTP 422" in str(refused.value)
    assert message in str(refused.value)


def test_a_target_ref_without_group_is_refused(policy_crds: ControlPlane, namespace: str) -> None:
    """GEP-3779 requires targetRefs[].group (write "" for the core group)."""
    document = _allow(namespace, "no-group", _rule_with())
    del document["spec"]["targetRefs"][0]["group"]
    collection = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies"
    with pytest.raises(ControlPlaneError) as refused:
        policy_crds.request("POST", collection, document)
    assert "HTTP 422" in str(refused.value)
    assert "group" in str(refused.value)


async def test_the_issuer_warns_of_an_admin_policy_escapable_by_relabelling(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """An Admin policy selecting pods by labels is in force, and its Accepted message says relabelling escapes it."""
    name = f"lock-db-{namespace}"
    document = {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "ClusterAuthorizationPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": "Admin",
            "priority": 1,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "podSelector": {"matchLabels": {"app": "db"}},
            "rules": [{"action": "Deny", "sources": [{"type": "Any"}]}],
        },
    }
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    async with running_issuer(settings):
        applied = await asyncio.to_thread(
            run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(document)
        )
        assert applied.returncode == 0, applied.stderr
        accepted = await _accepted(policy_crds, f"{_GROUP}/clusterauthorizationpolicies/{name}", 1)
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert "relabelling a pod escapes it" in accepted["message"]


async def test_agents_learn_each_policys_object_and_generation(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A policy edited once reaches an agent named as its CRD object at generation 2, with its own revision."""
    first = _allow(namespace, "db-from-web", _web_source("spiffe://partner.org/billing/*"))
    second = _allow(namespace, "db-from-web", _web_source("spiffe://partner.org/payments/*"))
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    path = f"{_GROUP}/namespaces/{namespace}/authorizationpolicies/db-from-web"
    async with running_issuer(settings) as server, attested_agent(server) as agent:
        for document in (first, second):
            applied = await asyncio.to_thread(
                run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(document)
            )
            assert applied.returncode == 0, applied.stderr
        await _accepted(policy_crds, path, 2)
        update = await agent.policies()
    origin = update.origins[("AuthorizationPolicy", namespace, "db-from-web")]
    assert str(origin).startswith(f"CRD {namespace}/db-from-web, generation 2 (revision ")
    (accepted,) = [a for a in update.accepted if a.key[1:] == (namespace, "db-from-web")]
    assert origin.revision == policy_revision(accepted.canonical)
