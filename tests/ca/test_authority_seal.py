"""With the sealed key store, authority rows are authenticated: the datastore alone cannot add or revive a trust anchor.

The attacker here has write access to the database and nothing else (no key-encryption key); every tampering is
raw SQL, as such an attacker would type it, on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, MutableMapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sigil_testing.ca import make_csr, write_upstream_ca
from sigil_testing.clock import FakeClock

from sigil.ca import SpiffeId
from sigil.ca.authority import (
    Authority,
    AuthorityKind,
    AuthorityStatus,
    new_jwt_authority,
    new_x509_authority,
)
from sigil.ca.errors import AuthorityRowRefusedError
from sigil.ca.keys import public_key_der
from sigil.ca.service import CertificateAuthority
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import TrustDomain

_INSERT = sa.text(
    "INSERT INTO authorities (authority_id, kind, status, tainted, not_before, not_after, public_key_der,"
    " certificate_chain_der, upstream_root_der, created_at, updated_at, seal) VALUES (:authority_id, :kind,"
    " :status, :tainted, :not_before, :not_after, :public_key_der, :certificate_chain_der, NULL, :not_before,"
    " :not_before, :seal)"
).bindparams(
    sa.bindparam("not_before", type_=sa.DateTime(timezone=True)),
    sa.bindparam("not_after", type_=sa.DateTime(timezone=True)),
    sa.bindparam("public_key_der", type_=sa.LargeBinary()),
    sa.bindparam("certificate_chain_der", type_=sa.LargeBinary()),
    sa.bindparam("seal", type_=sa.LargeBinary()),
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The datastore on SQLite, or on a fresh database of the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def kek_file(tmp_path: Path) -> Path:
    """A key-encryption key file as a mounted Secret holds it."""
    path = tmp_path / "kek"
    path.write_bytes(base64.b64encode(os.urandom(32)))
    path.chmod(0o400)
    return path


@pytest.fixture
def open_sealed(database_url: str, kek_file: Path, tmp_path: Path, clock: FakeClock) -> Any:
    """Open a replica with ``ca.key_store: database`` on the shared database."""

    async def opener(name: str = "a", **overrides: Any) -> CertificateAuthority:
        settings = CaSettings(
            data_dir=tmp_path / name,
            database_url=database_url,
            key_store="database",
            key_encryption_key_file=kek_file,
            **overrides,
        )
        return await CertificateAuthority.open(settings, clock=clock)

    return opener


@pytest.fixture
async def ca(open_sealed: Any) -> AsyncIterator[CertificateAuthority]:
    """One replica with sealed keys and sealed rows."""
    authority: CertificateAuthority = await open_sealed()
    yield authority
    await authority.aclose()


async def _sql(ca: CertificateAuthority, statement: str | sa.TextClause, **params: Any) -> None:
    query = sa.text(statement) if isinstance(statement, str) else statement
    async with ca.store.engine.begin() as connection:
        await connection.execute(query, params)


async def _insert(ca: CertificateAuthority, authority: Authority, *, seal: bytes | None) -> None:
    chain = (
        authority.certificate.public_bytes(serialization.Encoding.DER)
        if authority.certificate is not None
        else None
    )
    await _sql(
        ca,
        _INSERT,
        authority_id=authority.authority_id,
        kind=authority.kind.value,
        status=authority.status.value,
        tainted=False,
        not_before=authority.not_before,
        not_after=authority.not_after,
        public_key_der=public_key_der(authority.public_key),
        certificate_chain_der=chain,
        seal=seal,
    )


async def _seal_of(ca: CertificateAuthority, authority_id: str) -> bytes:
    async with ca.store.engine.connect() as connection:
        value = (
            await connection.execute(
                sa.text("SELECT seal FROM authorities WHERE authority_id = :i"), {"i": authority_id}
            )
        ).scalar_one()
    assert isinstance(value, bytes)
    return value


def _attacker_authorities(clock: FakeClock) -> tuple[Authority, Authority]:
    key = ec.generate_private_key(ec.SECP256R1())
    x509_authority = new_x509_authority(
        TrustDomain("example.org"), key, now=clock(), ttl=timedelta(days=365)
    ).with_status(AuthorityStatus.ACTIVE)
    jwt_authority = new_jwt_authority(key, now=clock(), ttl=timedelta(days=365)).with_status(
        AuthorityStatus.ACTIVE
    )
    return x509_authority, jwt_authority


def _refused_ids(
    logs: Sequence[MutableMapping[str, Any]], event: str = "authority.row_refused"
) -> set[str]:
    return {e["authority_id"] for e in logs if e["event"] == event and e["log_level"] == "error"}


async def test_an_inserted_authority_never_reaches_the_bundle(
    ca: CertificateAuthority, open_sealed: Any, clock: FakeClock
) -> None:
    """Rows INSERTed as active (no seal, or another row's seal) stay out of the bundle and never sign, after a
    refresh and after a restart, and each is reported as an error."""
    ours = {kind: ca.signer(kind).authority.authority_id for kind in AuthorityKind}
    forged_x509, forged_jwt = _attacker_authorities(clock)
    await _insert(ca, forged_x509, seal=None)
    await _insert(ca, forged_jwt, seal=await _seal_of(ca, ours[AuthorityKind.JWT]))
    with structlog.testing.capture_logs() as logs:
        await ca.refresh()
    assert forged_x509.certificate not in ca.bundle().x509_authorities
    assert forged_jwt.authority_id not in ca.bundle().jwt_authorities
    assert {kind: ca.signer(kind).authority.authority_id for kind in AuthorityKind} == ours
    assert _refused_ids(logs) == {forged_x509.authority_id, forged_jwt.authority_id}
    restarted: CertificateAuthority = await open_sealed("b")
    try:
        assert forged_x509.certificate not in restarted.bundle().x509_authorities
        assert forged_jwt.authority_id not in restarted.bundle().jwt_authorities
        assert restarted.bundle().same_content(ca.bundle())
    finally:
        await restarted.aclose()


async def test_a_revoked_authority_set_back_to_active_is_refused(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """A revoked authority whose row is UPDATEd back to active, untainted, stays out of the bundle; SVIDs still
    come from the real active authority."""
    old = ca.signer(AuthorityKind.X509).authority
    prepared = await ca.prepare(AuthorityKind.X509)
    await ca.activate(AuthorityKind.X509, prepared.authority_id)
    await ca.taint(AuthorityKind.X509, old.authority_id)
    await ca.revoke(AuthorityKind.X509, old.authority_id)
    await _sql(
        ca,
        "UPDATE authorities SET status = 'active', tainted = false WHERE authority_id = :i",
        i=old.authority_id,
    )
    with structlog.testing.capture_logs() as logs:
        await ca.refresh()
    assert old.certificate not in ca.bundle().x509_authorities
    assert ca.signer(AuthorityKind.X509).authority.authority_id == prepared.authority_id
    svid = await ca.mint_x509_svid(SpiffeId.parse("spiffe://example.org/w"), csr=make_csr()[0])
    assert prepared.certificate is not None
    assert svid.leaf.issuer == prepared.certificate.subject
    assert _refused_ids(logs) == {old.authority_id}


async def test_a_tampered_active_authority_is_refused_with_a_clear_error_then_replaced(
    ca: CertificateAuthority,
) -> None:
    """An active row whose expiry is pushed out by UPDATE no longer signs: minting fails naming the row, and the
    next rotation puts a fresh authority in its place."""
    active = ca.signer(AuthorityKind.X509).authority
    await _sql(
        ca,
        "UPDATE authorities SET not_after = :t WHERE authority_id = :i",
        t=active.not_after + timedelta(days=3650),
        i=active.authority_id,
    )
    await ca.refresh()
    with pytest.raises(
        AuthorityRowRefusedError, match="does not verify under the key-encryption key"
    ):
        await ca.mint_x509_svid(SpiffeId.parse("spiffe://example.org/w"), csr=make_csr()[0])
    assert active.certificate not in ca.bundle().x509_authorities
    await ca.rotate()
    replacement = ca.signer(AuthorityKind.X509).authority
    assert replacement.authority_id != active.authority_id
    assert ca.bundle().x509_authorities == (replacement.certificate,)


async def test_sealed_rotation_holds_across_two_replicas_and_a_restart(
    open_sealed: Any, clock: FakeClock
) -> None:
    """Two replicas rotating through two authority lifetimes agree on every step, refuse nothing, and a restarted
    replica comes back with the same active authorities and bundle."""
    first = await open_sealed("a")
    second = await open_sealed("b")
    start = clock.current
    with structlog.testing.capture_logs() as logs:
        try:
            for hours in (12, 20, 32, 40):
                clock.current = start + timedelta(hours=hours)
                await asyncio.gather(first.rotate(), second.rotate())
                await asyncio.gather(first.refresh(), second.refresh())
                for kind in AuthorityKind:
                    assert (
                        first.signer(kind).authority.authority_id
                        == second.signer(kind).authority.authority_id
                    )
                assert first.bundle().same_content(second.bundle())
            active = {kind: first.signer(kind).authority.authority_id for kind in AuthorityKind}
            bundle = first.bundle()
        finally:
            await asyncio.gather(first.aclose(), second.aclose())
        restarted: CertificateAuthority = await open_sealed("c")
        try:
            assert {k: restarted.signer(k).authority.authority_id for k in AuthorityKind} == active
            assert restarted.bundle().same_content(bundle)
        finally:
            await restarted.aclose()
    assert not [e for e in logs if e["log_level"] == "error"]


async def _back_to_0002(ca: CertificateAuthority) -> None:
    """Undo migrations 0006 (journal indexes), 0005 (upstream CAs), 0004 (journal holder and replacement) and 0003
    (the seal column) on a live database."""
    for statement in (
        "DROP INDEX ix_svid_journal_reissue_due",
        "DROP INDEX ix_svid_journal_not_after",
        "DROP TABLE upstream_cas",
        "ALTER TABLE svid_journal DROP COLUMN replaced_at",
        "ALTER TABLE svid_journal DROP COLUMN holder",
        "ALTER TABLE authorities DROP COLUMN seal",
        "UPDATE alembic_version SET version_num = '0002' WHERE version_num = '0006'",
    ):
        await _sql(ca, statement)


async def test_a_database_from_before_sealing_is_sealed_once_at_start(
    ca: CertificateAuthority, open_sealed: Any, clock: FakeClock
) -> None:
    """Rows of a database migrated from before sealing are sealed at the first start when they are provably the
    CA's (their key opens under the key-encryption key); a row an attacker slipped in before then is refused, and
    so is any unsealed row added later."""
    await ca.prepare(AuthorityKind.X509)
    before = ca.bundle()
    active = {kind: ca.signer(kind).authority.authority_id for kind in AuthorityKind}
    legitimate = {a.authority_id for a in ca.authorities()}
    forged_x509, _ = _attacker_authorities(clock)
    await _insert(ca, forged_x509, seal=None)
    # What a database written before migration 0003 looks like: no seal column, schema at 0002.
    await _back_to_0002(ca)
    await ca.aclose()
    with structlog.testing.capture_logs() as logs:
        upgraded: CertificateAuthority = await open_sealed("b")
    try:
        assert {
            e["authority_id"] for e in logs if e["event"] == "authority.unsealed_row_sealed"
        } == (legitimate)
        assert _refused_ids(logs, "authority.unsealed_row_refused") == {forged_x509.authority_id}
        assert {k: upgraded.signer(k).authority.authority_id for k in AuthorityKind} == active
        assert upgraded.bundle().same_content(before)
        _, forged_jwt = _attacker_authorities(clock)
        await _insert(upgraded, forged_jwt, seal=None)
    finally:
        await upgraded.aclose()
    with structlog.testing.capture_logs() as logs:
        again: CertificateAuthority = await open_sealed("c")
    try:
        assert forged_jwt.authority_id not in again.bundle().jwt_authorities
        assert not [e for e in logs if e["event"] == "authority.unsealed_row_sealed"]
        assert _refused_ids(logs) == {forged_x509.authority_id, forged_jwt.authority_id}
    finally:
        await again.aclose()


async def test_an_older_row_whose_upstream_root_was_swapped_is_not_sealed(
    open_sealed: Any, tmp_path: Path
) -> None:
    """Under an upstream CA, an older row whose anchor was replaced before the upgrade is refused at the sealing
    start; the rotator replaces it under the configured upstream, whose root alone anchors the bundle."""
    upstream = write_upstream_ca(tmp_path / "upstream")
    ca: CertificateAuthority = await open_sealed("a", upstream_dir=upstream.directory)
    x509_active = ca.signer(AuthorityKind.X509).authority
    jwt_active = ca.signer(AuthorityKind.JWT).authority
    planted = write_upstream_ca(tmp_path / "planted").root
    await _sql(
        ca,
        sa.text("UPDATE authorities SET upstream_root_der = :r WHERE authority_id = :i").bindparams(
            sa.bindparam("r", type_=sa.LargeBinary())
        ),
        r=planted.public_bytes(serialization.Encoding.DER),
        i=x509_active.authority_id,
    )
    await _back_to_0002(ca)
    await ca.aclose()
    with structlog.testing.capture_logs() as logs:
        upgraded: CertificateAuthority = await open_sealed("b", upstream_dir=upstream.directory)
    try:
        assert _refused_ids(logs, "authority.unsealed_row_refused") == {x509_active.authority_id}
        assert upgraded.signer(AuthorityKind.JWT).authority.authority_id == jwt_active.authority_id
        assert (
            upgraded.signer(AuthorityKind.X509).authority.authority_id != x509_active.authority_id
        )
        assert upgraded.bundle().x509_authorities == (upstream.root,)
    finally:
        await upgraded.aclose()
