"""The six Sigil extensions that let Istio's and Linkerd's policy be said in Sigil (notSources, AllOf,
SPIFFEPattern, exceptPorts/exceptPortRanges, spec.scope Mesh, targetRefs[].ports), one table case per clause
and edge, decided through policies parsed as a user writes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from enforcer.policy_docs import (
    Doc,
    all_of,
    anyone,
    ap,
    authenticated,
    cap,
    excluding,
    namespaces,
    network_rule,
    rule,
    sa,
    same_namespace,
    spiffe,
    spiffe_pattern,
)

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.errors import PolicyError
from sigil.enforcer.policy import PolicyIndex, Target, parse_policy
from sigil.enforcer.policy.scope import Workload, scoped

WEB = "spiffe://example.org/ns/shop/sa/web"
BILLING = "spiffe://example.org/ns/billing/sa/api"
PROD_API = "spiffe://example.org/ns/prod-eu/sa/api"
PARTNER = "spiffe://partner.org/ns/shop/sa/web"
DEEP = "spiffe://example.org/ns/shop/team/sa/web/extra"

Expect = tuple[str, str, str | None, int | None]  # decision, tier, policy, rule


@dataclass(frozen=True)
class Case:
    """One connection against one policy set, and the decision the extension requires."""

    id: str
    doc: str
    policies: list[Doc]
    peer: str | None
    expect: Expect
    port: int = 5432
    namespace: str = "shop"
    labels: dict[str, str] = field(default_factory=lambda: {"app": "db"})
    address: str | None = None


def _rule(sources: list[Doc] | None, **network: Any) -> Doc:
    return network_rule(sources, **network)


CASES = [
    # 1. notSources
    Case(
        "not-sources-excludes",
        "A peer matching a notSources entry does not match the rule.",
        [ap("p", rules=[excluding(rule([authenticated()]), sa("web"))])],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "not-sources-keeps-others",
        "A peer matching none of notSources matches the rule.",
        [ap("p", rules=[excluding(rule([authenticated()]), sa("web"))])],
        BILLING,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "not-sources-no-svid-not-excluded",
        "A peer without an SVID matches no identity source, so notSources never excludes it.",
        [ap("p", rules=[excluding(rule([anyone()]), authenticated())])],
        None,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "not-sources-alone-any-peer",
        "A rule naming only notSources matches any other peer (sources omitted = any peer).",
        [
            ap(
                "deny",
                action="DENY",
                rules=[{"notSources": [spiffe_pattern("spiffe://example.org/*")]}],
            )
        ],
        PARTNER,
        ("denied", "namespace", "shop/deny", 0),
    ),
    Case(
        "not-sources-alone-excluded",
        "... and the excluded peers fall through.",
        [
            ap(
                "deny",
                action="DENY",
                rules=[{"notSources": [spiffe_pattern("spiffe://example.org/*")]}],
            )
        ],
        WEB,
        ("allowed", "default", None, None),
    ),
    Case(
        "not-sources-all-of-needs-all",
        "A notSources AllOf excludes only peers matching all of its members.",
        [
            ap(
                "p",
                rules=[excluding(rule([authenticated()]), all_of(sa("*", "billing"), spiffe(WEB)))],
            )
        ],
        BILLING,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "not-sources-in-cluster-rule",
        "notSources work in ClusterAuthorizationPolicy rules too.",
        [
            cap(
                "c",
                rules=[excluding(rule([authenticated()], action="Deny"), same_namespace())],
            )
        ],
        WEB,
        ("allowed", "default", None, None),
    ),
    # 2. AllOf
    Case(
        "all-of-every-member",
        "AllOf matches a peer that matches every member.",
        [ap("p", rules=[rule([all_of(authenticated("example.org"), sa("*", "billing"))])])],
        BILLING,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "all-of-one-member-fails",
        "A peer failing one member does not match.",
        [ap("p", rules=[rule([all_of(authenticated("example.org"), sa("*", "billing"))])])],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "all-of-single-member",
        "AllOf with one member is that member.",
        [ap("p", rules=[rule([all_of(sa("web"))])])],
        WEB,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "all-of-ored-with-sources",
        "AllOf is one source among the rule's OR-ed sources.",
        [
            ap(
                "p",
                rules=[
                    rule([sa("web"), all_of(namespaces({"env": "prod"}), sa("api", "billing"))])
                ],
            )
        ],
        BILLING,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "all-of-no-svid",
        "A peer without an SVID never matches an AllOf of identity sources.",
        [ap("p", rules=[rule([all_of(authenticated(), spiffe_pattern("spiffe://*"))])])],
        None,
        ("denied", "namespace", None, None),
    ),
    # 3. SPIFFEPattern
    Case(
        "pattern-any-domain-prefix",
        "spiffe://*/ns/prod-*/sa/* matches any trust domain's prod-* namespaces.",
        [ap("p", rules=[rule([spiffe_pattern("spiffe://*/ns/prod-*/sa/*")])])],
        PROD_API,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "pattern-no-match",
        "A peer outside the glob does not match.",
        [ap("p", rules=[rule([spiffe_pattern("spiffe://*/ns/prod-*/sa/*")])])],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "pattern-star-crosses-slash",
        "* matches runs that include /.",
        [ap("p", rules=[rule([spiffe_pattern("spiffe://example.org/ns/shop/*/web/*")])])],
        DEEP,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "pattern-star-matches-empty",
        "* matches the empty run: spiffe://*.org/ns/shop/sa/web* names web itself.",
        [ap("p", rules=[rule([spiffe_pattern("spiffe://*.org/ns/shop/sa/web*")])])],
        PARTNER,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "pattern-literal-dot",
        "Every character but * is literal ('.' is no regex wildcard).",
        [ap("p", rules=[rule([spiffe_pattern("spiffe://example.org/ns/sho./sa/web")])])],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "pattern-any-svid",
        "spiffe://* matches any peer with an SVID...",
        [ap("p", rules=[rule([spiffe_pattern("spiffe://*")])])],
        PARTNER,
        ("allowed", "namespace", "shop/p", 0),
    ),
    Case(
        "pattern-any-svid-not-plaintext",
        "... and never a peer without one.",
        [ap("p", rules=[rule([spiffe_pattern("spiffe://*")])])],
        None,
        ("denied", "namespace", None, None),
    ),
    # 4. exceptPorts / exceptPortRanges
    Case(
        "except-ports-excluded",
        "A port in exceptPorts is not matched even though ports names it.",
        [ap("p", action="DENY", rules=[_rule([sa("web")], ports=[80, 443], exceptPorts=[443])])],
        WEB,
        ("allowed", "default", None, None),
        port=443,
    ),
    Case(
        "except-ports-with-ports",
        "exceptPorts is AND-ed with ports: a named, not excepted port matches.",
        [ap("p", action="DENY", rules=[_rule([sa("web")], ports=[80, 443], exceptPorts=[443])])],
        WEB,
        ("denied", "namespace", "shop/p", 0),
        port=80,
    ),
    Case(
        "except-ports-alone",
        "exceptPorts alone means every port but these.",
        [ap("p", action="DENY", rules=[_rule([sa("web")], exceptPorts=[8080])])],
        WEB,
        ("denied", "namespace", "shop/p", 0),
        port=9999,
    ),
    Case(
        "except-port-range",
        "A port inside an exceptPortRanges range is not matched.",
        [
            ap(
                "p",
                action="DENY",
                rules=[
                    _rule(
                        [sa("web")],
                        portRanges=[{"start": 1, "end": 9000}],
                        exceptPortRanges=[{"start": 8000, "end": 8100}],
                    )
                ],
            )
        ],
        WEB,
        ("allowed", "default", None, None),
        port=8050,
    ),
    Case(
        "except-port-range-edge",
        "Ranges are inclusive: the port after the range's end matches again.",
        [
            ap(
                "p",
                action="DENY",
                rules=[
                    _rule(
                        [sa("web")],
                        portRanges=[{"start": 1, "end": 9000}],
                        exceptPortRanges=[{"start": 8000, "end": 8100}],
                    )
                ],
            )
        ],
        WEB,
        ("denied", "namespace", "shop/p", 0),
        port=8101,
    ),
    # 5. spec.scope: Mesh
    Case(
        "mesh-deny-joins-other-namespace",
        "A Mesh DENY policy of istio-system denies in every namespace's tier.",
        [
            ap(
                "deny-partner",
                namespace="istio-system",
                action="DENY",
                scope="Mesh",
                rules=[rule([spiffe_pattern("spiffe://partner.org/*")])],
            )
        ],
        PARTNER,
        ("denied", "namespace", "istio-system/deny-partner", 0),
        namespace="billing",
    ),
    Case(
        "mesh-allow-joins-tier",
        "A Mesh ALLOW policy makes each selected pod deny-if-not-allowed...",
        [
            ap(
                "only-web",
                namespace="istio-system",
                scope="Mesh",
                match={"app": "db"},
                rules=[rule([sa("web", "shop")])],
            )
        ],
        BILLING,
        ("denied", "namespace", None, None),
        namespace="billing",
    ),
    Case(
        "mesh-allow-additive",
        "... and is additive with the namespace's own ALLOW policies.",
        [
            ap(
                "only-web",
                namespace="istio-system",
                scope="Mesh",
                rules=[rule([sa("web", "shop")])],
            ),
            ap("own", namespace="billing", rules=[rule([sa("api")])]),
        ],
        BILLING,
        ("allowed", "namespace", "billing/own", 0),
        namespace="billing",
    ),
    Case(
        "mesh-selector-every-namespace",
        "Its selector is matched against pods of every namespace: unselected pods are left alone.",
        [
            ap(
                "only-web",
                namespace="istio-system",
                scope="Mesh",
                match={"app": "web"},
                rules=[rule([sa("web", "shop")])],
            )
        ],
        BILLING,
        ("allowed", "default", None, None),
        namespace="billing",
    ),
    Case(
        "mesh-service-account-own-namespace",
        "A ServiceAccount source without a namespace still means the policy's own namespace.",
        [ap("ctl", namespace="istio-system", scope="Mesh", rules=[rule([sa("web")])])],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "namespace-scope-stays-home",
        "Without scope Mesh a policy of another namespace never applies.",
        [ap("deny-all", namespace="istio-system", action="DENY", rules=[rule([anyone()])])],
        WEB,
        ("allowed", "default", None, None),
    ),
    # 6. targetRefs[].ports
    Case(
        "target-ports-deny-if-not-allowed",
        "An ALLOW policy selecting the pod on port 8080 denies an unallowed peer there...",
        [ap("server", target_ports=[8080], rules=[])],
        WEB,
        ("denied", "namespace", None, None),
        port=8080,
    ),
    Case(
        "target-ports-other-port-alone",
        "... and leaves the pod's other ports to the rest of the policy set.",
        [ap("server", target_ports=[8080], rules=[])],
        WEB,
        ("allowed", "default", None, None),
        port=9090,
    ),
    Case(
        "target-ports-allow-rule",
        "Its rules allow on its port.",
        [ap("server", target_ports=[8080], rules=[rule([sa("web")])])],
        WEB,
        ("allowed", "namespace", "shop/server", 0),
        port=8080,
    ),
    Case(
        "target-ports-rule-not-elsewhere",
        "Its rules do not reach other ports, which another ALLOW policy governs.",
        [
            ap("server", target_ports=[8080], rules=[rule([sa("web")])]),
            ap("admin", target_ports=[9090], rules=[rule([sa("api", "billing")])]),
        ],
        WEB,
        ("denied", "namespace", None, None),
        port=9090,
    ),
    Case(
        "target-ports-deny-policy",
        "A DENY policy with targetRef ports denies only on those ports.",
        [ap("deny", action="DENY", target_ports=[22], rules=[rule([anyone()])])],
        WEB,
        ("allowed", "default", None, None),
        port=23,
    ),
]


def _decide(case: Case, *, explain: bool = False) -> Any:
    index = PolicyIndex(
        [parse_policy(doc) for doc in case.policies],
        trust_domain=TrustDomain("example.org"),
        namespaces={"shop": {"env": "prod"}, "billing": {"env": "prod"}},
    )
    peer = None if case.peer is None else SpiffeId.parse(case.peer)
    return index.decide(
        peer,
        Target(case.namespace, case.labels),
        case.port,
        address=case.address,
        explain=explain,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_mesh_extensions(case: Case) -> None:
    """Each case decides as the extension's clause says (its ``doc``)."""
    decision = _decide(case)
    got = (
        "allowed" if decision.allowed else "denied",
        decision.tier.value,
        decision.policy,
        decision.rule,
    )
    assert got == case.expect, case.doc


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_explaining_never_changes_the_decision(case: Case) -> None:
    """Asking for an explanation returns the same verdict as the fast path."""
    assert _decide(case, explain=True).verdict == _decide(case).verdict


