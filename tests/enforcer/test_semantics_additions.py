"""Every addition of authz.md section 7.1 to the policy language, one case each, decided through policies parsed
as a user writes them: sources by class of peer, network attributes, and the defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from enforcer.policy_docs import (
    Doc,
    anyone,
    ap,
    authenticated,
    cap,
    namespaces,
    network_rule,
    rule,
    sa,
    same_namespace,
)

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy import PolicyIndex, Target, parse_policy
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern

WEB = "spiffe://example.org/ns/shop/sa/web"
BILLING = "spiffe://example.org/ns/billing/sa/api"
PARTNER = "spiffe://partner.org/ns/shop/sa/web"
OTHER_FEDERATED = "spiffe://other.org/jobs/1"
ISOLATE = cap(
    "isolate",
    tier="Admin",
    rules=[rule([same_namespace()], action="Pass"), rule([anyone()], action="Deny")],
)


@dataclass(frozen=True)
class Case:
    """One connection against one policy set, and the decision section 7.1 requires."""

    id: str
    doc: str
    policies: list[Doc]
    peer: str | None
    expect: tuple[str, str, str | None, int | None]  # decision, tier, policy, rule
    address: str | None = None
    port: int = 5432
    default: DefaultPolicy = DefaultPolicy.ALLOW
    template: str = "ns/{namespace}/sa/{service_account}"
    namespace_labels: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"shop": {"env": "prod"}, "billing": {"env": "prod"}}
    )


CASES = [
    # type: Authenticated
    Case(
        "authenticated-local",
        "Authenticated matches a peer of the local trust domain.",
        [ap("authn", rules=[rule([authenticated()])])],
        WEB,
        ("allowed", "namespace", "shop/authn", 0),
    ),
    Case(
        "authenticated-federated",
        "Authenticated matches a peer of a federated domain (its SVID verified against that bundle).",
        [ap("authn", rules=[rule([authenticated()])])],
        PARTNER,
        ("allowed", "namespace", "shop/authn", 0),
    ),
    Case(
        "authenticated-no-svid",
        "A peer without an SVID never matches Authenticated.",
        [ap("authn", rules=[rule([authenticated()])])],
        None,
        ("denied", "namespace", None, None),
    ),
    Case(
        "authenticated-limited-domains",
        "authenticated.trustDomains limits the match to the domains named.",
        [ap("authn", rules=[rule([authenticated("partner.org")])])],
        OTHER_FEDERATED,
        ("denied", "namespace", None, None),
    ),
    Case(
        "authenticated-named-domain",
        "A peer of a named domain matches.",
        [ap("authn", rules=[rule([authenticated("partner.org", "example.org")])])],
        PARTNER,
        ("allowed", "namespace", "shop/authn", 0),
    ),
    # type: SameNamespace
    Case(
        "same-namespace-passes-own",
        "One cluster policy isolates every namespace: a peer of the target's namespace is passed on.",
        [ISOLATE],
        WEB,
        ("allowed", "default", None, None),
    ),
    Case(
        "same-namespace-denies-other",
        "A peer of another namespace falls through to the Deny.",
        [ISOLATE],
        BILLING,
        ("denied", "admin", "isolate", 1),
    ),
    Case(
        "same-namespace-not-federated",
        "A federated peer whose path names the same namespace is not of the target's namespace.",
        [ISOLATE],
        PARTNER,
        ("denied", "admin", "isolate", 1),
    ),
    Case(
        "same-namespace-follows-template",
        "The peer's namespace is read under the configured workload ID template.",
        [ISOLATE],
        "spiffe://example.org/k8s/shop/web",
        ("allowed", "default", None, None),
        template="k8s/{namespace}/{service_account}",
    ),
    Case(
        "same-namespace-id-off-template",
        "An ID that does not fit the template names no namespace.",
        [ISOLATE],
        "spiffe://example.org/k8s/shop/web",
        ("denied", "admin", "isolate", 1),
    ),
    # type: Namespaces
    Case(
        "namespaces-selector-matches",
        "Namespaces matches local peers whose namespace's labels match the selector.",
        [ap("prod", rules=[rule([namespaces({"env": "prod"})])])],
        BILLING,
        ("allowed", "namespace", "shop/prod", 0),
    ),
    Case(
        "namespaces-selector-misses",
        "A namespace whose labels do not match is not selected.",
        [ap("dev", rules=[rule([namespaces({"env": "dev"})])])],
        BILLING,
        ("denied", "namespace", None, None),
    ),
    Case(
        "namespaces-unknown-labels",
        "A namespace whose labels the enforcer does not know matches no selector on other labels.",
        [
            ap(
                "not-dev",
                rules=[
                    rule(
                        [
                            {
                                "type": "Namespaces",
                                "namespaces": {
                                    "selector": {
                                        "matchExpressions": [
                                            {"key": "env", "operator": "NotIn", "values": ["dev"]}
                                        ]
                                    }
                                },
                            }
                        ]
                    )
                ],
            )
        ],
        "spiffe://example.org/ns/elsewhere/sa/x",
        ("denied", "namespace", None, None),
    ),
    Case(
        "namespaces-by-name-always-known",
        "kubernetes.io/metadata.name is known for every namespace.",
        [ap("by-name", rules=[rule([namespaces({"kubernetes.io/metadata.name": "elsewhere"})])])],
        "spiffe://example.org/ns/elsewhere/sa/x",
        ("allowed", "namespace", "shop/by-name", 0),
    ),
    # networkAttributes
    Case(
        "empty-ports-every-port",
        "ports: [] means every port (GEP-3779).",
        [ap("any-port", rules=[rule([sa("web")], ports=[])])],
        WEB,
        ("allowed", "namespace", "shop/any-port", 0),
        port=61000,
    ),
    Case(
        "port-range-inside",
        "A port inside an inclusive range matches.",
        [ap("range", rules=[network_rule([sa("web")], portRanges=[{"start": 8000, "end": 8100}])])],
        WEB,
        ("allowed", "namespace", "shop/range", 0),
        port=8100,
    ),
    Case(
        "port-range-outside",
        "A port outside every range does not.",
        [ap("range", rules=[network_rule([sa("web")], portRanges=[{"start": 8000, "end": 8100}])])],
        WEB,
        ("denied", "namespace", None, None),
        port=8101,
    ),
    Case(
        "port-range-or-ports",
        "portRanges are OR-ed with ports.",
        [
            ap(
                "both",
                rules=[
                    network_rule(
                        [sa("web")], ports=[5432], portRanges=[{"start": 8000, "end": 8100}]
                    )
                ],
            )
        ],
        WEB,
        ("allowed", "namespace", "shop/both", 0),
    ),
    Case(
        "cidr-inside",
        "A peer inside sourceCIDRs matches.",
        [ap("net", rules=[network_rule([sa("web")], sourceCIDRs=["10.0.0.0/8"])])],
        WEB,
        ("allowed", "namespace", "shop/net", 0),
        address="10.1.2.3",
    ),
    Case(
        "cidr-outside",
        "A peer outside every sourceCIDRs block does not.",
        [ap("net", rules=[network_rule([sa("web")], sourceCIDRs=["10.0.0.0/8"])])],
        WEB,
        ("denied", "namespace", None, None),
        address="192.168.1.1",
    ),
    Case(
        "cidr-except",
        "A peer inside an exceptSourceCIDRs block does not match.",
        [
            ap(
                "net",
                rules=[
                    network_rule(
                        [sa("web")], sourceCIDRs=["10.0.0.0/8"], exceptSourceCIDRs=["10.9.0.0/16"]
                    )
                ],
            )
        ],
        WEB,
        ("denied", "namespace", None, None),
        address="10.9.1.1",
    ),
    Case(
        "cidr-ipv6",
        "IPv6 blocks match IPv6 peers.",
        [ap("net", rules=[network_rule([sa("web")], sourceCIDRs=["fd00::/8"])])],
        WEB,
        ("allowed", "namespace", "shop/net", 0),
        address="fd12::1",
    ),
    Case(
        "cidr-ipv4-mapped",
        "An IPv4-mapped IPv6 address counts as its IPv4 address.",
        [ap("net", rules=[network_rule([sa("web")], sourceCIDRs=["10.0.0.0/8"])])],
        WEB,
        ("allowed", "namespace", "shop/net", 0),
        address="::ffff:10.0.0.7",
    ),
    Case(
        "cidr-unknown-address",
        "Without a known peer address no rule with sourceCIDRs matches.",
        [ap("net", rules=[network_rule([sa("web")], sourceCIDRs=["0.0.0.0/0", "::/0"])])],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "cidr-and-identity-or-other-identity",
        "Identity X from this network, or identity Y from anywhere, is one policy.",
        [
            ap(
                "mixed",
                rules=[
                    network_rule([sa("web")], sourceCIDRs=["10.0.0.0/8"]),
                    rule([sa("api", "billing")]),
                ],
            )
        ],
        BILLING,
        ("allowed", "namespace", "shop/mixed", 1),
        address="192.168.1.1",
    ),
    Case(
        "cidr-only-rule-any-peer",
        "A rule with only sourceCIDRs matches any peer from there, even without an SVID.",
        [
            cap(
                "nodes",
                tier="Baseline",
                rules=[network_rule(action="Deny", sourceCIDRs=["172.16.0.0/12"])],
            )
        ],
        None,
        ("denied", "baseline", "nodes", 0),
        address="172.16.5.5",
    ),
    # Defaults
    Case(
        "default-authenticated-admits-federated",
        "authenticated admits any peer with a verified SVID.",
        [],
        PARTNER,
        ("allowed", "default", None, None),
        default=DefaultPolicy.AUTHENTICATED,
    ),
    Case(
        "default-authenticated-refuses-no-svid",
        "authenticated refuses a peer without an SVID.",
        [],
        None,
        ("denied", "default", None, None),
        default=DefaultPolicy.AUTHENTICATED,
    ),
    Case(
        "default-local-authenticated-refuses-federated",
        "local-authenticated refuses a federated peer.",
        [],
        PARTNER,
        ("denied", "default", None, None),
        default=DefaultPolicy.LOCAL_AUTHENTICATED,
    ),
    Case(
        "default-local-authenticated-admits-local",
        "local-authenticated admits a local peer.",
        [],
        WEB,
        ("allowed", "default", None, None),
        default=DefaultPolicy.LOCAL_AUTHENTICATED,
    ),
    Case(
        "default-audit-allows",
        "audit allows what deny would refuse.",
        [],
        None,
        ("allowed", "default", None, None),
        default=DefaultPolicy.AUDIT,
    ),
]


def _decide(case: Case, *, explain: bool = False) -> Any:
    index = PolicyIndex(
        [parse_policy(doc) for doc in case.policies],
        trust_domain=TrustDomain("example.org"),
        default=case.default,
        namespaces=case.namespace_labels,
        workload_ids=WorkloadIdPattern(case.template),
    )
    peer = None if case.peer is None else SpiffeId.parse(case.peer)
    return index.decide(
        peer, Target("shop", {"app": "db"}), case.port, address=case.address, explain=explain
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_section_seven_one(case: Case) -> None:
    """Each case decides as authz.md 7.1 says (its ``doc`` names the clause)."""
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


def test_audit_marks_what_deny_would_refuse() -> None:
    """The audit default's verdict says deny would have refused the connection."""
    case = next(c for c in CASES if c.id == "default-audit-allows")
    assert _decide(case).to_dict()["audit"] == {"would": "denied"}


