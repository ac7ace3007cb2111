"""The journal follows a taint's re-issue per holder, and revoke refuses while what it would cut is still held."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sigil_testing.ca import make_csr
from sigil_testing.clock import FakeClock

from sigil.ca import SpiffeId
from sigil.ca.authority import AuthorityKind, AuthorityStatus
from sigil.ca.errors import AuthorityInUseError
from sigil.ca.service import CertificateAuthority

WEB = SpiffeId.parse("spiffe://example.org/web")
DB = SpiffeId.parse("spiffe://example.org/db")
AGENT_A = "spiffe://example.org/sigil/agent/join/a"
AGENT_B = "spiffe://example.org/sigil/agent/join/b"


async def _rotate(ca: CertificateAuthority, clock: FakeClock) -> str:
    """Prepare and activate a new X.509 authority; the old one's ID."""
    old = ca.signer(AuthorityKind.X509).authority.authority_id
    clock.advance(timedelta(seconds=1))
    new = await ca.prepare(AuthorityKind.X509)
    await ca.activate(AuthorityKind.X509, new.authority_id)
    clock.advance(timedelta(seconds=1))
    return old


async def test_revoke_is_refused_until_every_holder_has_a_fresh_svid(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """After the taint, revoke names each agent still holding an old SVID; each re-issue clears its agent."""
    csr, _ = make_csr()
    await ca.mint_x509_svid(WEB, csr=csr, holder=AGENT_A)
    clock.advance(timedelta(minutes=1))
    await ca.mint_x509_svid(WEB, csr=csr, holder=AGENT_A)  # a half-life renewal: two unexpired
    await ca.mint_x509_svid(DB, csr=csr, holder=AGENT_B)
    old = await _rotate(ca, clock)
    assert await ca.taint(AuthorityKind.X509, old) == 3

    with pytest.raises(AuthorityInUseError) as refused:
        await ca.revoke(AuthorityKind.X509, old)
    assert refused.value.remaining == 3
    assert refused.value.holders == {AGENT_A: 2, AGENT_B: 1}
    assert refused.value.last_expiry == clock() - timedelta(seconds=2) + timedelta(hours=1)
    assert "3 unexpired SVID(s)" in str(refused.value)
    assert "--force" in str(refused.value)

    await ca.mint_x509_svid(WEB, csr=csr, holder=AGENT_A)
    assert (await ca.outstanding(old)).holders == {AGENT_B: 1}
    # The same ID for another holder replaces nothing of B's.
    await ca.mint_x509_svid(DB, csr=csr, holder=AGENT_A)
    assert (await ca.outstanding(old)).count == 1
    await ca.mint_x509_svid(DB, csr=csr, holder=AGENT_B)
    assert (await ca.outstanding(old)).count == 0
    revoked = await ca.revoke(AuthorityKind.X509, old)
    assert revoked.status is AuthorityStatus.REVOKED


async def test_what_was_superseded_before_the_taint_counts_as_replaced(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """An SVID renewed under the new authority between activation and taint leaves nothing to wait for."""
    csr, _ = make_csr()
    await ca.mint_x509_svid(WEB, csr=csr, holder=AGENT_A)
    old = await _rotate(ca, clock)
    await ca.mint_x509_svid(WEB, csr=csr, holder=AGENT_A)
    await ca.taint(AuthorityKind.X509, old)
    assert (await ca.outstanding(old)).count == 0
    await ca.revoke(AuthorityKind.X509, old)


async def test_expired_svids_do_not_hold_a_revoke_back(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """Once the last unreplaced SVID has expired, revoking cuts nothing and is allowed."""
    await ca.mint_x509_svid(WEB, csr=make_csr()[0], holder=AGENT_A, ttl=timedelta(minutes=5))
    old = await _rotate(ca, clock)
    await ca.taint(AuthorityKind.X509, old)
    assert (await ca.outstanding(old)).count == 1
    clock.advance(timedelta(minutes=6))
    assert (await ca.outstanding(old)).count == 0
    await ca.revoke(AuthorityKind.X509, old)


async def test_force_revokes_what_is_still_held(ca: CertificateAuthority, clock: FakeClock) -> None:
    """``force`` revokes at once, in-use SVIDs and all (the emergency path for a compromised key)."""
    await ca.mint_x509_svid(WEB, csr=make_csr()[0], holder=AGENT_A)
    old = await _rotate(ca, clock)
    await ca.taint(AuthorityKind.X509, old)
    revoked = await ca.revoke(AuthorityKind.X509, old, force=True)
    assert revoked.status is AuthorityStatus.REVOKED
    assert not revoked.in_bundle(clock())


async def test_jwt_svids_are_followed_the_same_way(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """A JWT-SVID of the tainted key holds the revoke back until the same holder gets a fresh one."""
    await ca.mint_jwt_svid(WEB, audience=["db"], holder=AGENT_A)
    old = ca.signer(AuthorityKind.JWT).authority.authority_id
    new = await ca.prepare(AuthorityKind.JWT)
    await ca.activate(AuthorityKind.JWT, new.authority_id)
    clock.advance(timedelta(seconds=1))
    await ca.taint(AuthorityKind.JWT, old)
    with pytest.raises(AuthorityInUseError):
        await ca.revoke(AuthorityKind.JWT, old)
    await ca.mint_jwt_svid(WEB, audience=["db"], holder=AGENT_A)
    await ca.revoke(AuthorityKind.JWT, old)
