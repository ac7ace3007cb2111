"""Two ``sigil-server`` replicas on one real PostgreSQL: one bundle, no conflicting state, changes seen by both."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer
from sigil_testing.waiting import entered

from sigil.ca.authority import AuthorityKind, AuthorityStatus
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import JoinTokenInvalidError

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Pair:
    a: IssuerServer
    b: IssuerServer


@pytest.fixture
async def pair(tmp_path: Path, postgres_url: str) -> AsyncIterator[Pair]:
    """Replicas A and B: separate data directories, one database, authority keys sealed in it."""
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    ca_options = {"key_store": "database", "key_encryption_key_file": kek}
    url = postgres_url
    settings_a = issuer_settings(tmp_path / "a", database_url=url, ca_options=ca_options)
    settings_b = issuer_settings(tmp_path / "b", database_url=url, ca_options=ca_options)
    async with running_issuer(settings_a) as a, running_issuer(settings_b) as b:
        yield Pair(a, b)


def _csr() -> bytes:
    return make_csr(generate_key())


def _as_agent_of(server: IssuerServer, agent: IssuerClient) -> IssuerClient:
    """The same agent SVID presented to another replica."""
    return IssuerClient(server.url, bundle=server.issuer.ca.bundle(), agent_svid=agent.agent_svid)


async def test_replicas_serve_the_same_bundle(pair: Pair) -> None:
    """Both replicas serve one bundle: same anchors, same sequence, same revision."""
    async with attested_agent(pair.a) as on_a, _as_agent_of(pair.b, on_a) as on_b:
        from_a, from_b = await on_a.bundle(), await on_b.bundle()
    assert from_a.bundle.same_content(from_b.bundle)
    assert (from_a.sequence, from_a.revision) == (from_b.sequence, from_b.revision)


async def test_an_agent_attested_on_one_is_served_by_the_other_and_both_journal(
    pair: Pair,
) -> None:
    """An agent attested on A gets SVIDs from B as from A; the shared journal holds what each minted."""
    async with attested_agent(pair.a) as on_a:
        assert on_a.agent_svid is not None
        agent_id = str(on_a.agent_svid.svid.spiffe_id)
        await pair.b.issuer.registry.create_entry(
            SpiffeId.parse("spiffe://example.org/billing"),
            SpiffeId.parse(agent_id),
            ["unix:uid:1000"],
            now=pair.b.issuer.ca.now(),
        )
        async with _as_agent_of(pair.b, on_a) as on_b:
            (from_b,) = await on_b.batch_x509_svids(
                [X509SvidRequest(_csr(), selectors=("unix:uid:1000",))]
            )
        (from_a,) = await on_a.batch_x509_svids(
            [X509SvidRequest(_csr(), selectors=("unix:uid:1000",))]
        )
    assert [str(s.spiffe_id) for s in from_a.svids + from_b.svids] == [
        "spiffe://example.org/billing"
    ] * 2
    serials = {format(s.chain[0].serial_number, "x") for s in from_a.svids + from_b.svids}
    journal = await pair.a.issuer.ca.store.journal(spiffe_id="spiffe://example.org/billing")
    assert serials <= {e.serial.lstrip("0") for e in journal}


async def test_a_join_token_is_spent_once_across_replicas(pair: Pair) -> None:
    """The same join token presented to both replicas at once attests exactly one agent."""
    token = await pair.a.issuer.registry.generate_join_token(
        ttl=timedelta(minutes=5), now=pair.a.issuer.ca.now()
    )
    clients = [
        IssuerClient(server.url, bundle=server.issuer.ca.bundle()) for server in (pair.a, pair.b)
    ]
    try:
        outcomes = await asyncio.gather(
            *(c.attest_join_token(token.token) for c in clients), return_exceptions=True
        )
    finally:
        for client in clients:
            await client.aclose()
    refused = [o for o in outcomes if isinstance(o, JoinTokenInvalidError)]
    assert len(refused) == 1
    assert len([o for o in outcomes if not isinstance(o, BaseException)]) == 1


async def test_a_rotation_on_one_replica_reaches_agents_waiting_on_the_other(pair: Pair) -> None:
    """An authority prepared on A wakes an agent long-polling B within about a second."""
    async with attested_agent(pair.b) as on_b:
        current = await on_b.bundle()
        with entered(pair.b.issuer.feed, "wait") as reached:
            waiting = asyncio.create_task(on_b.bundle(current.sequence, wait=30))
            await asyncio.wait_for(reached.wait(), timeout=10)  # the long poll waits in B
        started = time.monotonic()
        await pair.a.issuer.ca.prepare(AuthorityKind.X509)
        update = await asyncio.wait_for(waiting, timeout=5)
    assert time.monotonic() - started < 2.0
    assert update.sequence > current.sequence
    assert update.bundle.same_content(pair.a.issuer.ca.bundle())


async def test_a_taint_on_one_replica_reaches_agents_waiting_on_the_other(pair: Pair) -> None:
    """Tainting an old authority on A wakes an agent long-polling B with the tainted ID in a second or two."""
    ca_a = pair.a.issuer.ca
    (old,) = ca_a.authorities(AuthorityKind.X509)
    prepared = await ca_a.prepare(AuthorityKind.X509)
    await ca_a.activate(AuthorityKind.X509, prepared.authority_id)
    b = pair.b.issuer

    def b_caught_up() -> bool:
        statuses = {a.authority_id: a.status for a in b.ca.authorities(AuthorityKind.X509)}
        return statuses.get(old.authority_id) is AuthorityStatus.OLD and not b.serving.due(
            b.clock()
        )

    async with asyncio.timeout(5):
        while not b_caught_up():
            # B publishes after it has re-read the authorities and renewed its serving SVID.
            seen = b.feed.current()["revision"]
            await b.feed.wait(after_sequence=None, after_revision=seen, longest=0.5)
    async with attested_agent(pair.b) as on_b:
        current = await on_b.bundle()
        assert old.authority_id not in current.tainted_authority_ids
        with entered(b.feed, "wait") as reached:
            waiting = asyncio.create_task(on_b.bundle(after_revision=current.revision, wait=30))
            await asyncio.wait_for(reached.wait(), timeout=10)  # the long poll waits in B
        started = time.monotonic()
        await ca_a.taint(AuthorityKind.X509, old.authority_id)
        update = await asyncio.wait_for(waiting, timeout=5)
    assert time.monotonic() - started < 2.0
    assert old.authority_id in update.tainted_authority_ids
