"""The Linkerd dialect: what each Linkerd object becomes in Sigil, and what the report says about it."""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.linkerd_docs import (
    authorization,
    deployment,
    findings,
    identity,
    mesh_tls,
    namespace,
    networks,
    only_policy,
    ref,
    server,
    server_authorization,
    translate,
    with_identities,
)

from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Exactness,
    TranslateOptions,
    dialect_for,
    dialect_named,
)
from sigil.enforcer.policy.dialects.linkerd import DIALECT

WEB = {"app": "web"}


def test_the_dialect_is_found_by_name_and_by_api_group() -> None:
    """``import linkerd`` and a policy.linkerd.io document both reach this dialect."""
    assert dialect_named("linkerd") is DIALECT
    assert dialect_for(server("web", 80)) is DIALECT
    assert DIALECT.name == "linkerd"


def test_a_server_without_authorization_allows_nobody_on_its_port_only() -> None:
    """A bare Server becomes an ALLOW policy on its pods and port with no rules, annotated with its origin."""
    translation = translate(server("web", 8080, match=WEB))
    policy = only_policy(translation)
    assert policy["metadata"]["namespace"] == "shop"
    assert policy["metadata"]["annotations"][TRANSLATED_FROM] == "linkerd: Server shop/web"
    assert policy["spec"]["action"] == "ALLOW"
    assert policy["spec"]["targetRefs"] == [
        {"group": "", "kind": "Pod", "selector": {"matchLabels": WEB}, "ports": [8080]}
    ]
    assert policy["spec"]["rules"] == []
    assert translation.exact


@pytest.mark.parametrize(
    ("linkerd_id", "source"),
    [
        (
            identity("front", "shop"),
            {"type": "ServiceAccount", "serviceAccount": {"namespace": "shop", "name": "front"}},
        ),
        (
            "*.ops.serviceaccount.identity.linkerd.cluster.local",
            {"type": "ServiceAccount", "serviceAccount": {"namespace": "ops", "name": "*"}},
        ),
        (
            "*.serviceaccount.identity.linkerd.cluster.local",
            {"type": "SPIFFEPattern", "spiffePattern": "spiffe://cluster.local/ns/*/sa/*"},
        ),
        (
            "*.cluster.local",
            {"type": "SPIFFEPattern", "spiffePattern": "spiffe://cluster.local/ns/*/sa/*"},
        ),
        (
            "*.api.ops.serviceaccount.identity.linkerd.cluster.local",
            {"type": "SPIFFEPattern", "spiffePattern": "spiffe://cluster.local/ns/ops/sa/*.api"},
        ),
        ("*", {"type": "Authenticated"}),
    ],
)
def test_identities_become_sources(linkerd_id: str, source: dict[str, Any]) -> None:
    """Each form of Linkerd identity becomes the Sigil source matching the same clients."""
    translation = with_identities(linkerd_id)
    assert only_policy(translation)["spec"]["rules"] == [{"sources": [source]}]
    assert translation.exact


def test_identities_follow_the_trust_domain_and_id_template() -> None:
    """Suffix identities are spelled under the configured trust domain and workload ID template."""
    options = TranslateOptions(
        trust_domain="example.org", id_template="k8s/{namespace}/{service_account}"
    )
    translation = with_identities("*.example.org", options=options)
    assert only_policy(translation)["spec"]["rules"] == [
        {"sources": [{"type": "SPIFFEPattern", "spiffePattern": "spiffe://example.org/k8s/*/*"}]}
    ]


def test_an_identity_of_another_trust_domain_is_refused_and_dropped() -> None:
    """An identity Sigil cannot name is reported; the authorization admits the others only."""
    translation = with_identities(identity("a", "b", "other.org"), identity("front", "shop"))
    assert only_policy(translation)["spec"]["rules"][0]["sources"] == [
        {"type": "ServiceAccount", "serviceAccount": {"namespace": "shop", "name": "front"}}
    ]
    (refused,) = findings(translation, Exactness.REFUSED)
    assert "spec.identities[0]" in refused
    assert "other.org" in refused
    assert not translation.exact


def test_identity_refs_name_accounts_and_namespaces() -> None:
    """identityRefs to a ServiceAccount (default: the authentication's namespace) and to a Namespace."""
    translation = translate(
        server("web", 8080),
        authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
        mesh_tls("m", refs=[ref("ServiceAccount", "front"), ref("Namespace", "ops")]),
    )
    assert only_policy(translation)["spec"]["rules"] == [
        {
            "sources": [
                {
                    "type": "ServiceAccount",
                    "serviceAccount": {"namespace": "shop", "name": "front"},
                },
                {"type": "ServiceAccount", "serviceAccount": {"namespace": "ops", "name": "*"}},
            ]
        }
    ]


