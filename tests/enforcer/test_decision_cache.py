"""The decision cache answers exactly what evaluation would, stays bounded, and never outlives its inputs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from enforcer.policy_docs import ap, cap, dump, network_rule, rule, sa, spiffe

from sigil.ca.authority import new_x509_authority
from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.policy import PolicyIndex, Target, parse_policy

TD = TrustDomain("example.org")
DB = Target("shop", {"app": "db"})
WEB = SpiffeId.parse("spiffe://example.org/ns/shop/sa/web")
API = SpiffeId.parse("spiffe://example.org/ns/shop/sa/api")
POLICIES = [
    ap("db", match={"app": "db"}, rules=[rule([sa("web")], ports=[5432])]),
    ap("cache", match={"app": "cache"}, rules=[rule([sa("api")], ports=[6379, 5432])]),
    ap("deny-batch", action="DENY", rules=[rule([sa("batch")])]),
    ap("net", match={"app": "net"}, rules=[network_rule([sa("web")], sourceCIDRs=["10.1.0.0/16"])]),
    cap("ops", rules=[rule([spiffe("spiffe://example.org/ns/ops/sa/admin")], action="Allow")]),
]


def _index(decision_cache_size: int | None = None) -> PolicyIndex:
    return PolicyIndex(
        [parse_policy(doc) for doc in POLICIES],
        trust_domain=TD,
        decision_cache_size=decision_cache_size,
    )


def _bundles(*names: str) -> BundleSet:
    now = datetime.now(UTC)
    bundles = []
    for name in names:
        authority = new_x509_authority(
            TrustDomain(name), generate_key(), now=now, ttl=timedelta(hours=1)
        )
        assert authority.certificate is not None
        bundles.append(TrustBundle(TrustDomain(name), (authority.certificate,)))
    return BundleSet.of(*bundles)


def test_cached_decisions_equal_evaluated_ones() -> None:
    """Over random connections, asked twice, a cached index answers what an index without the cache answers."""
    rng = random.Random(17)  # noqa: S311 -- test data, not secrets
    cached, plain = _index(), _index(decision_cache_size=0)
    apps = ["db", "cache", "net", "web"]
    accounts = ["web", "api", "batch", "admin"]
    requests = []
    for _ in range(400):
        target = Target(rng.choice(["shop", "ops"]), {"app": rng.choice(apps)})
        peer = None
        if rng.random() > 0.1:
            peer = SpiffeId.parse(
                f"spiffe://example.org/ns/{rng.choice(['shop', 'ops'])}/sa/{rng.choice(accounts)}"
            )
        address = rng.choice([None, "10.1.2.3", "10.2.0.1", "192.168.0.9"])
        requests.append((peer, target, rng.choice([80, 5432, 6379]), address))
    for _ in range(2):
        for peer, target, port, address in requests:
            expected = plain.decide(peer, target, port, address=address)
            assert cached.decide(peer, target, port, address=address) == expected


def test_the_address_class_is_part_of_the_key() -> None:
    """A peer allowed from inside a rule's network is still refused from outside it once the first is cached."""
    index = _index()
    net = Target("shop", {"app": "net"})
    assert index.decide(WEB, net, 80, address="10.1.2.3").allowed
    assert index.decide(WEB, net, 80, address="10.1.9.9").allowed
    assert not index.decide(WEB, net, 80, address="10.2.0.1").allowed
    assert not index.decide(WEB, net, 80).allowed


def test_the_cache_is_bounded() -> None:
    """With room for two decisions, many distinct connections never hold more than two, and stay right."""
    index = _index(decision_cache_size=2)
    for port in range(5000, 5100):
        assert not index.decide(API, DB, port).allowed
        assert index.decision_cache_len() <= 2
    assert index.decide(WEB, DB, 5432).allowed


def test_a_policy_change_is_decided_afresh(tmp_path: Path) -> None:
    """An authorizer that decided a peer allowed refuses it once the policy file changes (no stale answer)."""
    (tmp_path / "p.yaml").write_text(dump(POLICIES[0]))
    authorizer = Authorizer(trust_domain=TD, target=DB, policies=tmp_path)
    authorizer.load()
    assert authorizer.decide(WEB, 5432).allowed
    assert authorizer.decide(WEB, 5432).allowed  # now from the cache
    (tmp_path / "p.yaml").write_text(dump(ap("db", match={"app": "db"}, rules=[rule([sa("api")])])))
    authorizer.load()
    assert not authorizer.decide(WEB, 5432).allowed
    assert authorizer.decide(API, 5432).allowed


def test_a_bundle_change_empties_the_cache(tmp_path: Path) -> None:
    """New trust bundles drop every cached decision; the same bundles sent again keep them."""
    (tmp_path / "p.yaml").write_text(dump(POLICIES[0]))
    authorizer = Authorizer(trust_domain=TD, target=DB, policies=tmp_path)
    authorizer.load()
    first = _bundles("example.org")
    assert authorizer.set_bundles(first)
    authorizer.decide(WEB, 5432)
    authorizer.decide(API, 5432)
    assert authorizer.index.decision_cache_len() == 2
    assert not authorizer.set_bundles(BundleSet(dict(first)))
    assert authorizer.index.decision_cache_len() == 2
    assert authorizer.set_bundles(_bundles("example.org", "partner.example"))
    assert authorizer.index.decision_cache_len() == 0
    assert authorizer.decide(WEB, 5432).allowed
