"""Minting a batch of X509-SVIDs with one signer, and the journal entries of what was minted.

The batch runs in a worker thread (:meth:`~sigil.ca.service.CertificateAuthority.mint_x509_svids`): parsing CSRs,
generating keys and signing are CPU work that must not block the event loop. Every ID of a batch is checked against
the CA's trust domain before the first signature, so a batch is signed whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from sigil.ca.authority import Signer
from sigil.ca.csr import parse_csr
from sigil.ca.datastore.transaction import JournalEntry
from sigil.ca.errors import InvalidSpiffeIdError
from sigil.ca.jwtsvid import JwtSvid
from sigil.ca.keys import PublicKey, generate_key
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.x509svid import X509Svid, mint_x509_svid

__all__ = ["X509Request", "check_member", "journal_entries", "mint_x509_batch"]


@dataclass(frozen=True, slots=True)
class X509Request:
    """One X509-SVID to mint: the caller's CSR (or public key) and the identity the CA decided on."""

    spiffe_id: SpiffeId
    csr: bytes | x509.CertificateSigningRequest | None = None
    public_key: PublicKey | None = None
    ttl: timedelta | None = None
    dns_names: Sequence[str] = ()


def check_member(spiffe_id: SpiffeId, settings: CaSettings) -> None:
    """Refuse an ID outside the CA's trust domain: the CA signs only its own."""
    if not spiffe_id.is_member_of(settings.trust_domain):
        raise InvalidSpiffeIdError(
            str(spiffe_id), f"not in this CA's trust domain {settings.trust_domain}"
        )


def mint_x509_batch(
    signer: Signer, requests: Sequence[X509Request], now: datetime, *, settings: CaSettings
) -> list[X509Svid]:
    """An SVID per request; a request without a CSR or public key gets a key generated here (``x509 mint``)."""
    for request in requests:
        check_member(request.spiffe_id, settings)
    minted = []
    for request in requests:
        private_key = None
        if request.csr is not None:
            _, public_key = parse_csr(request.csr)
        elif request.public_key is not None:
            public_key = request.public_key
        else:
            private_key = generate_key(settings.key_type)
            public_key = private_key.public_key()
        minted.append(
            mint_x509_svid(
                signer,
                spiffe_id=request.spiffe_id,
                public_key=public_key,
                ttl=request.ttl or settings.x509_svid_ttl,
                now=now,
                dns_names=request.dns_names,
                private_key=private_key,
            )
        )
    return minted


def journal_entries(
    minted: Sequence[X509Svid | JwtSvid], now: datetime, *, holder: str | None = None
) -> list[JournalEntry]:
    """The journal's record of each SVID minted at ``now`` for ``holder`` (the agent that asked, if any)."""
    entries = []
    for svid in minted:
        if isinstance(svid, X509Svid):
            serial, kind, authority_id, not_after = (
                svid.serial_hex,
                "x509",
                svid.authority_id,
                svid.not_after,
            )
        else:
            serial, kind, authority_id, not_after = svid.token_id, "jwt", svid.key_id, svid.expiry
        entries.append(
            JournalEntry(
                serial=serial,
                kind=kind,
                spiffe_id=str(svid.spiffe_id),
                authority_id=authority_id,
                issued_at=now,
                not_after=not_after,
                holder=holder,
            )
        )
    return entries
