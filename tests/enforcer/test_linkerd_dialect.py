"""The Linkerd dialect: what each Linkerd object becomes in Sigil, and what the report says about it."""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.linkerd_docs import (
    authorization,
    deployment,
    identity,
    mesh_tls,
    namespace,
    networks,
    ref,
    server,
    server_authorization,
)

from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Exactness,
    SourcedDocument,
    TranslateOptions,
    Translation,
    dialect_for,
    dialect_named,
)
from sigil.enforcer.policy.dialects.linkerd import DIALECT, sigil_default

WEB = {"app": "web"}


def translate(*docs: dict[str, Any], options: TranslateOptions | None = None) -> Translation:
    sourced = [SourcedDocument(doc, f"linkerd.yaml#{index}") for index, doc in enumerate(docs)]
    return DIALECT.translate(sourced, options or TranslateOptions())


def only_policy(translation: Translation) -> dict[str, Any]:
    (translated,) = [
        t for t in translation.documents if t.document["kind"] == "AuthorizationPolicy"
    ]
    return dict(translated.document)


def findings(translation: Translation, exactness: Exactness) -> list[str]:
    return [str(f) for f in translation.findings if f.exactness is exactness]


def with_identities(*ids: str, options: TranslateOptions | None = None) -> Translation:
    return translate(
        server("web", 8080, match=WEB),
        authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
        mesh_tls("m", list(ids)),
        options=options,
    )


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


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"kind": "Server"}, "apiVersion, kind and metadata are required"),
        (
            {
                "apiVersion": "policy.linkerd.io/v1beta3",
                "kind": "Server",
                "metadata": {"name": "x"},
            },
            "metadata.namespace",
        ),
        (networks("n", ("10.0.0.0/8", ["192.168.0.0/16"])), "is not inside"),
        (networks("n", "ten"), "not an IP address"),
    ],
)
def test_bad_input_is_reported_not_raised(bad: dict[str, Any], expected: str) -> None:
    """Malformed objects become refused findings that say what is wrong."""
    docs = [bad]
    if bad.get("kind") == "NetworkAuthentication":
        docs = [
            server("web", 8080),
            authorization("a", server="web", refs=[ref("NetworkAuthentication", "n")]),
            bad,
        ]
    translation = translate(*docs)
    assert any(expected in str(f) for f in findings(translation, Exactness.REFUSED)), (
        translation.findings
    )


@pytest.mark.parametrize(
    ("linkerd", "sigil", "exactness"),
    [
        ("all-unauthenticated", DefaultPolicy.ALLOW, Exactness.EXACT),
        ("all-authenticated", DefaultPolicy.AUTHENTICATED, Exactness.EXACT),
        ("cluster-authenticated", DefaultPolicy.LOCAL_AUTHENTICATED, Exactness.APPROXIMATE),
        ("cluster-unauthenticated", DefaultPolicy.ALLOW, Exactness.APPROXIMATE),
        ("deny", DefaultPolicy.DENY, Exactness.EXACT),
        ("audit", DefaultPolicy.AUDIT, Exactness.EXACT),
    ],
)
def test_cluster_defaults_map_to_sigil_defaults(
    linkerd: str, sigil: DefaultPolicy, exactness: Exactness
) -> None:
    """Linkerd's proxy.defaultInboundPolicy becomes Sigil's --default, with how faithfully."""
    assert sigil_default(linkerd)[:2] == (sigil, exactness)


def test_an_unknown_cluster_default_is_an_error() -> None:
    """A misspelled default names the accepted ones."""
    with pytest.raises(ValueError, match="all-unauthenticated"):
        sigil_default("allow-all")


def test_a_service_account_named_star_admits_nobody() -> None:
    """A ServiceAccount ref named ``*`` admits no client in Linkerd, so its rule has no source."""
    translation = translate(
        server("web", 8080), authorization("a", server="web", refs=[ref("ServiceAccount", "*")])
    )
    assert only_policy(translation)["spec"]["rules"] == [{"sources": []}]
    assert translation.exact
    assert "literally" in str(translation.findings[0])


