"""The effective policy of a workload: rules in evaluation order, the access table, shadowed rules, provenance."""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.policy_docs import Doc, anyone, ap, cap, rule, sa, spiffe

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.errors import RequestError
from sigil.enforcer.policy import PolicyIndex, Target, parse_policy
from sigil.enforcer.policy.effective import SCHEMA_VERSION, EffectivePolicy, effective
from sigil.enforcer.policy.origin import Origin, OriginKind, policy_revision
from sigil.enforcer.policy.peer_classes import ClassKind, class_of

LOCAL = TrustDomain("example.org")
DB = Target("shop", {"app": "db"})
WEB = "spiffe://example.org/ns/shop/sa/web"


def _view(*docs: Doc, port: int | None = None, **extra: Any) -> EffectivePolicy:
    return effective(
        [parse_policy(doc) for doc in docs], DB, trust_domain=LOCAL, port=port, **extra
    )


def _verdicts(view: EffectivePolicy, kind: ClassKind, name: str = "") -> dict[object, str]:
    """One row as ``{port or "other": "allowed namespace shop/x 0"}``, compact enough to compare whole."""
    row = next(r for r in view.rows if r.peer.kind is kind and r.peer.name == name)
    return {
        "other" if cell.port is None else cell.port: " ".join(
            str(part)
            for part in (
                "allowed" if cell.decision.allowed else "denied",
                cell.decision.tier.value,
                cell.decision.policy,
                cell.decision.rule,
            )
        )
        for cell in row.cells
    }


def _shadowed(view: EffectivePolicy) -> list[str]:
    return [f"{e.match.policy} {e.match.rule}" for e in view.rules if e.shadowed]


def test_admin_pass_hands_the_namespace_tier_its_own_peers() -> None:
    """An admin Pass for the namespace's accounts lets its ALLOW decide them; everyone else meets the admin Deny."""
    view = _view(
        cap(
            "guard",
            priority=1,
            rules=[rule([sa("*", "shop")], action="Pass"), rule([anyone()], action="Deny")],
        ),
        ap("db-from-web", match={"app": "db"}, rules=[rule([sa("web")], ports=[5432])]),
    )
    assert _verdicts(view, ClassKind.SERVICE_ACCOUNT, "shop/web") == {
        5432: "allowed namespace shop/db-from-web 0",
        "other": "denied namespace None None",
    }
    assert _verdicts(view, ClassKind.SERVICE_ACCOUNTS, "shop/*") == {
        5432: "denied namespace None None",
        "other": "denied namespace None None",
    }
    for kind, name in [(ClassKind.TRUST_DOMAIN, "example.org"), (ClassKind.NO_SVID, "")]:
        assert _verdicts(view, kind, name) == {
            5432: "denied admin guard 1",
            "other": "denied admin guard 1",
        }
    assert _shadowed(view) == []
    assert [e.policy.name for e in view.policies] == ["guard", "db-from-web"]


def test_namespace_deny_beats_allow_and_the_rest_are_denied() -> None:
    """A namespace DENY for batch outranks the ALLOW of every shop account; other peers are not allowed."""
    view = _view(
        ap("all-shop", rules=[rule([sa("*")], ports=[8080])]),
        ap("no-batch", action="DENY", rules=[rule([sa("batch")])]),
    )
    assert _verdicts(view, ClassKind.SERVICE_ACCOUNT, "shop/batch") == {
        8080: "denied namespace shop/no-batch 0",
        "other": "denied namespace shop/no-batch 0",
    }
    assert _verdicts(view, ClassKind.SERVICE_ACCOUNTS, "shop/*") == {
        8080: "allowed namespace shop/all-shop 0",
        "other": "denied namespace None None",
    }
    assert _verdicts(view, ClassKind.OTHER_TRUST_DOMAIN) == {
        8080: "denied namespace None None",
        "other": "denied namespace None None",
    }
    # Evaluation order: DENY policies before ALLOW ones, whatever their names.
    assert [e.match.policy for e in view.rules] == ["shop/no-batch", "shop/all-shop"]


def test_baseline_decides_until_a_namespace_allow_exists() -> None:
    """Baseline rules decide a pod with no namespace policy, and are all shadowed once an ALLOW selects it."""
    baseline = [
        cap(
            "monitoring",
            tier="Baseline",
            priority=1,
            rules=[
                rule([spiffe("spiffe://example.org/ns/monitoring/*")], ports=[9090], action="Allow")
            ],
        ),
        cap("closed", tier="Baseline", priority=100, rules=[rule([anyone()], action="Deny")]),
    ]
    view = _view(*baseline)
    assert _verdicts(view, ClassKind.SPIFFE_PREFIX, "spiffe://example.org/ns/monitoring/*") == {
        9090: "allowed baseline monitoring 0",
        "other": "denied baseline closed 0",
    }
    assert _shadowed(view) == []
    view = _view(*baseline, ap("open", rules=[rule([anyone()])]))
    assert _shadowed(view) == ["monitoring 0", "closed 0"]
    assert [e.policy.name for e in view.policies if e.shadowed] == ["monitoring", "closed"]


