"""Policies reach an enforcer from the issuer through the node agent; the enforcer keeps them when the agent goes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from enforcer.policy_docs import ap, dump, rule, sa
from enforcer.policy_world import PodAttestor, PolicyWorld, policy_world
from prometheus_client import CollectorRegistry

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.cli import main
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy import wire
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.receiver import AgentPolicySource
from sigil.issuer.admin import SocketAdmin

TD = TrustDomain("example.org")
WEB = SpiffeId.parse("spiffe://example.org/ns/shop/sa/web")
API = SpiffeId.parse("spiffe://example.org/ns/shop/sa/api")
POD = PodAttestor("shop", {"app": "db"})
SHOP = dump(ap("db-from-web", match={"app": "db"}, rules=[rule([sa("web")], ports=[5432])]))


def _from(*accounts: str) -> str:
    return dump(ap("db-from-admin", match={"app": "db"}, rules=[rule([sa(a) for a in accounts])]))


@pytest.fixture
async def world() -> AsyncIterator[PolicyWorld]:
    async with policy_world({"shop.yaml": SHOP}) as running:
        yield running


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def enforcer(source: AgentPolicySource, registry: CollectorRegistry) -> Authorizer:
    """The decision point of the pod shop/app=db, fed by ``source``."""
    return Authorizer(
        trust_domain=TD,
        target=Target("shop", {"app": "db"}),
        policies=source,
        metrics=EnforcerMetrics(registry),
    )


def allowed(authorizer: Authorizer, peer: SpiffeId) -> bool:
    return authorizer.decide(peer, 5432).allowed


async def test_an_admin_change_at_the_issuer_reaches_the_enforcer_within_a_second(
    world: PolicyWorld, registry: CollectorRegistry
) -> None:
    """An admin apply changes the enforcer's decisions in under a second; its gauge shows the issuer's revision."""
    issuer = world.server.issuer
    async with SocketAdmin(world.server.admin_socket) as admin, world.agent(POD):
        # A change elsewhere first, so that the issuer's revision and the enforcer's local count differ.
        await admin.apply_policies("other.yaml", dump(ap("x", namespace="other")))
        source = AgentPolicySource(world.endpoint)
        authorizer = enforcer(source, registry)
        async with source:
            await asyncio.wait_for(authorizer.wait_for_revision(issuer.policies.revision), 10)
            assert (allowed(authorizer, WEB), allowed(authorizer, API)) == (True, False)
            await admin.apply_policies("extra.yaml", _from("api"))
            revision = issuer.policies.revision
            await asyncio.wait_for(authorizer.wait_for_revision(revision), 1.0)
    assert (allowed(authorizer, WEB), allowed(authorizer, API)) == (True, True)
    assert registry.get_sample_value("sigil_enforcer_policy_revision") == revision
    assert authorizer.revision == revision > source.store.current.revision


async def test_the_enforcer_keeps_its_policy_without_the_agent_and_catches_up_after(
    world: PolicyWorld, registry: CollectorRegistry
) -> None:
    """With the agent stopped the last good policy still decides; a change made meanwhile arrives once it is back."""
    issuer = world.server.issuer
    source = AgentPolicySource(world.endpoint, backoff_initial=0.05, backoff_max=0.2)
    authorizer = enforcer(source, registry)
    async with SocketAdmin(world.server.admin_socket) as admin, source:
        async with world.agent(POD):
            await asyncio.wait_for(authorizer.wait_for_revision(issuer.policies.revision), 10)
        # The agent is gone (socket removed, stream ended): decisions still follow the last good policy.
        assert (allowed(authorizer, WEB), allowed(authorizer, API)) == (True, False)
        await admin.apply_policies("extra.yaml", _from("api"))
        revision = issuer.policies.revision
        assert authorizer.revision < revision
        async with world.agent(POD):
            await asyncio.wait_for(authorizer.wait_for_revision(revision), 10)
    assert (allowed(authorizer, WEB), allowed(authorizer, API)) == (True, True)
    assert registry.get_sample_value("sigil_enforcer_policy_revision") == revision


def test_a_refused_document_keeps_its_last_good_version(registry: CollectorRegistry) -> None:
    """A snapshot whose document this enforcer's schema refuses leaves that policy as it was; the rest apply."""
    source = AgentPolicySource("unix:///nonexistent/agent.sock")
    authorizer = enforcer(source, registry)
    good = json.dumps(_document(_from("web")))
    broken = _document(_from("api"))
    broken["spec"]["action"] = "MAYBE"
    source.apply(wire.PolicySnapshot(revision=4, digest="d4", policies=[good], namespace="shop"))
    applied = source.apply(
        wire.PolicySnapshot(
            revision=5, digest="d5", policies=[json.dumps(broken)], namespace="shop"
        )
    )
    assert [str(e) for e in applied.report.errors] == [
        "agent (document 1): spec.action: expected one of 'ALLOW', 'DENY', found 'MAYBE'"
    ]
    assert (allowed(authorizer, WEB), allowed(authorizer, API)) == (True, False)
    assert authorizer.revision == 5
    assert registry.get_sample_value("sigil_enforcer_policy_load_errors_total") == 1