def test_linkerd_default_identity_domain_names_the_local_trust_domain() -> None:
    """Identities under Linkerd's cluster.local name workloads of the configured local trust domain."""
    options = TranslateOptions(trust_domain="example.org")
    translation = with_identities(
        identity("front", "shop"),
        "*.serviceaccount.identity.linkerd.cluster.local",
        options=options,
    )
    assert only_policy(translation)["spec"]["rules"][0]["sources"] == [
        {"type": "ServiceAccount", "serviceAccount": {"namespace": "shop", "name": "front"}},
        {"type": "SPIFFEPattern", "spiffePattern": "spiffe://example.org/ns/*/sa/*"},
    ]
    assert translation.exact


def test_long_lists_are_spread_over_rules_and_policies_within_sigils_limits() -> None:
    """300 identities, 40 networks and 130 policies fit Sigil's per-rule and per-policy limits, OR-ed."""
    accounts = [identity(f"sa{n}", "shop") for n in range(300)]
    nets = [f"10.{n}.0.0/16" for n in range(40)]
    many = [
        authorization(f"p{n}", server="web", refs=[ref("ServiceAccount", f"only{n}")])
        for n in range(130)
    ]
    translation = translate(
        server("web", 8080),
        authorization(
            "a",
            server="web",
            refs=[ref("MeshTLSAuthentication", "m"), ref("NetworkAuthentication", "n")],
        ),
        mesh_tls("m", accounts),
        networks("n", *nets),
        *many,
    )
    assert translation.exact, [str(f) for f in translation.findings]
    policies = {t.document["metadata"]["name"]: t.document["spec"] for t in translation.documents}
    assert sorted(policies) == ["linkerd-server-web", "linkerd-server-web-2"]
    rules = [rule for spec in policies.values() for rule in spec["rules"]]
    assert len(rules) == 130 + 3 * 2
    big = [rule for rule in rules if "networkAttributes" in rule]
    assert sorted(len(rule["sources"]) for rule in big) == [44, 44, 128, 128, 128, 128]
    assert sorted({len(rule["networkAttributes"]["sourceCIDRs"]) for rule in big}) == [8, 32]
    assert all(
        spec["targetRefs"] == policies["linkerd-server-web"]["targetRefs"]
        for spec in policies.values()
    )


def test_a_network_with_too_many_exceptions_is_refused() -> None:
    """Exceptions are AND-ed within one rule, so more than a rule holds cannot be spread: refused."""
    excepts = [f"10.{n}.0.0/16" for n in range(33)]
    translation = translate(
        server("web", 8080),
        authorization("a", server="web", refs=[ref("NetworkAuthentication", "n")]),
        networks("n", ("10.0.0.0/8", excepts)),
    )
    assert only_policy(translation)["spec"]["rules"] == []
    assert "33 exceptions" in findings(translation, Exactness.REFUSED)[0]


def test_a_translation_sigil_refuses_is_dropped_with_the_reason() -> None:
    """A Server whose selector Sigil cannot read (a bad label value) is refused, naming Sigil's complaint."""
    translation = translate(server("web", 8080, match={"app": "not a label value!"}))
    assert translation.documents == ()
    (refused,) = findings(translation, Exactness.REFUSED)
    assert "not a valid Sigil policy" in refused
    assert "label value" in refused


def test_other_template_fields_match_anything_in_patterns() -> None:
    """A template with a pod name: suffix identities become patterns with * for the pod."""
    options = TranslateOptions(id_template="ns/{namespace}/pod/{pod_name}/sa/{service_account}")
    translation = with_identities(
        "*.api.ops.serviceaccount.identity.linkerd.cluster.local", options=options
    )
    assert only_policy(translation)["spec"]["rules"][0]["sources"] == [
        {"type": "SPIFFEPattern", "spiffePattern": "spiffe://cluster.local/ns/ops/pod/*/sa/*.api"}
    ]


def test_account_identities_are_refused_when_the_template_has_no_account() -> None:
    """Without {service_account} in the workload ID template, no SPIFFE ID says a client's account."""
    options = TranslateOptions(id_template="ns/{namespace}/pod/{pod_name}")
    translation = with_identities(identity("front", "shop"), "*", options=options)
    assert only_policy(translation)["spec"]["rules"][0]["sources"] == [{"type": "Authenticated"}]
    assert "carries none" in findings(translation, Exactness.REFUSED)[0]
