"""The SVID cache against the real issuer over HTTPS: issuance, batching, rotation, taints, outages, drops."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from cryptography import x509
from sigil_testing.agent import WORKLOAD_ID, AgentWorld, agent_world

from sigil.ca.bundle import load_der_certificates
from sigil.ca.spiffe_id import SpiffeId
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Pod, Selector, WorkloadAttestation
from sigil.node_agent.errors import IdentityUnavailableError, NotEntitledError
from sigil.node_agent.settings import RotationSettings
from sigil.node_agent.svid_cache.cache import SvidCache

PEER = PeerCredentials(pid=os.getpid(), uid=os.getuid(), gid=os.getgid(), start_time=0)


def workload(*selectors: str) -> WorkloadAttestation:
    """An attested caller showing ``selectors`` (this process's uid unless told otherwise)."""
    shown = selectors or (f"unix:uid:{os.getuid()}",)
    return WorkloadAttestation(PEER, frozenset(Selector.parse(s) for s in shown))


ME = workload()


@pytest.fixture
async def world() -> AsyncIterator[AgentWorld]:
    async with agent_world() as running:
        yield running


def patient(world: AgentWorld) -> RotationSettings:
    """The world's rotation settings, but workloads are never dropped for being idle."""
    return dataclasses.replace(world.settings().rotation, idle_timeout=timedelta(days=1))


@pytest.fixture
async def agent(world: AgentWorld) -> AsyncIterator[NodeAgent]:
    async with world.agent(rotation=patient(world)) as running:
        yield running


def leaf_of(chain: bytes) -> x509.Certificate:
    return load_der_certificates(chain)[0]


def authority_of(chain: bytes) -> str:
    aki = leaf_of(chain).extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    return aki.key_identifier.hex()


async def test_a_new_workload_gets_its_svid_and_the_cache_answers_the_next_call(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """The first call issues an SVID over a key the agent made; the second is served from the cache."""
    first = await agent.svid_cache.x509_svids(ME)
    second = await agent.svid_cache.x509_svids(ME)
    assert [s.spiffe_id for s in first] == [WORKLOAD_ID]
    assert second[0].cert_chain == first[0].cert_chain
    assert await world.workload_svids_issued() == 1


async def test_a_workload_without_an_entry_is_entitled_to_nothing(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """A caller no entry matches gets no SVID, and is not asked about again at once."""
    stranger = workload("unix:uid:4242424")
    assert await agent.svid_cache.x509_svids(stranger) == []
    assert await agent.svid_cache.entitlements(stranger) == []
    assert world.refusals("not_entitled") == 1
    assert await world.workload_svids_issued() == 0


async def test_an_issuer_busy_with_one_item_is_unavailable_not_a_denial(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """An item the issuer cannot serve now (its entries table unreadable: ``datastore_unavailable`` per item) makes
    the caller retry (Unavailable), not lose its identity; once the database is back the SVID is issued."""
    with world.entries_unreadable(), pytest.raises(IdentityUnavailableError):
        await agent.svid_cache.x509_svids(ME)
    assert world.refusals("datastore_unavailable") == 1
    assert [s.spiffe_id for s in await agent.svid_cache.x509_svids(ME)] == [WORKLOAD_ID]


async def test_workloads_arriving_together_are_issued_in_few_batches(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """Twenty new workloads asking at once cost the issuer far fewer than twenty requests."""
    for n in range(20):
        await world.add_entry(SpiffeId.parse(f"spiffe://example.org/w/{n}"), f"unix:uid:{n + 5000}")
    answers = await asyncio.gather(
        *(agent.svid_cache.x509_svids(workload(f"unix:uid:{n + 5000}")) for n in range(20))
    )
    assert [str(a[0].spiffe_id) for a in answers] == [
        f"spiffe://example.org/w/{n}" for n in range(20)
    ]
    assert await world.workload_svids_issued() == 20
    assert agent.svid_cache.issuer_batches <= 2


async def test_a_first_svid_rotates_early_and_its_successors_just_before_half_life(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """A workload's first SVID (one-hour life) stays 5 minutes and is replaced by 31 (10-50% of its life); the next
    one stays 23 minutes and is replaced by 31 (40-50%), each time over a new key."""
    (first,) = await agent.svid_cache.x509_svids(ME)
    world.clock.advance(timedelta(minutes=5))
    await agent.svid_cache.run_due()
    assert (await agent.svid_cache.x509_svids(ME))[0].cert_chain == first.cert_chain
    world.clock.advance(timedelta(minutes=26))
    await agent.svid_cache.run_due()
    (second,) = await agent.svid_cache.x509_svids(ME)
    assert second.cert_chain != first.cert_chain
    assert second.private_key != first.private_key
    world.clock.advance(timedelta(minutes=23))
    await agent.svid_cache.run_due()
    assert (await agent.svid_cache.x509_svids(ME))[0].cert_chain == second.cert_chain
    world.clock.advance(timedelta(minutes=8))
    await agent.svid_cache.run_due()
    (third,) = await agent.svid_cache.x509_svids(ME)
    assert third.private_key not in (first.private_key, second.private_key)
    assert await world.workload_svids_issued() == 3


async def test_svids_issued_together_rotate_spread_out_and_none_is_served_expired(
    world: AgentWorld,
) -> None:
    """Forty SVIDs issued in one instant first rotate over 6 to 30 minutes of their hour (the agent's seeded jitter),
    and stepping minute by minute through three hours, every answer holds exactly one unexpired SVID."""
    callers = [workload(f"unix:uid:{n + 7000}") for n in range(40)]
    for n in range(40):
        await world.add_entry(SpiffeId.parse(f"spiffe://example.org/j/{n}"), f"unix:uid:{n + 7000}")
    async with world.agent(rotation=patient(world)) as agent:
        await asyncio.gather(*(agent.svid_cache.x509_svids(c) for c in callers))
        first_rotations: list[int] = []
        for minute in range(1, 181):
            world.clock.advance(timedelta(minutes=1))
            before = await world.workload_svids_issued()
            await agent.svid_cache.run_due()
            if minute <= 31:
                first_rotations += [minute] * (await world.workload_svids_issued() - before)
            for caller in callers:
                (svid,) = await agent.svid_cache.x509_svids(caller)
                assert leaf_of(svid.cert_chain).not_valid_after_utc > world.clock()
    assert len(first_rotations) == 40
    assert min(first_rotations) >= 6
    assert max(first_rotations) <= 30
    assert len(set(first_rotations)) >= 15
    # Three hours of later rotations every 24 to 30 minutes: at least six more each, never a stampede of renewals.
    assert await world.workload_svids_issued() >= 40 + 40 * 6


async def test_a_tainted_signer_makes_its_svids_rotate_early(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """When the bundle long poll reports the signer tainted, the SVID is re-issued by the new authority."""
    (before,) = await agent.svid_cache.x509_svids(ME)
    tainted = await world.taint_current_x509_authority()
    assert authority_of(before.cert_chain) == tainted
    changes = agent.svid_cache.changes
    seen = changes.revision

    async def rotated() -> bytes:
        nonlocal seen
        while True:
            seen = await changes.wait_after(seen)
            (svid,) = await agent.svid_cache.x509_svids(ME)
            if svid.cert_chain != before.cert_chain:
                return svid.cert_chain

    after = await asyncio.wait_for(rotated(), timeout=10)
    assert authority_of(after) != tainted


async def test_with_the_issuer_away_the_cached_svid_is_served_until_it_expires(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """A stopped issuer postpones rotation; the valid SVID is still served, an expired one never is."""
    (cached,) = await agent.svid_cache.x509_svids(ME)
    await world.stop_issuer()
    world.clock.advance(timedelta(minutes=40))
    await agent.svid_cache.run_due()
    (served,) = await agent.svid_cache.x509_svids(ME)
    assert served.cert_chain == cached.cert_chain
    world.clock.advance(timedelta(minutes=21))
    await agent.svid_cache.run_due()
    with pytest.raises(IdentityUnavailableError):
        await agent.svid_cache.x509_svids(ME)


async def test_the_agent_catches_up_when_the_issuer_returns(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """After an outage the postponed rotation happens at the next retry."""
    (cached,) = await agent.svid_cache.x509_svids(ME)
    await world.stop_issuer()
    world.clock.advance(timedelta(minutes=40))
    await agent.svid_cache.run_due()
    await world.start_issuer()
    world.clock.advance(timedelta(minutes=1))
    await agent.svid_cache.run_due()
    (fresh,) = await agent.svid_cache.x509_svids(ME)
    assert fresh.cert_chain != cached.cert_chain


async def test_an_idle_workload_is_dropped_instead_of_rotated(world: AgentWorld) -> None:
    """Nobody asked for five minutes when the SVID came due: it is dropped, not renewed."""
    async with world.agent() as agent:
        await agent.svid_cache.x509_svids(ME)
        world.clock.advance(timedelta(minutes=40))
        await agent.svid_cache.run_due()
        assert agent.svid_cache.cached_workloads == 0
        assert await world.workload_svids_issued() == 1


async def test_an_open_stream_keeps_a_quiet_workload_rotating(world: AgentWorld) -> None:
    """A workload whose stream is open is rotated even though it asked nothing for a long time."""
    async with world.agent() as agent:
        await agent.svid_cache.x509_svids(ME)
        async with agent.svid_cache.streaming(ME):
            world.clock.advance(timedelta(minutes=40))
            await agent.svid_cache.run_due()
            assert agent.svid_cache.cached_workloads == 1
        assert await world.workload_svids_issued() == 2


async def test_a_deleted_pod_loses_its_svids(world: AgentWorld, agent: NodeAgent) -> None:
    """forget_pod drops the pod's cached SVIDs at once."""
    shown = workload("k8s:ns:default", "k8s:pod-name:web", "k8s:pod-uid:1234", "k8s:sa:web")
    found = Pod(uid="1234", namespace="default", name="web", service_account="web", node_name="n")
    pod = WorkloadAttestation(shown.peer, shown.selectors, pod=found)
    manager: SvidCache = agent.svid_cache
    # This issuer serves no Kubernetes pods, so it answers the pod's item "unavailable"; the slot is kept all the same.
    with pytest.raises(IdentityUnavailableError, match="does not serve Kubernetes pods"):
        await manager.x509_svids(pod)
    assert manager.cached_workloads == 1
    manager.forget_pod("1234")
    assert manager.cached_workloads == 0


async def test_jwt_svids_are_cached_per_audience_set_and_refreshed_past_half_life(
    world: AgentWorld, agent: NodeAgent
) -> None:
    """The same audiences in any order share a token until half its life has passed."""
    first = await agent.svid_cache.jwt_svid(ME, WORKLOAD_ID, audiences=["a", "b"])
    again = await agent.svid_cache.jwt_svid(ME, WORKLOAD_ID, audiences=["b", "a"])
    assert again.token == first.token
    other = await agent.svid_cache.jwt_svid(ME, WORKLOAD_ID, audiences=["c"])
    assert other.token != first.token
    world.clock.advance(timedelta(minutes=31))
    refreshed = await agent.svid_cache.jwt_svid(ME, WORKLOAD_ID, audiences=["a", "b"])
    assert refreshed.token != first.token
    assert await world.workload_svids_issued("jwt") == 3


async def test_a_jwt_svid_for_an_id_the_issuer_refuses_is_not_entitled(
    agent: NodeAgent,
) -> None:
    """The issuer's not_entitled becomes the Workload API's PermissionDenied error."""
    with pytest.raises(NotEntitledError):
        await agent.svid_cache.jwt_svid(
            ME, SpiffeId.parse("spiffe://example.org/admin"), audiences=["a"]
        )
