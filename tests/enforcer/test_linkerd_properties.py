"""Generated Linkerd policy sets: whenever the report says the translation is exact, Sigil decides as Linkerd."""

from __future__ import annotations

from typing import Any

from enforcer.linkerd_agreement import disagreements, translate_batch
from enforcer.linkerd_docs import (
    authorization,
    identity,
    mesh_tls,
    namespace,
    networks,
    ref,
    server,
    server_authorization,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigil.enforcer.policy.documents import judge
from sigil.enforcer.policy.schema import Where

Doc = dict[str, Any]

DEFAULTS = [
    "all-unauthenticated",
    "all-authenticated",
    "cluster-unauthenticated",
    "cluster-authenticated",
    "deny",
    "audit",
]
EXACT_CLUSTER_DEFAULTS = ["all-unauthenticated", "all-authenticated", "deny", "audit"]
SELECTORS = [{}, {"app": "web"}, {"tier": "back"}, {"app": "db"}]
IDENTITIES = [
    "*",
    identity("front", "shop"),
    identity("x.api", "ops"),
    identity("front", "shop", "other.org"),
    "*.ops.serviceaccount.identity.linkerd.cluster.local",
    "*.api.ops.serviceaccount.identity.linkerd.cluster.local",
    "*.serviceaccount.identity.linkerd.cluster.local",
    "*.cluster.local",
]
IDENTITY_REFS = [
    ref("ServiceAccount", "front"),
    ref("ServiceAccount", "deployer", "ops"),
    ref("Namespace", "ops"),
]
NETWORKS: list[tuple[str, list[str]] | str] = [
    "10.0.0.0/8",
    ("10.0.0.0/8", ["10.9.0.0/16"]),
    "192.168.0.0/16",
    ("0.0.0.0/0", ["203.0.113.0/24", "10.1.0.0/16"]),
    "fd00::/8",
    "2001:db8::/32",
]
AUTH_REFS = [
    ref("MeshTLSAuthentication", "m0"),
    ref("MeshTLSAuthentication", "m1"),
    ref("MeshTLSAuthentication", "missing"),
    ref("NetworkAuthentication", "n0"),
    ref("NetworkAuthentication", "n1"),
    ref("ServiceAccount", "front"),
    ref("ServiceAccount", "deployer", "ops"),
]


@st.composite
def linkerd_sets(draw: st.DrawFn) -> list[Doc]:
    """A batch of Linkerd objects in namespaces ``shop`` and ``ops``, with references that may not resolve."""
    objects: list[Doc] = []
    for ns in ("shop", "ops"):
        default = draw(st.none() | st.sampled_from(DEFAULTS))
        if default is not None or draw(st.booleans()):
            objects.append(namespace(ns, default))
    for number in range(draw(st.integers(0, 3))):
        objects.append(
            server(
                f"s{number}",
                draw(st.sampled_from([8080, 5432])),
                namespace=draw(st.sampled_from(["shop", "shop", "ops"])),
                match=draw(st.sampled_from(SELECTORS)),
                access=draw(st.none() | st.sampled_from(DEFAULTS)),
                labels=draw(st.sampled_from([None, {"tier": "front"}])),
                created=f"2026-01-0{number + 1}T00:00:00Z",
            )
        )
    for number in range(draw(st.integers(0, 2))):
        ids = draw(st.none() | st.lists(st.sampled_from(IDENTITIES), min_size=1, max_size=3))
        refs = draw(st.none() | st.lists(st.sampled_from(IDENTITY_REFS), min_size=1, max_size=2))
        objects.append(mesh_tls(f"m{number}", ids, refs=refs))
    for number in range(draw(st.integers(0, 2))):
        nets = draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=3))
        objects.append(networks(f"n{number}", *nets))
    for number in range(draw(st.integers(0, 3))):
        target = draw(st.none() | st.sampled_from(["s0", "s1", "s2"]))
        refs = draw(st.lists(st.sampled_from(AUTH_REFS), max_size=2, unique_by=lambda r: str(r)))
        objects.append(authorization(f"a{number}", server=target, refs=refs))
    if draw(st.booleans()):
        chosen: Doc = draw(
            st.sampled_from([{"name": "s0"}, {"selector": {"matchLabels": {"tier": "front"}}}])
        )
        client: Doc = draw(
            st.sampled_from(
                [
                    {"unauthenticated": True, "networks": [{"cidr": "10.0.0.0/8"}]},
                    {"meshTLS": {"identities": ["*"]}, "networks": [{"cidr": "::/0"}]},
                    {"meshTLS": {"serviceAccounts": [{"name": "deployer", "namespace": "ops"}]}},
                ]
            )
        )
        objects.append(server_authorization("legacy", chosen, client))
    return objects


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects=linkerd_sets(), default=st.sampled_from(EXACT_CLUSTER_DEFAULTS))
def test_exact_translations_agree_with_linkerd(objects: list[Doc], default: str) -> None:
    """A translation reported exact decides as Linkerd on every case of the grid (and is accepted by Sigil)."""
    translation = translate_batch(objects)
    found = disagreements(objects, cluster_default=default)
    if translation.exact:
        assert [str(d) for d in found] == [], [str(f) for f in translation.findings]


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-2, 70000)
    | st.text(max_size=4)
    | st.sampled_from(
        [
            "*",
            "web",
            "s0",
            "m0",
            "n0",
            "shop",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "::/0",
            "Server",
            "Namespace",
            "ServiceAccount",
            "MeshTLSAuthentication",
            "NetworkAuthentication",
            "In",
            "Exists",
            "deny",
            "audit",
            "cluster-authenticated",
            "http",
            identity("a", "b"),
            "*.b.serviceaccount.identity.linkerd.cluster.local",
            "*.X.b.serviceaccount.identity.linkerd.cluster.local",
        ]
    )
)
_FIELDS = st.sampled_from(
    [
        "name", "kind", "namespace", "group", "cidr", "except", "networks", "identities", "identityRefs",
        "targetRef", "requiredAuthenticationRefs", "podSelector", "port", "accessPolicy", "server", "client",
        "meshTLS", "selector", "matchLabels", "matchExpressions", "key", "operator", "values",
        "unauthenticated", "serviceAccounts", "template", "metadata", "labels", "spec", "containers", "ports",
        "containerPort",
    ]
)  # fmt: skip
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_FIELDS, inner, max_size=4),
    max_leaves=14,
)


