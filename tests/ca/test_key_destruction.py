"""A revoked authority's key is destroyed after the revocation commits, and by the next process if one was killed first.

Found by the crash drill (tests/reliability/test_crash.py): ``sigil-server`` killed between a revoke's commit and
the key's deletion left the revoked key on disk for good, where it could still sign.
"""

from __future__ import annotations

import os
from pathlib import Path

from sigil_testing.ca import open_ca
from sigil_testing.clock import FakeClock

from sigil.ca.authority import AuthorityKind, AuthorityStatus


async def test_a_revoked_key_left_behind_by_a_killed_process_is_destroyed_on_open(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The key file of an authority revoked just before a kill is gone once the CA opens again."""
    ca = await open_ca(tmp_path / "data", clock)
    try:
        old = ca.signer(AuthorityKind.X509).authority.authority_id
        prepared = await ca.prepare(AuthorityKind.X509)
        await ca.activate(AuthorityKind.X509, prepared.authority_id)
        await ca.taint(AuthorityKind.X509, old)
        key_file = tmp_path / "data" / "keys" / f"x509-{old}.pem"
        kept = key_file.read_bytes()
        await ca.revoke(AuthorityKind.X509, old, force=True)
        assert not key_file.exists()
    finally:
        await ca.aclose()
    # What a SIGKILL after the revoke's commit and before the deletion leaves (the drill produces it by chance).
    key_file.write_bytes(kept)
    key_file.chmod(0o600)
    ca = await open_ca(tmp_path / "data", clock)
    try:
        statuses = {a.authority_id: a.status for a in ca.authorities()}
        assert statuses[old] is AuthorityStatus.REVOKED
        assert not key_file.exists()
        assert (tmp_path / "data" / "keys" / f"x509-{prepared.authority_id}.pem").exists()
    finally:
        await ca.aclose()


async def test_a_replaced_prepared_authority_loses_its_key_only_with_the_commit(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Preparing again revokes the earlier prepared authority and destroys its key; the new one keeps its own."""
    ca = await open_ca(tmp_path / "data", clock)
    try:
        first = await ca.prepare(AuthorityKind.JWT)
        second = await ca.prepare(AuthorityKind.JWT)
        keys = tmp_path / "data" / "keys"
        assert not (keys / f"jwt-{first.authority_id}.pem").exists()
        assert (keys / f"jwt-{second.authority_id}.pem").exists()
        statuses = {a.authority_id: a.status for a in ca.authorities()}
        assert statuses[first.authority_id] is AuthorityStatus.REVOKED
    finally:
        await ca.aclose()


async def test_a_key_file_half_written_by_a_killed_process_is_removed_on_open(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A temporary key file a SIGKILL left mid-write (the crash drill counts them) is removed when the CA opens
    again; one written just now, perhaps by a replica sharing the directory, is left alone."""
    ca = await open_ca(tmp_path / "data", clock)
    await ca.aclose()
    keys = tmp_path / "data" / "keys"
    stale, fresh = keys / ".x509-abc.pem.k2j4h5", keys / ".jwt-def.pem.x8s7d6"
    for path in (stale, fresh):
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nMIGH")
        path.chmod(0o600)
    an_hour_ago = stale.stat().st_mtime - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    ca = await open_ca(tmp_path / "data", clock)
    await ca.aclose()
    assert not stale.exists()
    assert fresh.exists()
