"""Minting a batch of X509-SVIDs with one signer, and the journal entries of what was minted.

A batch is planned (the leaf rules applied to each request), signed, then wrapped as SVIDs. The CA runs all three in
a worker thread, or the signing alone in worker processes (:mod:`sigil.ca.signing_pool`): CSRs, key generation and
signatures are CPU work that must not block the event loop. Every ID of a batch is checked against
the CA's trust domain before the first signature, so a batch is signed whole or not at all.

An agent's batch (:class:`CsrGrants`) is minted per CSR instead: a CSR that does not verify refuses its own SVIDs
and no other's. Its leaves are planned before the CSR is checked, with :data:`KEY_FROM_CSR` in place of the key,
so that a signing worker can check the CSR and sign over its key in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from sigil.ca.authority import Signer
from sigil.ca.csr import parse_csr, sign_per_csr, subject_key_der
from sigil.ca.datastore.transaction import JournalEntry
from sigil.ca.errors import InvalidSpiffeIdError, MalformedCsrError
from sigil.ca.jwtsvid import JwtSvid
from sigil.ca.keys import PrivateKey, PublicKey, generate_key, public_key_der
from sigil.ca.leaf_template import Leaf
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.x509svid import X509Svid, leaf_for, random_serials, x509_svid

__all__ = [
    "KEY_FROM_CSR",
    "CsrGrants",
    "Grant",
    "X509Request",
    "check_member",
    "grant_items",
    "journal_entries",
    "leaf_rows",
    "mint_x509_batch",
    "mint_x509_per_csr",
    "per_csr_svids",
    "plan_grants",
    "plan_x509_batch",
    "x509_svids",
]

#: A planned leaf's key when its CSR is yet to be verified: the signer puts the CSR's key in its place.
KEY_FROM_CSR = b""


@dataclass(frozen=True, slots=True)
class X509Request:
    """One X509-SVID to mint: the caller's CSR (or public key) and the identity the CA decided on."""

    spiffe_id: SpiffeId
    csr: bytes | x509.CertificateSigningRequest | None = None
    public_key: PublicKey | None = None
    ttl: timedelta | None = None
    dns_names: Sequence[str] = ()
    #: A key already verified from a CSR (:func:`~sigil.ca.csr.verify_csr_keys`), as SubjectPublicKeyInfo DER.
    spki: bytes | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """An X509-SVID the caller was found entitled to, to be minted over the key of the CSR it came with."""

    spiffe_id: SpiffeId
    ttl: timedelta | None = None
    dns_names: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class CsrGrants:
    """One CSR as the caller sent it and what to mint over its key; no grants: the CSR is only checked."""

    csr: bytes
    grants: Sequence[Grant] = ()


def check_member(spiffe_id: SpiffeId, settings: CaSettings) -> None:
    """Refuse an ID outside the CA's trust domain: the CA signs only its own."""
    if not spiffe_id.is_member_of(settings.trust_domain):
        raise InvalidSpiffeIdError(
            str(spiffe_id), f"not in this CA's trust domain {settings.trust_domain}"
        )


def plan_x509_batch(
    signer: Signer,
    requests: Sequence[X509Request],
    now: datetime,
    *,
    settings: CaSettings,
    csrs_later: bool = False,
) -> tuple[list[Leaf], list[PrivateKey | None]]:
    """Each request's leaf, decided by the leaf rules, and the key the CA generated for it (if it had none).

    Every ID is checked first, so a batch is refused whole or signed whole. A CSR is verified here, unless
    ``csrs_later`` leaves a CSR given as bytes to the signer (its leaf's key is :data:`KEY_FROM_CSR`); a request
    that carries a verified ``spki`` or a public key skips that.
    """
    for request in requests:
        check_member(request.spiffe_id, settings)
    leaves, keys = [], []
    for request, serial in zip(requests, random_serials(len(requests)), strict=True):
        private_key = None
        if request.spki is not None:
            spki = request.spki
        elif csrs_later and isinstance(request.csr, bytes):
            spki = KEY_FROM_CSR
        elif request.csr is not None:
            spki = subject_key_der(*parse_csr(request.csr))
        elif request.public_key is not None:
            spki = public_key_der(request.public_key)
        else:
            private_key = generate_key(settings.key_type)
            spki = public_key_der(private_key.public_key())
        leaves.append(
            leaf_for(
                signer,
                spiffe_id=request.spiffe_id,
                spki=spki,
                ttl=request.ttl or settings.x509_svid_ttl,
                now=now,
                dns_names=request.dns_names,
                serial=serial,
            )
        )
        keys.append(private_key)
    return leaves, keys