def test_networks_with_exceptions_become_one_rule_each() -> None:
    """Plain networks share a rule; a network with exceptions gets its own, so exceptions stay per network."""
    translation = translate(
        server("web", 8080),
        authorization(
            "a",
            server="web",
            refs=[ref("ServiceAccount", "front"), ref("NetworkAuthentication", "n")],
        ),
        networks("n", "192.168.0.0/16", ("10.0.0.0/8", ["10.1.0.0/16"]), "fd00::/8"),
    )
    front = [{"type": "ServiceAccount", "serviceAccount": {"namespace": "shop", "name": "front"}}]
    assert only_policy(translation)["spec"]["rules"] == [
        {"sources": front, "networkAttributes": {"sourceCIDRs": ["192.168.0.0/16", "fd00::/8"]}},
        {
            "sources": front,
            "networkAttributes": {
                "sourceCIDRs": ["10.0.0.0/8"],
                "exceptSourceCIDRs": ["10.1.0.0/16"],
            },
        },
    ]
    assert translation.exact


def test_a_policy_without_authentication_admits_any_peer() -> None:
    """No required authentication: every client, meshed or not, from anywhere."""
    translation = translate(server("web", 8080), authorization("a", server="web"))
    assert only_policy(translation)["spec"]["rules"] == [{"sources": [{"type": "Any"}]}]


def test_a_namespace_policy_authorizes_every_server_of_its_namespace() -> None:
    """A policy targeting its namespace lands in every Server's policy of that namespace, not others."""
    translation = translate(
        server("web", 8080),
        server("db", 5432),
        server("other", 80, namespace="ops"),
        authorization("a", refs=[ref("ServiceAccount", "front")]),
    )
    rules = {
        t.document["metadata"]["name"]: t.document["spec"]["rules"] for t in translation.documents
    }
    assert len(rules["linkerd-server-web"]) == 1
    assert len(rules["linkerd-server-db"]) == 1
    assert rules["linkerd-server-other"] == []


@pytest.mark.parametrize(
    ("refs", "extra", "expected"),
    [
        ([ref("MeshTLSAuthentication", "gone")], [], "MeshTLSAuthentication shop/gone"),
        ([ref("NetworkAuthentication", "gone")], [], "NetworkAuthentication shop/gone"),
        (
            [ref("MeshTLSAuthentication", "m"), ref("ServiceAccount", "front")],
            [mesh_tls("m", ["*"])],
            "more than one identity authentication",
        ),
        (
            [ref("NetworkAuthentication", "n1"), ref("NetworkAuthentication", "n2")],
            [networks("n1", "10.0.0.0/8"), networks("n2", "10.0.0.0/8")],
            "more than one NetworkAuthentication",
        ),
    ],
)
def test_policies_linkerd_ignores_authorize_nothing(
    refs: list[dict[str, Any]], extra: list[dict[str, Any]], expected: str
) -> None:
    """A missing authentication or a combination Linkerd refuses: the policy adds no rule, and says why."""
    translation = translate(
        server("web", 8080), authorization("a", server="web", refs=refs), *extra
    )
    assert only_policy(translation)["spec"]["rules"] == []
    assert any(
        expected in str(f) and "AuthorizationPolicy shop/a" in str(f) for f in translation.findings
    )


def test_a_route_target_is_refused_as_l7() -> None:
    """A policy targeting an HTTPRoute is not translated, and the report says what it would have admitted."""
    target = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r"}
    translation = translate(server("web", 8080), authorization("a", target=target))
    assert only_policy(translation)["spec"]["rules"] == []
    (refused,) = findings(translation, Exactness.REFUSED)
    assert "HTTPRoute r" in refused


def test_a_named_port_is_refused_without_a_policy() -> None:
    """A Server naming a port no workload of the batch names cannot be placed on a number: refused."""
    translation = translate(
        server("web", "http", match=WEB), deployment("other", {"app": "db"}, {"http": 80})
    )
    assert translation.documents == ()
    (refused,) = findings(translation, Exactness.REFUSED)
    assert "'http'" in refused


def test_a_named_port_is_resolved_through_the_batchs_workloads() -> None:
    """The numbers the selected workloads give the port name; approximate, as other pods may differ."""
    translation = translate(
        server("web", "http", match=WEB),
        deployment("web", {"app": "web", "v": "1"}, {"http": 8080, "admin": 9000}),
        deployment("web-canary", {"app": "web", "v": "2"}, {"http": 8081}),
        deployment("db", {"app": "db"}, {"http": 5432}),
    )
    policy = only_policy(translation)
    assert policy["spec"]["targetRefs"][0]["ports"] == [8080, 8081]
    assert "Deployment shop/web-canary" in policy["metadata"]["annotations"][TRANSLATED_FROM]
    (approximate,) = findings(translation, Exactness.APPROXIMATE)
    assert "8080/8081" in approximate


