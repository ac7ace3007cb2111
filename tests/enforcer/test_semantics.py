"""Every clause of authz.md part 7, one case each, decided through policies parsed as a user writes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from enforcer.policy_docs import Doc, anyone, ap, cap, rule, sa, spiffe

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy import PolicyIndex, Target, parse_policy

WEB = "spiffe://example.org/ns/shop/sa/web"
ADMIN_SA = "spiffe://example.org/ns/ops/sa/admin"


@dataclass(frozen=True)
class Case:
    """One connection against one policy set, and the decision part 7 requires."""

    id: str
    doc: str
    policies: list[Doc]
    peer: str | None
    expect: tuple[str, str, str | None, int | None]  # decision, tier, policy, rule
    namespace: str = "shop"
    labels: dict[str, str] = field(default_factory=lambda: {"app": "db"})
    port: int = 5432
    default_allow: bool = True
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)


ALLOW_WEB = ap("allow-web", match={"app": "db"}, rules=[rule([sa("web")])])

CASES = [
    # Step 1: the admin tier.
    Case(
        "admin-allow-beats-namespace-deny",
        "An admin Allow decides before any namespace DENY is looked at.",
        [
            cap("ops", rules=[rule([spiffe(ADMIN_SA)], action="Allow")]),
            ap("deny-all", action="DENY", rules=[rule([anyone()])]),
        ],
        ADMIN_SA,
        ("allowed", "admin", "ops", 0),
    ),
    Case(
        "admin-deny-beats-namespace-allow",
        "An admin Deny decides before any namespace ALLOW is looked at.",
        [cap("quarantine", rules=[rule([sa("web", "shop")], action="Deny")]), ALLOW_WEB],
        WEB,
        ("denied", "admin", "quarantine", 0),
    ),
    Case(
        "admin-lower-priority-first",
        "Admin policies are consulted by ascending priority, whatever their names.",
        [
            cap("a-allow", priority=20, rules=[rule([anyone()], action="Allow")]),
            cap("z-deny", priority=5, rules=[rule([anyone()], action="Deny")]),
        ],
        WEB,
        ("denied", "admin", "z-deny", 0),
    ),
    Case(
        "admin-ties-by-name",
        "Admin policies of equal priority are consulted in name order.",
        [
            cap("b-deny", priority=7, rules=[rule([anyone()], action="Deny")]),
            cap("a-allow", priority=7, rules=[rule([anyone()], action="Allow")]),
        ],
        WEB,
        ("allowed", "admin", "a-allow", 0),
    ),
    Case(
        "admin-first-matching-rule",
        "Within an admin policy the first matching rule decides and later ones are not consulted.",
        [
            cap(
                "ops",
                rules=[
                    rule([sa("other", "shop")], action="Allow"),
                    rule([sa("web", "shop")], action="Deny"),
                    rule([anyone()], action="Allow"),
                ],
            )
        ],
        WEB,
        ("denied", "admin", "ops", 1),
    ),
    Case(
        "admin-pass-goes-to-namespace-tier",
        "A Pass stops the admin tier, so a later admin Deny is skipped and the namespace tier decides.",
        [
            cap("defer", priority=1, rules=[rule([sa("web", "shop")], action="Pass")]),
            cap("deny", priority=2, rules=[rule([anyone()], action="Deny")]),
            ALLOW_WEB,
        ],
        WEB,
        ("allowed", "namespace", "shop/allow-web", 0),
    ),
    Case(
        "admin-namespace-selector-limits",
        "An admin policy whose namespaceSelector misses the target's namespace does not apply.",
        [cap("prod-only", namespaces={"env": "prod"}, rules=[rule([anyone()], action="Deny")])],
        WEB,
        ("allowed", "default", None, None),
        namespace_labels={"shop": {"env": "dev"}},
    ),
    Case(
        "admin-pod-selector-limits",
        "An admin policy whose podSelector misses the target pod does not apply.",
        [cap("web-pods", pods={"app": "web"}, rules=[rule([anyone()], action="Deny")])],
        WEB,
        ("allowed", "default", None, None),
    ),
    # Step 2: the namespace tier.
    Case(
        "namespace-deny-wins",
        "A matching DENY rule denies even when an ALLOW rule matches too.",
        [ALLOW_WEB, ap("no-web", action="DENY", rules=[rule([sa("web")])])],
        WEB,
        ("denied", "namespace", "shop/no-web", 0),
    ),
    Case(
        "namespace-allow-matches",
        "A matching rule of an ALLOW policy selecting the target allows.",
        [ALLOW_WEB],
        WEB,
        ("allowed", "namespace", "shop/allow-web", 0),
    ),
    Case(
        "namespace-deny-if-not-allowed",
        "Once an ALLOW policy selects the target, a peer no rule matches is denied.",
        [ALLOW_WEB],
        "spiffe://example.org/ns/shop/sa/batch",
        ("denied", "namespace", None, None),
    ),
    Case(
        "namespace-allow-must-select-target",
        "An ALLOW policy whose selector misses the target pod does not make it deny-if-not-allowed.",
        [ap("allow-cache", match={"app": "cache"}, rules=[rule([sa("web")])])],
        "spiffe://example.org/ns/shop/sa/batch",
        ("allowed", "default", None, None),
    ),
    Case(
        "namespace-other-namespace-ignored",
        "Policies of another namespace never apply to the target.",
        [ap("deny-all", namespace="other", action="DENY", rules=[rule([anyone()])])],
        WEB,
        ("allowed", "default", None, None),
    ),
    Case(
        "namespace-allow-nothing",
        "An ALLOW policy without rules denies every peer of the pods it selects.",
        [ap("allow-nothing", match={"app": "db"})],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "namespace-unmatched-deny-alone",
        "A DENY policy that does not match leaves the decision to the next steps.",
        [ap("no-batch", action="DENY", rules=[rule([sa("batch")])])],
        WEB,
        ("allowed", "default", None, None),
    ),
    Case(
        "namespace-empty-selector-selects-all",
        "A targetRef selector of {} selects every pod of the namespace.",
        [ap("deny-all", action="DENY", rules=[rule([anyone()])])],
        WEB,
        ("denied", "namespace", "shop/deny-all", 0),
        labels={"app": "anything"},
    ),
    # Step 3: the baseline tier.
    Case(
        "baseline-decides-when-namespace-silent",
        "The baseline tier decides when the namespace tier did not.",
        [cap("default-deny", tier="Baseline", rules=[rule([anyone()], action="Deny")])],
        WEB,
        ("denied", "baseline", "default-deny", 0),
    ),
    Case(
        "baseline-skipped-when-allow-policy-selects",
        "An ALLOW policy selecting the target decides, so the baseline tier is not consulted.",
        [cap("allow-all", tier="Baseline", rules=[rule([anyone()], action="Allow")]), ALLOW_WEB],
        "spiffe://example.org/ns/shop/sa/batch",
        ("denied", "namespace", None, None),
    ),
    Case(
        "baseline-skipped-when-namespace-denies",
        "A matching namespace DENY decides, so a baseline Allow is not consulted.",
        [
            cap("allow-all", tier="Baseline", rules=[rule([anyone()], action="Allow")]),
            ap("deny-all", action="DENY", rules=[rule([anyone()])]),
        ],
        WEB,
        ("denied", "namespace", "shop/deny-all", 0),
    ),
    Case(
        "baseline-by-priority",
        "Baseline policies are consulted by ascending priority and the first matching rule decides.",
        [
            cap("late", tier="Baseline", priority=9, rules=[rule([anyone()], action="Deny")]),
            cap(
                "early",
                tier="Baseline",
                priority=3,
                rules=[rule([sa("web", "shop")], action="Allow")],
            ),
        ],
        WEB,
        ("allowed", "baseline", "early", 0),
        default_allow=False,
    ),
    # Step 4: the configured default.
    Case(
        "default-allow",
        "With no policy at all the default is allow (GEP-3779's no policy, no change).",
        [],
        None,
        ("allowed", "default", None, None),
    ),
    Case(
        "default-deny",
        "An operator who configures deny gets deny when no tier decided.",
        [],
        WEB,
        ("denied", "default", None, None),
        default_allow=False,
    ),
    # Namespaces are selected by their labels.
    Case(
        "namespace-metadata-name-label",
        "Every namespace carries kubernetes.io/metadata.name, even with no labels configured.",
        [
            cap(
                "shop-only",
                namespaces={"kubernetes.io/metadata.name": "shop"},
                rules=[rule([anyone()], action="Deny")],
            )
        ],
        WEB,
        ("denied", "admin", "shop-only", 0),
    ),
    Case(
        "namespace-configured-labels",
        "A namespaceSelector matches the namespace's configured labels.",
        [cap("prod-only", namespaces={"env": "prod"}, rules=[rule([anyone()], action="Deny")])],
        WEB,
        ("denied", "admin", "prod-only", 0),
        namespace_labels={"shop": {"env": "prod"}},
    ),
    # Matching.
    Case(
        "ports-restrict-rule",
        "A rule with ports does not match a connection to another port.",
        [ap("web-http", match={"app": "db"}, rules=[rule([sa("web")], ports=[80])])],
        WEB,
        ("denied", "namespace", None, None),
        port=5432,
    ),
    Case(
        "ports-and-sources-both-needed",
        "A rule matches only when one of its sources and one of its ports match.",
        [ap("web-pg", match={"app": "db"}, rules=[rule([sa("web")], ports=[80, 5432])])],
        WEB,
        ("allowed", "namespace", "shop/web-pg", 0),
    ),
    Case(
        "rules-are-ored",
        "A later rule of the policy may match when an earlier one does not.",
        [ap("two", match={"app": "db"}, rules=[rule([sa("batch")]), rule([sa("web")])])],
        WEB,
        ("allowed", "namespace", "shop/two", 1),
    ),
    Case(
        "omitted-sources-any-peer-without-svid",
        "A rule without sources matches a peer that presented no SVID.",
        [ap("any", match={"app": "db"}, rules=[rule([anyone()])])],
        None,
        ("allowed", "namespace", "shop/any", 0),
    ),
    Case(
        "empty-sources-match-nothing",
        "A rule with an empty sources list matches no peer at all.",
        [ap("nothing", match={"app": "db"}, rules=[rule([])])],
        WEB,
        ("denied", "namespace", None, None),
    ),
    Case(
        "no-svid-matches-no-identity-source",
        "A peer without a valid SVID matches no ServiceAccount or SPIFFE source.",
        [ap("ids", rules=[rule([sa("*"), spiffe("spiffe://example.org/*")])])],
        None,
        ("denied", "namespace", None, None),
    ),
    Case(
        "service-account-local-domain-only",
        "A ServiceAccount source does not match the same path in another trust domain.",
        [ALLOW_WEB],
        "spiffe://partner.org/ns/shop/sa/web",
        ("denied", "namespace", None, None),
    ),
    Case(
        "service-account-wildcard",
        "A ServiceAccount name of * matches every account of that namespace.",
        [ap("shop-accounts", rules=[rule([sa("*")])])],
        "spiffe://example.org/ns/shop/sa/anything",
        ("allowed", "namespace", "shop/shop-accounts", 0),
    ),
    Case(
        "service-account-wildcard-one-namespace",
        "A ServiceAccount name of * does not match accounts of another namespace.",
        [ap("shop-accounts", rules=[rule([sa("*")])])],
        "spiffe://example.org/ns/other/sa/web",
        ("denied", "namespace", None, None),
    ),
    Case(
        "service-account-namespace-defaults-to-policy",
        "A ServiceAccount source without a namespace means the policy's own namespace.",
        [ALLOW_WEB],
        "spiffe://example.org/ns/other/sa/web",
        ("denied", "namespace", None, None),
    ),
    Case(
        "service-account-explicit-namespace",
        "A ServiceAccount source may name an account of another namespace.",
        [ap("from-ops", rules=[rule([sa("admin", "ops")])])],
        ADMIN_SA,
        ("allowed", "namespace", "shop/from-ops", 0),
    ),
    Case(
        "spiffe-exact-federated",
        "A SPIFFE source matches an identity of another (federated) trust domain exactly.",
        [ap("partner", rules=[rule([spiffe("spiffe://partner.org/billing")])])],
        "spiffe://partner.org/billing",
        ("allowed", "namespace", "shop/partner", 0),
    ),
    Case(
        "spiffe-prefix-below",
        "A SPIFFE source ending in /* matches identities below that path.",
        [ap("partner", rules=[rule([spiffe("spiffe://partner.org/billing/*")])])],
        "spiffe://partner.org/billing/eu/worker",
        ("allowed", "namespace", "shop/partner", 0),
    ),
    Case(
        "spiffe-prefix-not-the-prefix-itself",
        "A SPIFFE source ending in /* does not match the path it names, only what lies below.",
        [ap("partner", rules=[rule([spiffe("spiffe://partner.org/billing/*")])])],
        "spiffe://partner.org/billing",
        ("denied", "namespace", None, None),
    ),
    Case(
        "spiffe-prefix-segment-boundary",
        "A SPIFFE prefix matches whole path segments, not a longer segment sharing its letters.",
        [ap("partner", rules=[rule([spiffe("spiffe://partner.org/billing/*")])])],
        "spiffe://partner.org/billing2/x",
        ("denied", "namespace", None, None),
    ),
    Case(
        "spiffe-prefix-within-trust-domain",
        "A SPIFFE prefix never matches another trust domain.",
        [ap("partner", rules=[rule([spiffe("spiffe://partner.org/*")])])],
        "spiffe://partner.org.evil/x",
        ("denied", "namespace", None, None),
    ),
    # Dry run.
    Case(
        "dry-run-deny-not-enforced",
        "A dry-run DENY that matches does not deny.",
        [ap("try-deny", action="DENY", rules=[rule([anyone()])], dry_run=True)],
        WEB,
        ("allowed", "default", None, None),
    ),
    Case(
        "dry-run-allow-no-deny-if-not-allowed",
        "A dry-run ALLOW policy does not make its target deny-if-not-allowed.",
        [ap("try-allow", match={"app": "db"}, rules=[rule([sa("batch")])], dry_run=True)],
        WEB,
        ("allowed", "default", None, None),
    ),
    Case(
        "dry-run-admin-not-enforced",
        "A dry-run admin Deny does not deny.",
        [cap("try", rules=[rule([anyone()], action="Deny")], dry_run=True), ALLOW_WEB],
        WEB,
        ("allowed", "namespace", "shop/allow-web", 0),
    ),
]


def _decide(case: Case, *, explain: bool = False) -> Any:
    index = PolicyIndex(
        [parse_policy(doc) for doc in case.policies],
        trust_domain=TrustDomain("example.org"),
        default_allow=case.default_allow,
        namespaces=case.namespace_labels,
    )
    peer = None if case.peer is None else SpiffeId.parse(case.peer)
    return index.decide(peer, Target(case.namespace, case.labels), case.port, explain=explain)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_part_seven(case: Case) -> None:
    """Each case decides as authz.md part 7 says (its ``doc`` names the clause)."""
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


def test_explain_lists_every_matching_rule() -> None:
    """An explained decision names the deciding rule and every other enforcing rule that matched."""
    case = Case(
        "explain",
        "",
        [
            cap("defer", priority=1, rules=[rule([anyone()], action="Pass")]),
            ALLOW_WEB,
            ap("also", match={"app": "db"}, rules=[rule([sa("*")], ports=[5432])]),
            cap("fallback", tier="Baseline", rules=[rule([anyone()], action="Deny")]),
        ],
        WEB,
        ("allowed", "namespace", "shop/allow-web", 0),
    )
    decision = _decide(case, explain=True)
    assert [(m.tier.value, m.policy, m.rule) for m in decision.matches] == [
        ("admin", "defer", 0),
        ("namespace", "shop/allow-web", 0),
        ("namespace", "shop/also", 0),
        ("baseline", "fallback", 0),
    ]
    assert "rule 0 of AuthorizationPolicy shop/allow-web" in decision.reason


def test_dry_run_is_reported_in_a_shadow_verdict() -> None:
    """A matching dry-run DENY shows as a match and as a shadow denial, while the connection is allowed."""
    case = Case(
        "shadow",
        "",
        [ALLOW_WEB, ap("try-deny", action="DENY", rules=[rule([sa("web")])], dry_run=True)],
        WEB,
        ("allowed", "namespace", "shop/allow-web", 0),
    )
    decision = _decide(case)
    assert decision.allowed
    assert decision.shadow is not None
    assert not decision.shadow.allowed
    assert decision.shadow.policy == "shop/try-deny"
    assert [(m.policy, m.rule, m.dry_run) for m in decision.dry_run] == [("shop/try-deny", 0, True)]


def test_no_shadow_without_dry_run_policies() -> None:
    """Without dry-run policies selecting the target there is no shadow verdict to report."""
    decision = _decide(CASES[0])
    assert decision.shadow is None
    assert decision.dry_run == ()