def test_dry_run_shows_the_would_be_verdict_and_never_the_enforced_one() -> None:
    """A dry-run DENY for web leaves web allowed by the default, and its cell says it would be denied."""
    view = _view(ap("try-no-web", action="DENY", rules=[rule([sa("web")])], dry_run=True))
    row = next(r for r in view.rows if r.peer.kind is ClassKind.SERVICE_ACCOUNT)
    (cell,) = row.cells
    assert cell.decision.allowed
    assert cell.decision.shadow is not None
    assert (cell.decision.shadow.allowed, cell.decision.shadow.policy) == (False, "shop/try-no-web")
    assert view.to_dict()["access"][0]["verdicts"][0]["dry_run"]["decision"] == "denied"
    assert _shadowed(view) == []


def test_a_rule_covered_by_an_earlier_one_is_shadowed() -> None:
    """An ALLOW rule for web behind a rule allowing every shop account can never decide; its policy still can."""
    view = _view(ap("db", rules=[rule([sa("*")]), rule([sa("web")])]))
    assert _shadowed(view) == ["shop/db 1"]
    assert [e.shadowed for e in view.policies] == [False]


def test_an_admin_deny_of_everyone_shadows_every_later_policy() -> None:
    """After an admin Deny of any peer, nothing in the namespace or baseline tier decides, and says so."""
    view = _view(
        cap("lockdown", priority=0, rules=[rule([anyone()], action="Deny")]),
        ap("db", rules=[rule([sa("web")])]),
        ap("never", action="DENY", rules=[rule([spiffe(WEB)])]),
    )
    assert _shadowed(view) == ["shop/never 0", "shop/db 0"]
    assert [(e.policy.name, e.shadowed) for e in view.policies] == [
        ("lockdown", False),
        ("never", True),
        ("db", True),
    ]


def test_an_allow_policy_without_rules_denies_everyone_and_is_not_shadowed() -> None:
    """GEP-3779's "allow nothing": every cell is denied by deny-if-not-allowed, and the policy is credited."""
    view = _view(ap("nothing", rules=[]))
    assert {cell.decision.allowed for row in view.rows for cell in row.cells} == {False}
    assert [e.shadowed for e in view.policies] == [False]


def test_port_limits_the_table_to_one_column() -> None:
    """With a port the table has that one column, decided on that port."""
    view = _view(ap("db", rules=[rule([sa("web")], ports=[5432])]), port=80)
    assert view.to_dict()["ports"] == [80]
    assert _verdicts(view, ClassKind.SERVICE_ACCOUNT, "shop/web") == {
        80: "denied namespace None None"
    }


def test_json_is_versioned_and_carries_each_policys_source() -> None:
    """The JSON form has its schema version, the target, and the origin given for each policy."""
    doc = ap("db-from-web", rules=[rule([sa("web")], ports=[5432])])
    origin = Origin(kind=OriginKind.CRD, name="shop/db-from-web", generation=4, revision="abc")
    view = _view(doc, origins={("AuthorizationPolicy", "shop", "db-from-web"): origin})
    data = view.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert data["target"] == {
        "namespace": "shop",
        "labels": {"app": "db"},
        "namespace_labels": {"kubernetes.io/metadata.name": "shop"},
        "trust_domain": "example.org",
        "default": "allow",
        "port": None,
    }
    assert data["policies"][0]["source"] == {
        "kind": "crd",
        "name": "shop/db-from-web",
        "document": None,
        "generation": 4,
        "revision": "abc",
    }
    assert str(origin) == "CRD shop/db-from-web, generation 4 (revision abc)"
    assert data["rules"][0]["sources"] == ["serviceAccount shop/web"]
    assert data["ports"] == [5432, "other"]


def test_every_peer_falls_in_a_listed_class() -> None:
    """Peers below a prefix, of a named account, of another domain, or none, each land in the class meant for them."""
    docs = [
        ap(
            "a",
            rules=[
                rule([spiffe("spiffe://example.org/ns/shop/sa/*"), sa("*", "batch"), sa("web")])
            ],
        )
    ]
    view = _view(*docs)
    index = PolicyIndex([parse_policy(d) for d in docs], trust_domain=LOCAL)
    classes = [row.peer for row in view.rows]

    def kind(peer: str | None) -> tuple[ClassKind, str]:
        found = class_of(classes, index, None if peer is None else SpiffeId.parse(peer))
        return (found.kind, found.name)

    assert kind(WEB) == (ClassKind.SERVICE_ACCOUNT, "shop/web")
    assert kind("spiffe://example.org/ns/shop/sa/api") == (
        ClassKind.SPIFFE_PREFIX,
        "spiffe://example.org/ns/shop/sa/*",
    )
    assert kind("spiffe://example.org/ns/batch/sa/job") == (ClassKind.SERVICE_ACCOUNTS, "batch/*")
    assert kind("spiffe://example.org/x") == (ClassKind.TRUST_DOMAIN, "example.org")
    assert kind(None) == (ClassKind.NO_SVID, "")


def test_origin_round_trips_and_refuses_nonsense() -> None:
    """An origin survives its JSON form; a wrong field is named in the error."""
    origin = Origin(
        kind=OriginKind.FILE, name="/p/a.yaml", document=2, revision=policy_revision("{}")
    )
    assert Origin.parse(origin.to_dict()) == origin
    assert len(origin.revision or "") == 12
    with pytest.raises(RequestError, match=r"origin\.kind"):
        Origin.parse({"kind": "ftp", "name": "x"})
    with pytest.raises(RequestError, match=r"origin\.generation"):
        Origin.parse({"kind": "crd", "name": "a/b", "generation": True})
