"""The unmodified py-spiffe client against the real node agent, which talks to the real issuer over HTTPS."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from cryptography import x509
from sigil_testing.agent import WORKLOAD_ID, AgentWorld, agent_world
from spiffe import TrustDomain as PyTrustDomain
from spiffe import WorkloadApiClient, X509Source

from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.errors import AgentAttestationError


@pytest.fixture
async def world() -> AsyncIterator[AgentWorld]:
    async with agent_world() as running:
        yield running


def patient(world: AgentWorld, **overrides: object) -> NodeAgent:
    """An agent of ``world`` that never drops a workload for being idle."""
    rotation = dataclasses.replace(world.settings().rotation, idle_timeout=timedelta(days=1))
    return world.agent(rotation=rotation, **overrides)


@pytest.fixture
async def agent(world: AgentWorld) -> AsyncIterator[NodeAgent]:
    async with patient(world) as running:
        yield running


def _client(agent: NodeAgent) -> WorkloadApiClient:
    return WorkloadApiClient(socket_path=agent.endpoint, default_timeout=10)


def _fetch_x509_leaf(agent: NodeAgent) -> x509.Certificate:
    with _client(agent) as client:
        return client.fetch_x509_svid().leaf


async def test_py_spiffe_fetches_x509_jwt_and_bundles_from_the_agent(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """X509-SVID, JWT-SVID (validated by the agent too), X.509 and JWT bundles all come through."""

    def fetch_all() -> tuple[str, str, str, set[str], set[str]]:
        with _client(agent) as client:
            svid = client.fetch_x509_svid()
            jwt = client.fetch_jwt_svid({"db"})
            validated = client.validate_jwt_svid(jwt.token, "db")
            x509_bundles = {b.trust_domain.name for b in client.fetch_x509_bundles().bundles}
            jwt_bundles = {b.trust_domain.name for b in client.fetch_jwt_bundles().bundles}
            return (
                str(svid.spiffe_id),
                str(jwt.spiffe_id),
                str(validated.spiffe_id),
                x509_bundles,
                jwt_bundles,
            )

    x509_id, jwt_id, validated_id, x509_tds, jwt_tds = await asyncio.to_thread(fetch_all)
    assert x509_id == jwt_id == validated_id == str(WORKLOAD_ID)
    assert x509_tds == jwt_tds == {"example.org"}
    assert [a.agent_id for a in await world.attested_agents()] == [str(agent.identity.spiffe_id)]


async def test_a_caller_the_issuer_does_not_entitle_is_denied(world: AgentWorld) -> None:
    """With no entry for this uid, py-spiffe surfaces PERMISSION_DENIED."""
    await world.remove_entries()
    async with patient(world) as agent:
        with pytest.raises(Exception, match="PERMISSION_DENIED"):
            await asyncio.to_thread(_fetch_x509_leaf, agent)


async def test_x509_source_sees_a_rotation_driven_by_the_clock(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """Moving the clock past the rotation point pushes a new SVID to an open X509Source."""
    source = await asyncio.to_thread(X509Source, socket_path=agent.endpoint, timeout_in_seconds=10)
    updated = threading.Event()
    try:
        first = source.get_x509_context().default_svid.leaf
        source.subscribe_for_updates(updated.set)
        world.clock.advance(timedelta(minutes=37))
        agent.svid_cache.wake()
        assert await asyncio.to_thread(updated.wait, 10)
        second = source.get_x509_context().default_svid.leaf
        assert second != first
        assert second.not_valid_before_utc > first.not_valid_before_utc
    finally:
        await asyncio.to_thread(source.close)


async def test_x509_source_sees_an_early_rotation_when_the_signer_is_tainted(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """A tainted authority makes the open X509Source receive an SVID from the new authority."""
    source = await asyncio.to_thread(X509Source, socket_path=agent.endpoint, timeout_in_seconds=10)
    updated = threading.Event()
    try:
        first = source.get_x509_context().default_svid.leaf
        source.subscribe_for_updates(updated.set)
        tainted = await world.taint_current_x509_authority()

        def rotated() -> x509.Certificate:
            # The bundle (now two authorities) may arrive first, the re-issued SVID right after.
            while updated.wait(10):
                updated.clear()
                leaf = source.get_x509_context().default_svid.leaf
                if leaf != first:
                    return leaf
            raise AssertionError("no rotation reached the X509Source")

        leaf = await asyncio.to_thread(rotated)
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier is not None
        assert aki.key_identifier.hex() != tainted
        bundle = source.get_bundle_for_trust_domain(PyTrustDomain("example.org"))
        assert bundle is not None
        assert len(bundle.x509_authorities) == 2
    finally:
        await asyncio.to_thread(source.close)


async def test_with_the_issuer_stopped_the_cached_svid_is_still_served(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """An issuer outage does not take identities away while they are valid; an expired one is never served."""
    cached = await asyncio.to_thread(_fetch_x509_leaf, agent)
    await world.stop_issuer()
    world.clock.advance(timedelta(minutes=45))
    await agent.svid_cache.run_due()
    assert await asyncio.to_thread(_fetch_x509_leaf, agent) == cached
    world.clock.advance(timedelta(minutes=16))
    await agent.svid_cache.run_due()
    with pytest.raises(Exception, match="UNAVAILABLE"):
        await asyncio.to_thread(_fetch_x509_leaf, agent)


async def test_a_restarted_agent_does_not_attest_again(world: AgentWorld) -> None:
    """The agent SVID and key on disk (mode 0600) let a restart skip attestation entirely."""
    async with patient(world) as first:
        await asyncio.to_thread(_fetch_x509_leaf, first)
        agent_id = first.identity.spiffe_id
    files = sorted((world.directory / "agent").iterdir())
    assert [f.name for f in files] == [
        "agent-svid.key",
        "agent-svid.pem",
        "bundle.json",
        "policies.json",
    ]
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    async with patient(world) as second:
        assert await asyncio.to_thread(_fetch_x509_leaf, second) is not None
        assert second.identity.spiffe_id == agent_id
    assert [a.agent_id for a in await world.attested_agents()] == [str(agent_id)]


async def test_a_spent_join_token_without_stored_state_stops_the_start(world: AgentWorld) -> None:
    """A second agent with the same join token and no stored SVID is refused, and says so."""
    async with patient(world):
        pass
    other = world.settings(data_dir=world.directory / "other")
    with pytest.raises(AgentAttestationError, match="join token"):
        async with NodeAgent(other, clock=world.clock):
            pass


async def test_an_agent_started_before_the_issuer_waits_for_it(world: AgentWorld) -> None:
    """With the issuer not up yet the agent keeps trying to attest, and serves once the issuer is there."""
    await world.stop_issuer()
    agent = patient(world)
    starting = asyncio.create_task(agent.start())
    try:
        done, _ = await asyncio.wait({starting}, timeout=0.5)
        assert not done  # still attesting, with backoff, rather than giving up
        await world.start_issuer()
        await asyncio.wait_for(starting, timeout=10)
        assert await asyncio.to_thread(_fetch_x509_leaf, agent) is not None
        assert len(await world.attested_agents()) == 1
    finally:
        starting.cancel()
        await agent.aclose()


async def test_insecure_bootstrap_trusts_the_first_answer_and_remembers_it(
    world: AgentWorld,
) -> None:
    """Without a bundle file the agent takes the issuer's bundle on first contact and stores it for restarts."""
    async with patient(world, trust_bundle_path=None, insecure_bootstrap=True) as agent:
        assert await asyncio.to_thread(_fetch_x509_leaf, agent) is not None
    stored = (world.directory / "agent" / "bundle.json").read_bytes()
    assert b"x509-svid" in stored