def plan_grants(
    signer: Signer, batch: Sequence[CsrGrants], now: datetime, *, settings: CaSettings
) -> list[Leaf]:
    """Each grant's leaf in order, with :data:`KEY_FROM_CSR` for its key; every ID is checked first."""
    grants = [grant for item in batch for grant in item.grants]
    for grant in grants:
        check_member(grant.spiffe_id, settings)
    return [
        leaf_for(
            signer,
            spiffe_id=grant.spiffe_id,
            spki=KEY_FROM_CSR,
            ttl=grant.ttl or settings.x509_svid_ttl,
            now=now,
            dns_names=grant.dns_names,
            serial=serial,
        )
        for grant, serial in zip(grants, random_serials(len(grants)), strict=True)
    ]


def x509_svids(
    signer: Signer,
    requests: Sequence[X509Request],
    leaves: Sequence[Leaf],
    certificates: Sequence[bytes],
    keys: Sequence[PrivateKey | None],
) -> list[X509Svid]:
    """The SVIDs of a planned batch once its ``leaves`` are signed as ``certificates`` (DER, in order)."""
    return [
        x509_svid(signer, leaf, spiffe_id=request.spiffe_id, der=der, private_key=key)
        for request, leaf, der, key in zip(requests, leaves, certificates, keys, strict=True)
    ]


def mint_x509_batch(
    signer: Signer, requests: Sequence[X509Request], now: datetime, *, settings: CaSettings
) -> list[X509Svid]:
    """An SVID per request, planned, signed and wrapped in this thread; a request without a key gets one."""
    leaves, keys = plan_x509_batch(signer, requests, now, settings=settings)
    return x509_svids(signer, requests, leaves, signer.leaf_template.certificates(leaves), keys)


def mint_x509_per_csr(
    signer: Signer, batch: Sequence[CsrGrants], now: datetime, *, settings: CaSettings
) -> list[list[X509Svid] | MalformedCsrError]:
    """Each item's SVIDs, or why its CSR is refused, planned, checked and signed in this thread.

    The same steps as a signing worker's (:meth:`SigningPool.mint_per_csr
    <sigil.ca.signing_pool.SigningPool.mint_per_csr>`): :func:`plan_grants`, then
    :func:`~sigil.ca.csr.sign_per_csr`, then :func:`per_csr_svids`.
    """
    items = grant_items(batch, plan_grants(signer, batch, now, settings=settings))
    answers = sign_per_csr(
        signer.leaf_template, [(csr, leaf_rows(leaves)) for csr, leaves in items]
    )
    return per_csr_svids(
        signer, batch, items, [a if isinstance(a, list) else MalformedCsrError(a) for a in answers]
    )


def grant_items(
    batch: Sequence[CsrGrants], leaves: Sequence[Leaf]
) -> list[tuple[bytes, Sequence[Leaf]]]:
    """Each item's CSR with the leaves :func:`plan_grants` planned for its grants."""
    items: list[tuple[bytes, Sequence[Leaf]]] = []
    at = 0
    for item in batch:
        items.append((item.csr, leaves[at : at + len(item.grants)]))
        at += len(item.grants)
    return items


def leaf_rows(
    leaves: Sequence[Leaf], same: dict[datetime, datetime] | None = None
) -> list[tuple[Any, ...]]:
    """The leaves as plain tuples of their fields, as they cross to a signing worker.

    ``same`` (shared by the calls for one batch) makes equal times one object, which pickle writes once.
    """
    same = {} if same is None else same
    return [
        (
            f.serial,
            same.setdefault(f.not_before, f.not_before),
            same.setdefault(f.not_after, f.not_after),
            f.spki,
            f.uri,
            f.dns_names,
        )
        for f in leaves
    ]


def per_csr_svids(
    signer: Signer,
    batch: Sequence[CsrGrants],
    items: Sequence[tuple[bytes, Sequence[Leaf]]],
    answers: Sequence[list[bytes] | MalformedCsrError],
) -> list[list[X509Svid] | MalformedCsrError]:
    """Each item's SVIDs once its leaves are signed as ``answers`` (DER, in order), or why its CSR was refused."""
    minted: list[list[X509Svid] | MalformedCsrError] = []
    for item, (_, signed), answer in zip(batch, items, answers, strict=True):
        if isinstance(answer, MalformedCsrError):
            minted.append(answer)
        else:
            minted.append(
                [
                    x509_svid(signer, leaf, spiffe_id=grant.spiffe_id, der=der)
                    for grant, leaf, der in zip(item.grants, signed, answer, strict=True)
                ]
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
