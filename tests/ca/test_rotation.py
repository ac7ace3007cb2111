"""Authorities rotate on SPIRE's schedule, by hand on request, and their state survives a restart exactly."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.ca import make_csr, open_ca
from sigil_testing.clock import FakeClock

from sigil.ca import SpiffeId
from sigil.ca.authority import AuthorityKind, AuthorityStatus
from sigil.ca.errors import AuthorityError, NoActiveAuthorityError
from sigil.ca.service import CertificateAuthority

WEB = SpiffeId.parse("spiffe://example.org/web")


def _statuses(ca: CertificateAuthority, kind: AuthorityKind) -> list[str]:
    return [a.status.value for a in ca.authorities(kind)]


@pytest.mark.parametrize("kind", list(AuthorityKind))
async def test_prepare_at_half_life_activate_at_five_sixths(
    ca: CertificateAuthority, clock: FakeClock, kind: AuthorityKind
) -> None:
    """With a 24 h authority: nothing before 12 h, a prepared one at 12 h, activated at 20 h."""
    first = ca.signer(kind).authority.authority_id
    clock.advance(timedelta(hours=11, minutes=59))
    assert await ca.rotate() == []
    clock.advance(timedelta(minutes=2))
    await ca.rotate()
    assert _statuses(ca, kind) == ["active", "prepared"]
    clock.advance(timedelta(hours=7, minutes=58))
    await ca.rotate()
    assert ca.signer(kind).authority.authority_id == first
    clock.advance(timedelta(minutes=2))
    await ca.rotate()
    assert _statuses(ca, kind) == ["old", "active"]
    assert ca.signer(kind).authority.authority_id != first


async def test_svids_never_outlive_their_signer_across_rotation(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """At every hour of two days of rotation, a fresh SVID ends no later than its signer, with a full TTL."""
    csr, _ = make_csr()
    for _ in range(48):
        clock.advance(timedelta(hours=1))
        await ca.rotate()
        svid = await ca.mint_x509_svid(WEB, csr=csr)
        signer = next(a for a in ca.authorities() if a.authority_id == svid.authority_id)
        assert svid.not_after <= signer.not_after
        assert svid.not_after - clock() == timedelta(hours=1)


async def test_an_expired_authority_leaves_the_bundle(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """Once an old authority has expired, the bundle no longer carries it."""
    for _ in range(30):
        clock.advance(timedelta(hours=1))
        await ca.rotate()
    expired = [a for a in ca.authorities(AuthorityKind.X509) if a.not_after <= clock()]
    assert expired
    anchors = {a.authority_id for a in ca.authorities(AuthorityKind.X509) if a.in_bundle(clock())}
    assert len(ca.bundle().x509_authorities) == len(anchors)
    assert not anchors & {a.authority_id for a in expired}


async def test_taint_marks_what_the_authority_signed(ca: CertificateAuthority) -> None:
    """Tainting the old authority marks its unexpired SVIDs as due for re-issue."""
    csr, _ = make_csr()
    old = ca.signer(AuthorityKind.X509).authority.authority_id
    issued = [await ca.mint_x509_svid(WEB, csr=csr) for _ in range(3)]
    new = await ca.prepare(AuthorityKind.X509)
    await ca.activate(AuthorityKind.X509, new.authority_id)
    fresh = await ca.mint_x509_svid(WEB, csr=csr)
    assert await ca.taint(AuthorityKind.X509, old) == 3
    due = {e.serial for e in await ca.store.journal(reissue_due=True)}
    assert due == {s.serial_hex for s in issued}
    assert fresh.serial_hex not in due
    assert old in ca.tainted_authority_ids()


async def test_manual_verbs_refuse_wrong_steps(ca: CertificateAuthority) -> None:
    """The active authority cannot be tainted; an untainted one cannot be revoked; unknown ids are named."""
    active = ca.signer(AuthorityKind.X509).authority.authority_id
    with pytest.raises(AuthorityError, match="only an old authority can be tainted"):
        await ca.taint(AuthorityKind.X509, active)
    with pytest.raises(AuthorityError, match="taint it first"):
        await ca.revoke(AuthorityKind.X509, active)
    with pytest.raises(AuthorityError, match="only a prepared authority can be activated"):
        await ca.activate(AuthorityKind.X509, active)
    with pytest.raises(AuthorityError, match="no such x509 authority"):
        await ca.activate(AuthorityKind.X509, "0123")


async def test_revoked_authority_is_gone_and_its_key_destroyed(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """Revocation removes the authority from the bundle and deletes its key file."""
    old = ca.signer(AuthorityKind.X509).authority
    new = await ca.prepare(AuthorityKind.X509)
    await ca.activate(AuthorityKind.X509, new.authority_id)
    await ca.taint(AuthorityKind.X509, old.authority_id)
    revoked = await ca.revoke(AuthorityKind.X509, old.authority_id)
    assert revoked.status is AuthorityStatus.REVOKED
    assert old.certificate not in ca.bundle().x509_authorities
    assert not (tmp_path / "data" / "keys" / f"x509-{old.authority_id}.pem").exists()


async def test_state_survives_a_restart_exactly(tmp_path: Path) -> None:
    """After a restart the same authorities, statuses, taint flags and bundle sequence are back."""
    clock = FakeClock()
    ca = await open_ca(tmp_path / "d", clock)
    old = ca.signer(AuthorityKind.X509).authority.authority_id
    new = await ca.prepare(AuthorityKind.X509)
    await ca.activate(AuthorityKind.X509, new.authority_id)
    await ca.taint(AuthorityKind.X509, old)
    await ca.prepare(AuthorityKind.JWT)
    before = [(a.authority_id, a.status, a.tainted, a.not_after) for a in ca.authorities()]
    bundle_before = ca.bundle()
    await ca.aclose()
    reopened = await open_ca(tmp_path / "d", clock)
    try:
        after = [(a.authority_id, a.status, a.tainted, a.not_after) for a in reopened.authorities()]
        assert sorted(after) == sorted(before)
        assert reopened.bundle().sequence == bundle_before.sequence
        assert reopened.bundle().same_content(bundle_before)
        assert reopened.signer(AuthorityKind.X509).authority.authority_id == new.authority_id
    finally:
        await reopened.aclose()


async def test_nothing_signs_after_everything_expired_without_rotation(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """If nobody rotated for longer than an authority's life, minting fails closed until rotation runs."""
    clock.advance(timedelta(days=2))
    with pytest.raises(NoActiveAuthorityError):
        await ca.mint_x509_svid(WEB)
    await ca.rotate()
    assert (await ca.mint_x509_svid(WEB)).not_after > clock()
