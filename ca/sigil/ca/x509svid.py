"""X509-SVIDs: minting leaf certificates to the letter of the X509-SVID standard.

Every rule of reference §1 for a leaf is decided here, never taken from the CSR: exactly one URI SAN (the SPIFFE
ID), critical KeyUsage with digitalSignature (plus keyEncipherment and keyAgreement, as SPIRE sets them) and no
keyCertSign or cRLSign, cA=false, serverAuth and clientAuth, SKID and AKID, a random serial, notBefore backdated,
notAfter capped at the signer's (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md).
"""

from __future__ import annotations

import binascii
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from sigil.ca.authority import NOT_BEFORE_CUSHION, IssuerChain, Signer
from sigil.ca.errors import InvalidSpiffeIdError, TtlError
from sigil.ca.keys import PrivateKey, PublicKey, public_key_der
from sigil.ca.leaf_template import Leaf, LeafTemplate
from sigil.ca.spiffe_id import SpiffeId

__all__ = [
    "X509Svid",
    "certificate_pem",
    "leaf_for",
    "leaf_template",
    "mint_x509_svid",
    "random_serials",
    "x509_svid",
]

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
_NO_TIME = timedelta(0)


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


def random_serials(count: int) -> list[int]:
    """``count`` random positive 128-bit serials (RFC 5280 4.1.2.2 allows up to 20 octets; 128 bits are plenty).

    From one read of the system's CSPRNG for the lot: a batch asked for a hundred reads before.
    """
    pool = secrets.token_bytes(16 * count)
    return [int.from_bytes(pool[i : i + 16], "big") or 1 for i in range(0, 16 * count, 16)]


@dataclass(frozen=True, slots=True)
class X509Svid:
    """A minted X509-SVID: the leaf, the chain above it, and the key if the CA generated it.

    The leaf stays the DER its signer made, beside the serial and expiry it was made with: the issuer journals and
    answers a batch from those without parsing a certificate (parsing and re-encoding each leaf cost the server's
    process about 25 µs per SVID). ``leaf`` and ``chain`` parse it on first use.
    """

    spiffe_id: SpiffeId
    leaf_der: bytes
    #: The intermediates up to (not including) the bundle's anchor, encoded once per signer.
    above_leaf: IssuerChain
    authority_id: str
    serial: int
    #: The leaf's notAfter, as the certificate carries it (whole seconds, UTC).
    not_after: datetime
    private_key: PrivateKey | None = None
    #: The parsed leaf once something asked for it (a cell, so that the value object can stay frozen).
    _parsed: list[x509.Certificate] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    @property
    def leaf(self) -> x509.Certificate:
        if not self._parsed:
            self._parsed.append(x509.load_der_x509_certificate(self.leaf_der))
        return self._parsed[0]

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, then the intermediates up to (not including) the bundle's anchor."""
        return (self.leaf, *self.above_leaf.certificates)

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "032x")

    def chain_der(self) -> bytes:
        """The chain as the Workload API carries it: DER certificates concatenated, leaf first."""
        return self.leaf_der + self.above_leaf.der

    def chain_pem(self) -> bytes:
        return certificate_pem(self.leaf_der) + self.above_leaf.pem


def certificate_pem(der: bytes) -> bytes:
    """A certificate's PEM (RFC 7468 §2 and §5: base64 in lines of 64, ``CERTIFICATE`` labels), from its DER.

    What ``Certificate.public_bytes(PEM)`` writes, byte for byte (a test holds it to that), without parsing the
    certificate first.
    """
    text = binascii.b2a_base64(der, newline=False)
    lines = b"\n".join([text[i : i + 64] for i in range(0, len(text), 64)])
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def leaf_for(
    signer: Signer,
    *,
    spiffe_id: SpiffeId,
    spki: bytes,
    ttl: timedelta,
    now: datetime,
    dns_names: Sequence[str] = (),
    serial: int | None = None,
) -> Leaf:
    """The leaf rules for one SVID over ``spki``: a path, a positive TTL, a life no longer than the signer's.

    ``serial`` is one of :func:`random_serials` when the caller drew a batch's at once; otherwise one is drawn here.
    """
    if spiffe_id.is_root:
        raise InvalidSpiffeIdError(str(spiffe_id), "an X509-SVID's SPIFFE ID must have a path")
    if ttl <= _NO_TIME:
        raise TtlError(str(ttl), "must be positive")
    authority = signer.authority
    if now >= authority.not_after:
        raise TtlError(str(ttl), f"the signing authority {authority.authority_id} has expired")
    return Leaf(
        serial=serial if serial is not None else random_serials(1)[0],
        not_before=now - NOT_BEFORE_CUSHION,
        not_after=min(now + ttl, authority.not_after),
        spki=spki,
        uri=str(spiffe_id),
        dns_names=tuple(dns_names),
    )


@functools.lru_cache(maxsize=64)  # the leaves of a batch share their notAfter
def _as_encoded(value: datetime) -> datetime:
    """``value`` as a certificate carries it (``leaf_template._time``): UTC, whole seconds; naive means UTC."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=0)


def x509_svid(
    signer: Signer,
    leaf: Leaf,
    *,
    spiffe_id: SpiffeId,
    der: bytes,
    private_key: PrivateKey | None = None,
) -> X509Svid:
    """The SVID of ``leaf`` once ``signer`` has signed it as ``der``, with the chain above it."""
    return X509Svid(
        spiffe_id,
        der,
        signer.chain_above_leaf,
        signer.authority.authority_id,
        leaf.serial,
        _as_encoded(leaf.not_after),
        private_key,
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
    return x509_svid(signer, leaf, spiffe_id=spiffe_id, der=der, private_key=private_key)