def test_a_document_held_before_is_not_parsed_again(registry: CollectorRegistry) -> None:
    """A snapshot resending a policy keeps the very same parsed policy; a new one beside it, and an unreadable
    one after, are judged in the snapshot's order (the unreadable one keeps the whole snapshot out)."""
    source = AgentPolicySource("unix:///nonexistent/agent.sock")
    authorizer = enforcer(source, registry)
    web = _canonical(_document(_from("web")))
    other = _canonical(_document(dump(ap("other", match={"app": "cache"}))))
    source.apply(wire.PolicySnapshot(revision=1, digest="d1", policies=[web], namespace="shop"))
    [first] = source.store.current.accepted
    applied = source.apply(
        wire.PolicySnapshot(revision=2, digest="d2", policies=[other, web], namespace="shop")
    )
    assert applied.report.errors == ()
    held = {a.key: a for a in source.store.current.accepted}
    assert held[first.key] is first
    assert ("AuthorizationPolicy", "shop", "other") in held
    broken = source.apply(
        wire.PolicySnapshot(revision=3, digest="d3", policies=[web, "{"], namespace="shop")
    )
    assert [str(e) for e in broken.report.errors] == [
        "agent (document 2): expected a JSON document (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    ]
    assert len(source.store.current.accepted) == 2  # nothing left: the snapshot was not readable
    assert allowed(authorizer, WEB)


def test_each_snapshot_carries_its_own_origins(registry: CollectorRegistry) -> None:
    """An origin resent unchanged is the same, a moved one is the new one, and a policy sent without one has none."""
    source = AgentPolicySource("unix:///nonexistent/agent.sock")
    enforcer(source, registry)
    web = _canonical(_document(_from("web")))
    other = _canonical(_document(dump(ap("other", match={"app": "cache"}))))
    first = {"kind": "file", "name": "/p/shop.yaml", "document": 0, "revision": "a"}
    moved = {**first, "document": 1}
    web_key = ("AuthorizationPolicy", "shop", "db-from-admin")
    other_key = ("AuthorizationPolicy", "shop", "other")

    def snapshot(revision: int, origins: list[str]) -> wire.PolicySnapshot:
        return wire.PolicySnapshot(
            revision=revision, digest="d", policies=[web, other], origins=origins, namespace="shop"
        )

    one = source.apply(snapshot(1, [json.dumps(first), json.dumps(first)]))
    two = source.apply(snapshot(2, [json.dumps(first), json.dumps(moved)]))
    three = source.apply(snapshot(3, [json.dumps(moved), ""]))
    assert one.origins[web_key] == one.origins[other_key] == Origin.parse(first)
    assert (two.origins[web_key], two.origins[other_key]) == (
        Origin.parse(first),
        Origin.parse(moved),
    )
    assert three.origins == {web_key: Origin.parse(moved)}


def test_policies_from_the_agent_and_from_a_directory_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--policies`` and ``--policies-from-agent`` together are refused as bad usage (exit 2)."""
    argv = ["proxy", "inbound", "--listen", "1", "--policies", "d", "--policies-from-agent"]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert "not allowed with argument --policies" in capsys.readouterr().err


def test_an_inbound_proxy_needs_policies_from_somewhere(capsys: pytest.CaptureFixture[str]) -> None:
    """Neither flag: exit 2 naming both."""
    argv = ["proxy", "inbound", "--listen", "1", "--forward", "2", "--namespace", "shop"]
    assert main([*argv, "--svid-dir", "x"]) == 2
    assert "--policies or --policies-from-agent" in capsys.readouterr().err


def _canonical(document: dict[str, Any]) -> str:
    """A document as the agent sends it: canonical JSON."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _document(text: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(text)
    return document