def test_every_port_of_a_range_decides_as_the_range_says() -> None:
    """The port map's stretches agree with the rule at both ends of a range and just outside them."""
    policy = ap(
        "range",
        rules=[
            network_rule([sa("web")], portRanges=[{"start": 8000, "end": 8002}], ports=[8005]),
            rule([sa("web")], ports=[8001]),
        ],
    )
    index = PolicyIndex([parse_policy(policy)], trust_domain=TrustDomain("example.org"))
    peer, target = SpiffeId.parse(WEB), Target("shop", {"app": "db"})
    allowed = {p for p in range(7990, 8020) if index.decide(peer, target, p).allowed}
    assert allowed == {8000, 8001, 8002, 8005}


def test_relabelling_escapes_only_admin_policies_selecting_pods() -> None:
    """An Admin policy selecting pods by labels says it can be escaped by relabelling; others do not."""
    by_pods = parse_policy(cap("pods", pods={"app": "db"}, rules=[rule([anyone()], action="Deny")]))
    everything = parse_policy(cap("all", rules=[rule([anyone()], action="Deny")]))
    baseline = parse_policy(
        cap("base", tier="Baseline", pods={"app": "db"}, rules=[rule([anyone()], action="Deny")])
    )
    owned = parse_policy(ap("own", rules=[rule([anyone()])]))
    assert [p.relabel_escapable for p in (by_pods, everything, baseline, owned)] == [
        True,
        False,
        False,
        False,
    ]


def test_one_peer_from_two_addresses_is_decided_for_each() -> None:
    """The per-peer cache keeps decisions apart by the networks the address is in."""
    policy = ap("net", rules=[network_rule([sa("web")], sourceCIDRs=["10.0.0.0/8"])])
    index = PolicyIndex([parse_policy(policy)], trust_domain=TrustDomain("example.org"))
    peer, target = SpiffeId.parse(WEB), Target("shop", {"app": "db"})
    answers = [
        index.decide(peer, target, 5432, address=address).allowed
        for address in ("10.0.0.1", "192.168.0.1", "10.0.0.2", None, "not-an-address")
    ]
    assert answers == [True, False, True, False, False]