def test_target_ports_make_only_that_port_deny_if_not_allowed() -> None:
    """Across every port, only the Server-like policy's port changes from the default."""
    index = PolicyIndex(
        [parse_policy(ap("server", target_ports=[8080], rules=[]))],
        trust_domain=TrustDomain("example.org"),
    )
    target = Target("shop", {"app": "db"})
    denied = [
        port
        for port in (1, 79, 80, 8079, 8080, 8081, 65535)
        if not index.decide(SpiffeId.parse(WEB), target, port).allowed
    ]
    assert denied == [8080]


@pytest.mark.parametrize(
    ("source", "path", "expected"),
    [
        ({"type": "AllOf", "allOf": []}, "spec.rules[0].sources[0].allOf", "a list of 1 to 4"),
        ({"type": "AllOf"}, "spec.rules[0].sources[0].allOf", "allOf to be set"),
        (
            {"type": "AllOf", "allOf": [all_of(sa("web"))]},
            "spec.rules[0].sources[0].allOf[0].allOf",
            "a known field",
        ),
        (
            {"type": "AllOf", "allOf": [anyone()]},
            "spec.rules[0].sources[0].allOf[0].type",
            "one of",
        ),
        (
            {"type": "SPIFFEPattern", "spiffePattern": "example.org/*"},
            "spec.rules[0].sources[0].spiffePattern",
            "a SPIFFE ID pattern",
        ),
        (
            {"type": "SPIFFEPattern"},
            "spec.rules[0].sources[0].spiffePattern",
            "spiffePattern to be set",
        ),
    ],
)
def test_bad_extension_sources_are_refused(source: Doc, path: str, expected: str) -> None:
    """A malformed AllOf or SPIFFEPattern source is refused, naming the field and what was expected."""
    with pytest.raises(PolicyError) as refused:
        parse_policy(ap("p", rules=[rule([source])]))
    assert refused.value.path == path
    assert expected in refused.value.expected


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"scope": "Cluster"}, "spec.scope"),
        (
            {"targetRefs": [{"group": "", "kind": "Pod", "selector": {}, "ports": []}]},
            "spec.targetRefs[0].ports",
        ),
        (
            {"targetRefs": [{"group": "", "kind": "Pod", "selector": {}, "ports": [0]}]},
            "spec.targetRefs[0].ports[0]",
        ),
        ({"rules": [{"notSources": [anyone()]}]}, "spec.rules[0].notSources[0].type"),
        (
            {"rules": [network_rule([sa("web")], exceptPorts=[])]},
            "spec.rules[0].networkAttributes.exceptPorts",
        ),
        (
            {"rules": [network_rule([sa("web")], exceptPortRanges=[{"start": 9, "end": 8}])]},
            "spec.rules[0].networkAttributes.exceptPortRanges[0].end",
        ),
    ],
)
def test_bad_extension_fields_are_refused(change: Doc, path: str) -> None:
    """A bad scope, target ports, notSources entry or excepted port is refused at its field."""
    doc = ap("p", rules=[rule([sa("web")])])
    doc["spec"].update(change)
    with pytest.raises(PolicyError) as refused:
        parse_policy(doc)
    assert refused.value.path == path


def test_the_agent_scopes_mesh_policies_to_every_namespace() -> None:
    """What the node agent sends a pod (scope.scoped) includes Mesh-scoped policies of other namespaces whose
    selector matches it, never a Namespace-scoped one of another namespace, and nothing namespaced outside pods."""
    mesh = parse_policy(ap("mesh", namespace="istio-system", scope="Mesh", match={"app": "db"}))
    home = parse_policy(ap("home", namespace="istio-system", match={"app": "db"}))
    other = parse_policy(ap("other", namespace="istio-system", scope="Mesh", match={"app": "web"}))
    policies = [mesh, home, other]
    assert scoped(policies, Workload("billing", {"app": "db"})) == [mesh]
    assert scoped(policies, Workload(None)) == []
