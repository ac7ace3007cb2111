"""Provenance on the wire is optional both ways: old peers send none, odd entries never refuse a policy."""

from __future__ import annotations

import json

from enforcer.policy_docs import ap, rule, sa

from sigil.enforcer.policy import wire
from sigil.enforcer.policy.documents import judge
from sigil.enforcer.policy.origin import Origin, OriginKind, OriginWire, wire_origins
from sigil.enforcer.policy.receiver import AgentPolicySource
from sigil.enforcer.policy.schema import Where
from sigil.issuer.client import PolicyUpdate

DOC = ap("db-from-web", rules=[rule([sa("web")])])
KEY = ("AuthorizationPolicy", "shop", "db-from-web")
CRD = Origin(kind=OriginKind.CRD, name="shop/db-from-web", generation=4, revision="0123456789ab")


def _body(**extra: object) -> dict[str, object]:
    return {"revision": 3, "digest": "d", "policies": [DOC], "namespaces": {}, **extra}


def test_an_issuer_that_sends_no_origins_still_delivers_its_policies() -> None:
    """A body from an issuer older than provenance parses, with every origin unknown."""
    update = PolicyUpdate.parse(_body())  # type: ignore[arg-type]
    assert [p.name for p in update.policies] == ["db-from-web"]
    assert update.origins == {}


def test_an_issuers_origins_arrive_by_policy() -> None:
    """Origins sent beside the documents are matched to their policies; an unreadable one is left out."""
    update = PolicyUpdate.parse(_body(origins=[CRD.to_dict()]))  # type: ignore[arg-type]
    assert update.origins == {KEY: CRD}
    assert str(update.origins[KEY]) == "CRD shop/db-from-web, generation 4 (revision 0123456789ab)"
    odd = PolicyUpdate.parse(_body(origins=[{"kind": "git", "name": "x"}]))  # type: ignore[arg-type]
    assert ([p.name for p in odd.policies], odd.origins) == (["db-from-web"], {})


def test_the_agents_list_round_trips() -> None:
    """What the agent stores and sends (:func:`wire_origins`) is what the next hop reads back."""
    accepted = judge([(DOC, Where("t"))], source="t").accepted
    assert wire_origins(accepted, {KEY: CRD}) == [CRD.to_dict()]
    assert wire_origins(accepted, {}) == [None]


def test_origins_kept_from_one_set_to_the_next_write_each_set_as_it_is() -> None:
    """:class:`OriginWire` writes every set as :func:`wire_origins` does, as the origins come, stay and go."""
    other = ap("db-from-batch", rules=[rule([sa("batch")])])
    accepted = judge([(DOC, Where("t")), (other, Where("t"))], source="t").accepted
    batch_key = ("AuthorizationPolicy", "shop", "db-from-batch")
    admin = Origin(kind=OriginKind.ADMIN, name="admin", revision="aaaaaaaaaaaa")
    moved = Origin(kind=OriginKind.ADMIN, name="admin", revision="bbbbbbbbbbbb")
    origins = OriginWire()
    for given in ({KEY: CRD}, {KEY: CRD, batch_key: admin}, {KEY: CRD, batch_key: moved}, {}):
        dicts, texts = origins.encode(accepted, given)
        assert dicts == wire_origins(accepted, given)
        assert [json.loads(text) for text in texts] == dicts


def test_the_enforcer_reads_origins_from_a_snapshot_and_does_without() -> None:
    """A snapshot from an older agent (no origins) and one with a garbled entry both apply; a good one is read."""
    source = AgentPolicySource("unix:///nonexistent/agent.sock")
    text = json.dumps(DOC)
    old = source.apply(
        wire.PolicySnapshot(revision=1, digest="a", policies=[text], namespace="shop")
    )
    assert (old.report.ok, old.origins) == (True, {})
    garbled = source.apply(
        wire.PolicySnapshot(revision=2, digest="b", policies=[text], origins=["{not json"])
    )
    assert (garbled.report.ok, garbled.origins) == (True, {})
    good = source.apply(
        wire.PolicySnapshot(
            revision=3, digest="c", policies=[text], origins=[json.dumps(CRD.to_dict())]
        )
    )
    assert good.origins == {KEY: CRD}