def test_ports_requiring_identity_are_refused() -> None:
    """A pod annotation requiring identity on ports changes its default per port: reported, not translated."""
    annotations = {"config.linkerd.io/proxy-require-identity-inbound-ports": "8443"}
    translation = translate(deployment("web", WEB, {}, annotations=annotations))
    assert "8443" in findings(translation, Exactness.REFUSED)[0]


def test_an_unknown_access_policy_is_refused() -> None:
    """An accessPolicy Linkerd does not know is an error naming the accepted values."""
    translation = translate(server("web", 8080, access="everyone"))
    assert translation.documents == ()
    assert "all-unauthenticated" in findings(translation, Exactness.REFUSED)[0]


def test_access_policies_become_rules() -> None:
    """accessPolicy all-authenticated admits any peer with an SVID; cluster-* is approximate (its networks)."""
    exact = translate(server("web", 8080, access="all-authenticated"))
    assert only_policy(exact)["spec"]["rules"] == [{"sources": [{"type": "Authenticated"}]}]
    assert exact.exact
    cluster = translate(server("web", 8080, access="cluster-unauthenticated"))
    (rule,) = only_policy(cluster)["spec"]["rules"]
    assert rule["networkAttributes"]["sourceCIDRs"][0] == "10.0.0.0/8"
    assert "clusterNetworks" in findings(cluster, Exactness.APPROXIMATE)[0]


def test_a_namespace_default_becomes_a_baseline_policy() -> None:
    """The namespace's default inbound policy is a Baseline policy for it, with a Deny after what it admits."""
    translation = translate(namespace("shop", "all-authenticated"), namespace("ops"))
    (baseline,) = [t.document for t in translation.documents]
    assert baseline["kind"] == "ClusterAuthorizationPolicy"
    assert baseline["spec"]["tier"] == "Baseline"
    assert baseline["spec"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "shop"}
    }
    assert baseline["spec"]["rules"] == [
        {"action": "Allow", "sources": [{"type": "Authenticated"}]},
        {"action": "Deny", "sources": [{"type": "Any"}]},
    ]
    assert translation.exact


def test_a_workload_default_is_refused() -> None:
    """A per-pod default inbound policy is reported, not translated."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "template": {
                "metadata": {"annotations": {"config.linkerd.io/default-inbound-policy": "deny"}}
            }
        },
    }
    translation = translate(deployment)
    assert translation.documents == ()
    assert "Deployment shop/web" in findings(translation, Exactness.REFUSED)[0]


def test_overlapping_servers_are_approximate() -> None:
    """Two Servers on one port of possibly the same pods: Linkerd picks one, Sigil admits either's clients."""
    translation = translate(server("a", 8080), server("b", 8080, match=WEB), server("c", 9090))
    (approximate,) = findings(translation, Exactness.APPROXIMATE)
    assert "Server shop/b" in approximate
    assert "Server shop/a" in approximate


def test_server_authorizations_select_servers_by_name_and_labels() -> None:
    """A legacy ServerAuthorization applies to Servers by name or labels, with its identities and networks."""
    client = {
        "meshTLS": {"serviceAccounts": [{"name": "front"}]},
        "networks": [{"cidr": "10.0.0.0/8"}],
    }
    translation = translate(
        server("web", 8080, labels={"tier": "front"}),
        server("db", 5432),
        server_authorization("s", {"selector": {"matchLabels": {"tier": "front"}}}, client),
    )
    rules = {
        t.document["metadata"]["name"]: t.document["spec"]["rules"] for t in translation.documents
    }
    assert rules["linkerd-server-web"] == [
        {
            "sources": [
                {"type": "ServiceAccount", "serviceAccount": {"namespace": "shop", "name": "front"}}
            ],
            "networkAttributes": {"sourceCIDRs": ["10.0.0.0/8"]},
        }
    ]
    assert rules["linkerd-server-db"] == []


def test_unauthenticated_tls_is_refused() -> None:
    """TLS without identity has no Sigil peer: the ServerAuthorization is refused."""
    translation = translate(
        server("web", 8080),
        server_authorization("s", {"name": "web"}, {"meshTLS": {"unauthenticatedTLS": True}}),
    )
    assert only_policy(translation)["spec"]["rules"] == []
    assert "unauthenticatedTLS" in findings(translation, Exactness.REFUSED)[0]
