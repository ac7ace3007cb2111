"""The effective view of policies written in the section 7.1 language: its rows, columns, address groups, defaults
and the relabelling warning, as a workload owner reads them (table-driven, one case per addition)."""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.policy_docs import (
    Doc,
    ap,
    authenticated,
    cap,
    namespaces,
    network_rule,
    rule,
    sa,
    same_namespace,
    spiffe,
)

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy import PolicyIndex, Target, parse_policy
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.effective import EffectivePolicy, effective
from sigil.enforcer.policy.effective_text import render_text
from sigil.enforcer.policy.peer_classes import ClassKind, class_of
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern

LOCAL = TrustDomain("example.org")
DB = Target("shop", {"app": "db"})
PROD = {"env": "prod"}


def _view(*docs: Doc, **extra: Any) -> EffectivePolicy:
    extra.setdefault("namespace_labels", PROD)
    return effective([parse_policy(doc) for doc in docs], DB, trust_domain=LOCAL, **extra)


def _answer(view: EffectivePolicy, peer: str | None, port: int, address: str | None = None) -> str:
    """What the table says for one connection, looked up as a user would: the peer's class, port, address."""
    index = PolicyIndex(
        [e.policy for e in view.policies],
        trust_domain=LOCAL,
        default=view.default,
        namespaces={"shop": PROD},
    )
    found = None if peer is None else SpiffeId.parse(peer)
    cell = view.cell(class_of([row.peer for row in view.rows], index, found), port, address)
    decision = cell.decision
    direct = index.decide(found, DB, port, address=address)
    assert (direct.allowed, direct.policy, direct.rule) == (
        decision.allowed,
        decision.policy,
        decision.rule,
    )
    verdict = "allowed" if decision.allowed else "denied"
    return f"{verdict} {decision.tier.value} {decision.policy} {decision.rule}"


def _classes(view: EffectivePolicy) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for row in view.rows:
        if (row.peer.kind.value, row.peer.name) not in seen:
            seen.append((row.peer.kind.value, row.peer.name))
    return seen


ISOLATE = cap(
    "isolate",
    rules=[
        rule([same_namespace()], action="Allow"),
        rule([namespaces({"env": "prod"})], action="Allow"),
        rule(None, action="Deny", ports=[]),
    ],
)


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("spiffe://example.org/ns/shop/sa/web", "allowed admin isolate 0"),
        ("spiffe://example.org/ns/other-ns/sa/x", "denied admin isolate 2"),
        ("spiffe://example.org/ns/x/sa/y/z", "denied admin isolate 2"),
        ("spiffe://partner.org/ns/shop/sa/web", "denied admin isolate 2"),
        (None, "denied admin isolate 2"),
    ],
)
def test_one_cluster_policy_isolates_namespaces(peer: str | None, expected: str) -> None:
    """SameNamespace and Namespaces rows: the pod's own namespace is let in, any other namespace is not."""
    view = _view(ISOLATE)
    assert ("namespace", "shop") in _classes(view)
    # Any other namespace holds nothing a rule names: it is "any other authenticated peer of example.org".
    assert ("namespace", "(any namespace no rule names)") not in _classes(view)
    assert _answer(view, peer, 5432) == expected


def test_a_namespace_selector_shows_a_matching_and_a_non_matching_namespace() -> None:
    """A Namespaces source on the name label: the named namespace has its row; a namespace it does not select
    holds nothing a rule names, so it is decided as "any other authenticated peer of example.org"."""
    view = _view(
        cap(
            "from-monitoring",
            rules=[
                rule([namespaces({"kubernetes.io/metadata.name": "monitoring"})], action="Allow"),
                rule(None, action="Deny", ports=[]),
            ],
        )
    )
    answers = {
        (row.peer.kind.value, row.peer.name): row.cells[0].decision.allowed for row in view.rows
    }
    assert answers[("namespace", "monitoring")] is True
    assert answers[("trust-domain", "example.org")] is False
    assert _answer(view, "spiffe://example.org/ns/monitoring/sa/prom", 9090) == (
        "allowed admin from-monitoring 0"
    )
    assert _answer(view, "spiffe://example.org/ns/billing/sa/prom", 9090) == (
        "denied admin from-monitoring 1"
    )