_KINDS = [
    "Server",
    "AuthorizationPolicy",
    "MeshTLSAuthentication",
    "NetworkAuthentication",
    "ServerAuthorization",
    "Deployment",
    "Namespace",
]


@st.composite
def malformed(draw: st.DrawFn) -> Doc:
    """A Linkerd object (or a Deployment or Namespace beside them) whose spec is anything at all."""
    kind = draw(st.sampled_from(_KINDS))
    api_version = {"Deployment": "apps/v1", "Namespace": "v1"}.get(
        kind, "policy.linkerd.io/v1beta3"
    )
    meta: Doc = {
        "name": draw(st.sampled_from(["s0", "m0", "n0", "a", "shop"])),
        "namespace": "shop",
    }
    if kind == "Namespace":
        annotation = draw(_LEAVES)
        meta = {
            "name": "shop",
            "annotations": {"config.linkerd.io/default-inbound-policy": annotation},
        }
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": draw(_VALUES)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects=st.lists(malformed(), max_size=6))
def test_any_input_translates_into_policies_sigil_accepts(objects: list[Doc]) -> None:
    """Whatever the objects hold, translating them never raises and Sigil accepts every policy it yields."""
    translation = translate_batch(objects)
    result = judge(
        [(dict(t.document), Where("translation", n)) for n, t in enumerate(translation.documents)],
        source="linkerd",
    )
    assert [str(error) for error in result.errors] == []
