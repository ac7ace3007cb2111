"""X509-SVIDs: minting leaf certificates to the letter of the X509-SVID standard.

Every rule of reference §1 for a leaf is decided here, never taken from the CSR: exactly one URI SAN (the SPIFFE
ID), critical KeyUsage with digitalSignature (plus keyEncipherment and keyAgreement, as SPIRE sets them) and no
keyCertSign or cRLSign, cA=false, serverAuth and clientAuth, SKID and AKID, a random serial, notBefore backdated,
notAfter capped at the signer's (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from sigil.ca.authority import NOT_BEFORE_CUSHION, Signer
from sigil.ca.errors import InvalidSpiffeIdError, TtlError
from sigil.ca.keys import PrivateKey, PublicKey, public_key_der
from sigil.ca.leaf_template import Leaf, LeafTemplate
from sigil.ca.spiffe_id import SpiffeId

__all__ = ["X509Svid", "leaf_for", "leaf_template", "mint_x509_svid", "x509_svid"]

_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=True,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_EKU = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)
_LEAF_BASIC_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)


def leaf_template(
    private_key: PrivateKey,
    *,
    issuer_name: x509.Name,
    authority_key_identifier: x509.AuthorityKeyIdentifier,
) -> LeafTemplate:
    """The part of every leaf that does not depend on the leaf: issuer, constraints, usages, AKID, encoded once.

    ``CertificateBuilder`` re-encoded these four values for every SVID and validated the rest again; the template
    makes byte-identical certificates in about a third less time (:mod:`sigil.ca.leaf_template`).
    """
    return LeafTemplate(
        private_key,
        issuer=issuer_name,
        shared_extensions=(
            (_LEAF_BASIC_CONSTRAINTS, True),
            (_LEAF_KEY_USAGE, True),
            (_LEAF_EKU, False),
            (authority_key_identifier, False),
        ),
    )


def _random_serial() -> int:
    """A random positive 128-bit serial (RFC 5280 4.1.2.2 allows up to 20 octets; 128 bits are plenty)."""
    return secrets.randbits(128) or 1


@dataclass(frozen=True, slots=True)
class X509Svid:
    """A minted X509-SVID: the leaf, the chain above it, and the key if the CA generated it."""

    spiffe_id: SpiffeId
    #: Leaf first, then the intermediates up to (not including) the bundle's anchor.
    chain: tuple[x509.Certificate, ...]
    authority_id: str
    private_key: PrivateKey | None = None

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def serial_hex(self) -> str:
        return format(self.leaf.serial_number, "032x")

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    def chain_der(self) -> bytes:
        """The chain as the Workload API carries it: DER certificates concatenated, leaf first."""
        return b"".join(c.public_bytes(serialization.Encoding.DER) for c in self.chain)

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


def leaf_for(
    signer: Signer,
    *,
    spiffe_id: SpiffeId,
    spki: bytes,
    ttl: timedelta,
    now: datetime,
    dns_names: Sequence[str] = (),
) -> Leaf:
    """The leaf rules for one SVID over ``spki``: a path, a positive TTL, a life no longer than the signer's."""
    if spiffe_id.is_root:
        raise InvalidSpiffeIdError(str(spiffe_id), "an X509-SVID's SPIFFE ID must have a path")
    if ttl <= timedelta(0):
        raise TtlError(str(ttl), "must be positive")
    authority = signer.authority
    if now >= authority.not_after:
        raise TtlError(str(ttl), f"the signing authority {authority.authority_id} has expired")
    return Leaf(
        serial=_random_serial(),
        not_before=now - NOT_BEFORE_CUSHION,
        not_after=min(now + ttl, authority.not_after),
        spki=spki,
        uri=str(spiffe_id),
        dns_names=tuple(dns_names),
    )


def x509_svid(
    signer: Signer, spiffe_id: SpiffeId, der: bytes, *, private_key: PrivateKey | None = None
) -> X509Svid:
    """The SVID of a leaf ``der`` that ``signer`` signed, with the chain above it."""
    return X509Svid(
        spiffe_id=spiffe_id,
        chain=(x509.load_der_x509_certificate(der), *signer.chain_above_leaf),
        authority_id=signer.authority.authority_id,
        private_key=private_key,
    )


def mint_x509_svid(
    signer: Signer,
    *,
    spiffe_id: SpiffeId,
    public_key: PublicKey,
    ttl: timedelta,
    now: datetime,
    dns_names: Sequence[str] = (),
    private_key: PrivateKey | None = None,
) -> X509Svid:
    """Sign an X509-SVID for ``spiffe_id`` over ``public_key``; its life ends no later than the signer's."""
    leaf = leaf_for(
        signer,
        spiffe_id=spiffe_id,
        spki=public_key_der(public_key),
        ttl=ttl,
        now=now,
        dns_names=dns_names,
    )
    (der,) = signer.leaf_template.certificates([leaf])
    return x509_svid(signer, spiffe_id, der, private_key=private_key)