def test_authenticated_sources_list_each_trust_domain_named() -> None:
    """An Authenticated source limited to partner.org: a row for it, and one for every domain nobody names."""
    view = _view(
        ap("partners", match={"app": "db"}, rules=[rule([authenticated("partner.org")])]),
    )
    assert ("trust-domain", "partner.org") in _classes(view)
    assert (
        _answer(view, "spiffe://partner.org/billing", 5432) == "allowed namespace shop/partners 0"
    )
    assert _answer(view, "spiffe://third.org/billing", 5432) == "denied namespace None None"
    assert _answer(view, "spiffe://example.org/ns/shop/sa/web", 5432) == (
        "denied namespace None None"
    )


def test_port_ranges_are_columns_and_other_is_a_port_no_rule_covers() -> None:
    """ports: [5432] and portRanges 8000-8100: the port, the range's stretch, and every other port."""
    view = _view(
        ap(
            "ranges",
            match={"app": "db"},
            rules=[
                network_rule([sa("web")], ports=[5432], portRanges=[{"start": 8000, "end": 8100}])
            ],
        )
    )
    assert view.to_dict()["ports"] == [5432, "8000-8100", "other"]
    other = next(column for column in view.columns if column.name == "other")
    assert other.asked == 1
    web = "spiffe://example.org/ns/shop/sa/web"
    assert _answer(view, web, 8050) == "allowed namespace shop/ranges 0"
    assert _answer(view, web, 8101) == "denied namespace None None"
    assert _answer(view, web, 5432) == "allowed namespace shop/ranges 0"


def test_an_empty_port_list_means_every_port() -> None:
    """GEP-3779's ports: [] names no column: the rule decides "other", which is every port."""
    view = _view(ap("any-port", match={"app": "db"}, rules=[network_rule([sa("web")], ports=[])]))
    assert view.to_dict()["ports"] == ["other"]
    assert _answer(view, "spiffe://example.org/ns/shop/sa/web", 65535) == (
        "allowed namespace shop/any-port 0"
    )


CIDRS = ap(
    "from-lan",
    match={"app": "db"},
    rules=[
        network_rule(
            [sa("web")], sourceCIDRs=["10.0.0.0/8", "fd00::/8"], exceptSourceCIDRs=["10.1.0.0/16"]
        )
    ],
)


@pytest.mark.parametrize(
    ("address", "group", "expected"),
    [
        (
            "10.0.0.5",
            "in 10.0.0.0/8, fd00::/8 except 10.1.0.0/16",
            "allowed namespace shop/from-lan 0",
        ),
        (
            "::ffff:10.2.3.4",
            "in 10.0.0.0/8, fd00::/8 except 10.1.0.0/16",
            "allowed namespace shop/from-lan 0",
        ),
        (
            "fd00::7",
            "in 10.0.0.0/8, fd00::/8 except 10.1.0.0/16",
            "allowed namespace shop/from-lan 0",
        ),
        ("10.1.2.3", "outside every network a rule names", "denied namespace None None"),
        ("192.0.2.1", "outside every network a rule names", "denied namespace None None"),
        ("2001:db8::1", "outside every network a rule names", "denied namespace None None"),
        (None, "no known address", "denied namespace None None"),
        ("not-an-address", "no known address", "denied namespace None None"),
    ],
)
def test_source_cidrs_make_address_groups(address: str | None, group: str, expected: str) -> None:
    """Inside a block, inside its exception, outside every block, and no known address: each its own row."""
    view = _view(CIDRS)
    groups = [g.name for g in view.addresses]
    assert groups == [
        "no known address",
        "outside every network a rule names",
        "in 10.0.0.0/8, fd00::/8 except 10.1.0.0/16",
    ]
    assert _answer(view, "spiffe://example.org/ns/shop/sa/web", 5432, address) == expected
    web_rows = [
        row.address.name
        for row in view.rows
        if row.peer.kind is ClassKind.SERVICE_ACCOUNT and row.peer.name == "shop/web"
    ]
    assert group in web_rows
    access = view.to_dict()["access"]
    assert {row["address"]["group"] for row in access} == set(groups)


