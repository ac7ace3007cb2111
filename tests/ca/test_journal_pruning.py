"""The SVID journal stays flat under sustained issuance, and pruning removes nothing that is still needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.ca import make_csr
from sigil_testing.clock import FakeClock
from sigil_testing.postgres import temporary_database

from sigil.ca import SpiffeId
from sigil.ca.authority import AuthorityKind
from sigil.ca.service import CertificateAuthority, X509Request
from sigil.ca.settings import CaSettings

AGENT = "spiffe://example.org/sigil/agent/join/a"
STEP = timedelta(minutes=10)
BATCH = 10


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def journaled_ca(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[CertificateAuthority]:
    """A CA on SQLite, or on a fresh database of the suite's own PostgreSQL server."""
    async with AsyncExitStack() as stack:
        url = ""
        if request.param == "postgres":
            url = await stack.enter_async_context(
                temporary_database(request.getfixturevalue("postgres_admin_dsn"))
            )
        settings = CaSettings(data_dir=tmp_path / "data", database_url=url)
        ca = await CertificateAuthority.open(settings, clock=clock)
        stack.push_async_callback(ca.aclose)
        yield ca


async def _issue(ca: CertificateAuthority, csr: bytes, count: int) -> None:
    ids = [SpiffeId.parse(f"spiffe://example.org/w{i}") for i in range(count)]
    await ca.mint_x509_svids([X509Request(i, csr=csr) for i in ids], holder=AGENT)


async def test_journal_stays_flat_across_many_lifetimes(
    journaled_ca: CertificateAuthority, clock: FakeClock
) -> None:
    """Ten SVIDs every ten minutes for ten hours (ten lifetimes): the journal stops growing after the first two."""
    ca = journaled_ca
    csr, _ = make_csr()
    settings = ca.settings
    # Rows alive at any time: those issued within one TTL plus the grace, and the batch of this step.
    bound = ((settings.x509_svid_ttl + settings.journal_grace) // STEP + 1) * BATCH
    sizes = []
    for _ in range(60):
        await ca.rotate()
        await _issue(ca, csr, BATCH)
        await ca.prune_journal()
        sizes.append(await ca.store.journal_size())
        clock.advance(STEP)
    assert max(sizes) <= bound
    # Flat once the first rows have aged out: the size repeats exactly, step after step.
    assert len(set(sizes[20:])) == 1, sizes


async def test_pruning_keeps_what_revocation_and_audit_need(
    journaled_ca: CertificateAuthority, clock: FakeClock
) -> None:
    """Expired rows go; the unexpired ones of a tainted authority, their holders and the listing stay exactly."""
    ca = journaled_ca
    csr, _ = make_csr()
    await _issue(ca, csr, 3)  # these expire (plus the grace) before the prune below
    clock.advance(ca.settings.x509_svid_ttl + ca.settings.journal_grace + timedelta(minutes=1))
    await ca.rotate()
    await _issue(ca, csr, 4)  # unexpired, signed by the authority about to be tainted
    old = ca.signer(AuthorityKind.X509).authority.authority_id
    clock.advance(timedelta(seconds=1))
    new = await ca.prepare(AuthorityKind.X509)
    await ca.activate(AuthorityKind.X509, new.authority_id)
    assert await ca.taint(AuthorityKind.X509, old) == 4
    before = await ca.outstanding(old)
    listed_before = {e.serial for e in await ca.store.journal() if e.not_after > ca.now()}

    assert await ca.prune_journal() == 3

    assert await ca.outstanding(old) == before
    assert before.count == 4
    assert before.holders == {AGENT: 4}
    assert {e.serial for e in await ca.store.journal()} == listed_before
    # A re-issue after the prune is still recorded against the marked rows.
    await ca.mint_x509_svid(SpiffeId.parse("spiffe://example.org/w0"), csr=csr, holder=AGENT)
    assert (await ca.outstanding(old)).count == 3


async def test_rows_within_the_grace_are_kept(
    journaled_ca: CertificateAuthority, clock: FakeClock
) -> None:
    """An SVID expired for less than ``journal_grace`` is still listed; just after, it is gone."""
    ca = journaled_ca
    csr, _ = make_csr()
    await _issue(ca, csr, 2)
    clock.advance(ca.settings.x509_svid_ttl + ca.settings.journal_grace - timedelta(seconds=1))
    assert await ca.prune_journal() == 0
    assert await ca.store.journal_size() == 2
    clock.advance(timedelta(seconds=2))
    assert await ca.prune_journal() == 2
    assert await ca.store.journal_size() == 0
