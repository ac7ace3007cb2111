"""Guards between workloads, held through the real parts: the real SVID cache, the real issuer's registry.

Each test names the guard it holds and fails when that guard is taken out: JWT-SVIDs never cross from one
identity to another, a JWT-SVID is only for an ID the caller holds, an expired X509-SVID is never served, and an
entry is granted only to a workload showing every one of its selectors.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from sigil_testing.clock import FakeClock
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer

from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.client import X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import NotEntitledError as IssuerNotEntitledError
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selector, WorkloadAttestation
from sigil.node_agent.errors import IdentityUnavailableError, NotEntitledError
from sigil.node_agent.settings import AgentSettings, RotationSettings

PEER = PeerCredentials(pid=os.getpid(), uid=os.getuid(), gid=os.getgid(), start_time=0)
ALICE_ID = SpiffeId.parse("spiffe://example.org/guards/alice")
ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")
BOB_ID = SpiffeId.parse("spiffe://example.org/guards/bob")


def workload(*selectors: str) -> WorkloadAttestation:
    return WorkloadAttestation(PEER, frozenset(Selector.parse(s) for s in selectors))


ALICE = workload("unix:uid:71001")
BOB = workload("unix:uid:71002")


@pytest.fixture
async def server(short_tmp: Path) -> AsyncIterator[IssuerServer]:
    async with running_issuer(issuer_settings(short_tmp / "server")) as running:
        yield running


async def _agent_with_entries(
    server: IssuerServer, directory: Path, entries: dict[SpiffeId, list[str]]
) -> AgentSettings:
    """A join token for a new agent and the entries under it, as an operator would make them."""
    rotation = RotationSettings(backoff_initial=timedelta(milliseconds=50))
    return await enrol_agent(server, directory, entries, rotation=rotation)


@pytest.fixture
async def agent(server: IssuerServer, short_tmp: Path) -> AsyncIterator[NodeAgent]:
    """A real agent on the real issuer, with one entry for Alice's uid and one for Bob's."""
    settings = await _agent_with_entries(
        server, short_tmp, {ALICE_ID: ["unix:uid:71001"], BOB_ID: ["unix:uid:71002"]}
    )
    async with NodeAgent(settings) as running:
        yield running


def _subject(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def test_two_workloads_asking_for_one_audience_each_get_their_own_token(
    agent: NodeAgent,
) -> None:
    """Alice and Bob both ask for audience "db": each token names its own holder (the cache is keyed by ID)."""
    alice = await agent.svid_cache.jwt_svid(ALICE, ALICE_ID, audiences=["db"])
    bob = await agent.svid_cache.jwt_svid(BOB, BOB_ID, audiences=["db"])
    assert _subject(alice.token) == str(ALICE_ID)
    assert _subject(bob.token) == str(BOB_ID)
    assert (alice.spiffe_id, bob.spiffe_id) == (ALICE_ID, BOB_ID)


async def test_a_jwt_svid_for_an_id_the_caller_does_not_hold_is_refused_even_when_cached(
    agent: NodeAgent,
) -> None:
    """Alice's token for "db" is cached; Bob naming Alice's ID is refused by the SVID cache itself."""
    await agent.svid_cache.jwt_svid(ALICE, ALICE_ID, audiences=["db"])
    with pytest.raises(NotEntitledError):
        await agent.svid_cache.jwt_svid(BOB, ALICE_ID, audiences=["db"])
    stranger = workload("unix:uid:71999")
    with pytest.raises(NotEntitledError):
        await agent.svid_cache.jwt_svid(stranger, ALICE_ID, audiences=["db"])


async def test_an_expired_cached_x509_svid_is_never_served_even_before_the_scheduler_runs(
    short_tmp: Path,
) -> None:
    """The clock passes the SVID's expiry with the issuer away and no scheduler run: the next fetch gets no SVID
    rather than that one."""
    clock = FakeClock()
    me = workload(f"unix:uid:{os.getuid()}")
    async with running_issuer(issuer_settings(short_tmp / "server"), clock=clock) as server:
        settings = await enrol_agent(server, short_tmp, {ME: [f"unix:uid:{os.getuid()}"]})
        async with NodeAgent(settings, clock=clock) as running:
            (cached,) = await running.svid_cache.x509_svids(me)
            assert cached.spiffe_id == ME
            await server.aclose()
            clock.advance(timedelta(hours=1, seconds=1))  # the issuer's SVIDs live an hour
            try:
                served = await running.svid_cache.x509_svids(me)
            except IdentityUnavailableError:
                served = []
            assert cached.cert_chain not in [s.cert_chain for s in served]
            assert served == []


async def test_an_entry_with_several_selectors_needs_a_workload_with_all_of_them(
    server: IssuerServer,
) -> None:
    """An entry on k8s:ns:prod + k8s:sa:payments is refused to another ServiceAccount of prod (X.509 and JWT),
    and granted to a workload showing both."""
    payments = SpiffeId.parse("spiffe://example.org/ns/prod/sa/payments")
    async with attested_agent(server) as client:
        assert client.agent_svid is not None
        parent = client.agent_svid.svid.spiffe_id
        await server.issuer.registry.create_entry(
            payments, parent, ["k8s:ns:prod", "k8s:sa:payments"], now=server.issuer.ca.now()
        )
        csr = make_csr(generate_key())
        other_pod_of_prod = ("k8s:ns:prod", "k8s:sa:web", "k8s:pod-name:web-1")
        (refused, granted) = await client.batch_x509_svids(
            [
                X509SvidRequest(csr, selectors=other_pod_of_prod),
                X509SvidRequest(
                    csr, selectors=("k8s:ns:prod", "k8s:sa:payments", "k8s:pod-name:p")
                ),
            ]
        )
        assert isinstance(refused.error, IssuerNotEntitledError)
        assert [s.spiffe_id for s in granted.svids] == [payments]
        with pytest.raises(IssuerNotEntitledError):
            await client.jwt_svid(audience=["db"], selectors=other_pod_of_prod)
        with pytest.raises(IssuerNotEntitledError):
            await client.jwt_svid(audience=["db"], selectors=["k8s:sa:payments"])


async def test_a_workload_showing_only_some_of_an_entrys_selectors_gets_nothing_through_the_agent(
    server: IssuerServer, short_tmp: Path
) -> None:
    """Through the real agent: an entry on a uid and a gid is not given to that uid in another group."""
    settings = await _agent_with_entries(
        server, short_tmp, {ALICE_ID: ["unix:uid:71001", "unix:gid:72001"]}
    )
    async with NodeAgent(settings) as running:
        assert await running.svid_cache.x509_svids(workload("unix:uid:71001", "unix:gid:1")) == []
        both = await running.svid_cache.x509_svids(workload("unix:uid:71001", "unix:gid:72001"))
        assert [s.spiffe_id for s in both] == [ALICE_ID]
