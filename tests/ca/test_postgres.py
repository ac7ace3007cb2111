"""Several CA processes on one PostgreSQL never rotate at the same time and always agree on the active authority."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.ca import make_csr
from sigil_testing.clock import FakeClock

from sigil.ca import SpiffeId
from sigil.ca.authority import AuthorityKind, AuthorityStatus
from sigil.ca.service import CertificateAuthority
from sigil.ca.settings import CaSettings

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


async def _open(url: str, tmp_path: Path, clock: FakeClock, name: str) -> CertificateAuthority:
    settings = CaSettings(
        data_dir=tmp_path / name, database_url=url, key_dir=tmp_path / "shared-keys"
    )
    return await CertificateAuthority.open(settings, clock=clock)


async def test_racing_rotators_prepare_and_activate_once(database_url: str, tmp_path: Path) -> None:
    """Two CAs on separate connections rotating at the same instants create one authority per step."""
    clock = FakeClock()
    first, second = await asyncio.gather(
        _open(database_url, tmp_path, clock, "a"), _open(database_url, tmp_path, clock, "b")
    )
    try:
        for kind in AuthorityKind:
            assert [a.status for a in first.authorities(kind)] == [AuthorityStatus.ACTIVE]
        start = clock.current
        for hours in (12, 20, 32, 40):
            clock.current = start + timedelta(hours=hours)
            await asyncio.gather(first.rotate(), second.rotate(), first.rotate(), second.rotate())
            await asyncio.gather(first.refresh(), second.refresh())
            for kind in AuthorityKind:
                statuses = Counter(a.status for a in first.authorities(kind))
                assert statuses[AuthorityStatus.ACTIVE] == 1
                assert statuses[AuthorityStatus.PREPARED] <= 1
                assert (
                    first.signer(kind).authority.authority_id
                    == second.signer(kind).authority.authority_id
                )
            assert first.bundle().sequence == second.bundle().sequence
            assert first.bundle().same_content(second.bundle())
    finally:
        await asyncio.gather(first.aclose(), second.aclose())


async def test_svids_from_either_replica_verify_with_the_shared_bundle(
    database_url: str, tmp_path: Path
) -> None:
    """An SVID minted by one replica chains to the bundle the other serves, and both journal it."""
    clock = FakeClock()
    first = await _open(database_url, tmp_path, clock, "a")
    second = await _open(database_url, tmp_path, clock, "b")
    try:
        csr, _ = make_csr()
        svid = await first.mint_x509_svid(SpiffeId.parse("spiffe://example.org/web"), csr=csr)
        anchors = second.bundle().x509_authorities
        assert any(anchor.subject == svid.leaf.issuer for anchor in anchors)
        journal = await second.store.journal()
        assert [e.serial for e in journal] == [svid.serial_hex]
    finally:
        await first.aclose()
        await second.aclose()


async def test_separate_processes_agree(database_url: str, tmp_path: Path) -> None:
    """Four processes started together past the activation time all report the same active authorities."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    seed = await _open(database_url, tmp_path, FakeClock(), "seed")
    await seed.aclose()
    offset = str(timedelta(hours=21).total_seconds())
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sigil_testing.rotate_once",
            database_url,
            str(tmp_path / "shared-keys"),
            str(tmp_path / f"p{i}"),
            offset,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for i in range(4)
    ]
    outputs = [await p.communicate() for p in processes]
    assert all(p.returncode == 0 for p in processes), [err.decode()[-500:] for _, err in outputs]
    answers = {out.decode().strip() for out, _ in outputs}
    assert len(answers) == 1
    check = await _open(database_url, tmp_path, FakeClock(), "check")
    try:
        for kind in AuthorityKind:
            statuses = Counter(a.status for a in check.authorities(kind))
            assert statuses == Counter({AuthorityStatus.ACTIVE: 1, AuthorityStatus.OLD: 1})
    finally:
        await check.aclose()


async def test_replicas_share_sealed_keys_without_a_shared_volume(
    database_url: str, tmp_path: Path
) -> None:
    """Two replicas with separate disks and key_store 'database' both sign with the authority either made."""
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o400)
    clock = FakeClock()

    def settings(name: str) -> CaSettings:
        return CaSettings(
            data_dir=tmp_path / name,
            database_url=database_url,
            key_store="database",
            key_encryption_key_file=kek,
        )

    first = await CertificateAuthority.open(settings("a"), clock=clock)
    second = await CertificateAuthority.open(settings("b"), clock=clock)
    try:
        prepared = await first.prepare(AuthorityKind.X509)
        await first.activate(AuthorityKind.X509, prepared.authority_id)
        await second.refresh()
        csr, _ = make_csr()
        svid = await second.mint_x509_svid(SpiffeId.parse("spiffe://example.org/web"), csr=csr)
        assert svid.authority_id == prepared.authority_id
        assert not (tmp_path / "a" / "keys").exists()
        assert not (tmp_path / "b" / "keys").exists()
    finally:
        await first.aclose()
        await second.aclose()