@pytest.mark.parametrize(
    ("default", "local", "foreign", "none"),
    [
        (DefaultPolicy.ALLOW, True, True, True),
        (DefaultPolicy.DENY, False, False, False),
        (DefaultPolicy.AUTHENTICATED, True, True, False),
        (DefaultPolicy.LOCAL_AUTHENTICATED, True, False, False),
        (DefaultPolicy.AUDIT, True, True, True),
    ],
)
def test_every_default_is_shown_for_the_peers_it_admits(
    default: DefaultPolicy, local: bool, foreign: bool, none: bool
) -> None:
    """With no policy, the table shows what each --default does to a local peer, a foreign one, and no SVID."""
    view = _view(default=default)
    assert view.to_dict()["target"]["default"] == default.value
    by_kind = {row.peer.kind: row.cells[0].decision.allowed for row in view.rows}
    assert by_kind[ClassKind.TRUST_DOMAIN] is local
    assert by_kind[ClassKind.OTHER_TRUST_DOMAIN] is foreign
    assert by_kind[ClassKind.NO_SVID] is none
    assert _answer(view, "spiffe://partner.org/x", 80).startswith(
        "allowed" if foreign else "denied"
    )


def test_relabel_escapable_admin_policies_are_flagged_in_json_and_text() -> None:
    """An Admin policy that picks pods by labels carries the relabelling warning; one for every pod does not."""
    view = _view(
        cap("by-label", pods={"app": "db"}, rules=[rule([sa("web", "shop")], action="Allow")]),
        cap("whole-namespace", priority=20, rules=[rule([sa("api", "shop")], action="Allow")]),
    )
    flags = {p["name"]: p["relabel_escapable"] for p in view.to_dict()["policies"]}
    assert flags == {"by-label": True, "whole-namespace": False}
    text = render_text(view.to_dict())
    warning = "relabelling a pod escapes this Admin policy"
    assert text.count(warning) == 1
    assert text.index("by-label") < text.index(warning) < text.index("whole-namespace")


def test_a_workload_id_template_that_puts_the_pod_first_still_covers_every_peer() -> None:
    """Under ``{pod_name}/{namespace}`` a prefix ``/ns/*`` names pods called "ns": a peer of such a pod in the
    pod's own namespace holds both the prefix and the namespace, and has a row of its own."""
    template = WorkloadIdPattern("{pod_name}/{namespace}")
    docs = [
        ap(
            "from-ns-pods", match={"app": "db"}, rules=[rule([spiffe("spiffe://example.org/ns/*")])]
        ),
        ap("not-own-namespace", action="DENY", rules=[rule([same_namespace()], ports=[5432])]),
    ]
    policies = [parse_policy(doc) for doc in docs]
    view = effective(policies, DB, trust_domain=LOCAL, workload_ids=template)
    index = PolicyIndex(policies, trust_domain=LOCAL, workload_ids=template)
    classes = [row.peer for row in view.rows]
    for peer, port, expected in [
        ("spiffe://example.org/ns/shop", 5432, "shop/not-own-namespace"),
        ("spiffe://example.org/ns/shop", 80, "shop/from-ns-pods"),
        ("spiffe://example.org/ns/billing", 5432, "shop/from-ns-pods"),
        ("spiffe://example.org/web/shop", 5432, "shop/not-own-namespace"),
        ("spiffe://example.org/web/billing", 5432, None),
    ]:
        found = SpiffeId.parse(peer)
        cell = view.cell(class_of(classes, index, found), port)
        assert cell.decision.policy == expected == index.decide(found, DB, port).policy
