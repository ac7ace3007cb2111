"""The Linkerd dialect at its edges: bad input, Sigil's limits, trust domains and templates, cluster defaults."""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.linkerd_docs import (
    authorization,
    findings,
    identity,
    mesh_tls,
    networks,
    only_policy,
    ref,
    server,
    translate,
    with_identities,
)

from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import Exactness, TranslateOptions
from sigil.enforcer.policy.dialects.linkerd import sigil_default


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
