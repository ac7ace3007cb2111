"""Signing authorities: what they are, and how a new one is made.

An X.509 authority is a CA certificate whose URI SAN is the trust domain's own ID (``spiffe://TD``) and whose key
signs X509-SVIDs. It is either self-signed (the root of the trust domain) or an intermediate under the operator's
upstream CA, in which case the upstream root anchors the bundle. A JWT authority is a key with a ``kid``.
Both go through the same life: prepared, active, old; old ones may be tainted and then revoked
(SPIRE's ``localauthority`` verbs, pkg/server/ca/manager).
"""

from __future__ import annotations

import enum
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from sigil.ca.keys import PrivateKey, PublicKey, signature_hash
from sigil.ca.spiffe_id import TrustDomain
from sigil.ca.upstream import UpstreamCa

if TYPE_CHECKING:
    from sigil.ca.leaf_template import LeafTemplate

__all__ = [
    "Authority",
    "AuthorityKind",
    "AuthorityStatus",
    "IssuerChain",
    "Signer",
    "new_jwt_authority",
    "new_x509_authority",
]

#: Certificates are backdated by this much so that a peer whose clock is slightly behind still accepts them.
NOT_BEFORE_CUSHION = timedelta(seconds=10)
_KID_ALPHABET = string.ascii_letters + string.digits


class AuthorityKind(enum.StrEnum):
    X509 = "x509"
    JWT = "jwt"


class AuthorityStatus(enum.StrEnum):
    """Where an authority is in its life. Only an ``active`` one signs."""

    PREPARED = "prepared"
    ACTIVE = "active"
    OLD = "old"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Authority:
    """One signing authority as the datastore keeps it (the private key lives in the key store)."""

    authority_id: str
    kind: AuthorityKind
    status: AuthorityStatus
    tainted: bool
    not_before: datetime
    not_after: datetime
    public_key: PublicKey
    #: The authority's own CA certificate (X.509 authorities only).
    certificate: x509.Certificate | None = None
    #: Upstream certificates between this one and the root anchor, nearest first, root excluded.
    upstream_chain: tuple[x509.Certificate, ...] = ()
    #: The upstream root that anchors this authority in the bundle, when there is an upstream CA.
    upstream_root: x509.Certificate | None = None

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    @property
    def anchor(self) -> x509.Certificate | None:
        """The certificate the bundle carries for this authority: itself, or its upstream root."""
        return self.upstream_root if self.upstream_root is not None else self.certificate

    def in_bundle(self, now: datetime) -> bool:
        """True while the bundle should publish this authority: not revoked and not expired."""
        return self.status is not AuthorityStatus.REVOKED and self.not_after > now

    def with_status(self, status: AuthorityStatus, *, tainted: bool | None = None) -> Authority:
        return Authority(
            authority_id=self.authority_id,
            kind=self.kind,
            status=status,
            tainted=self.tainted if tainted is None else tainted,
            not_before=self.not_before,
            not_after=self.not_after,
            public_key=self.public_key,
            certificate=self.certificate,
            upstream_chain=self.upstream_chain,
            upstream_root=self.upstream_root,
        )


@dataclass(frozen=True)
class Signer:
    """An active authority together with its private key: what minting needs.

    The parts of every leaf that depend only on the signer are computed once and kept on it (no slots, so that
    ``cached_property`` has somewhere to keep them).
    """

    authority: Authority
    private_key: PrivateKey

    @cached_property
    def issuer_name(self) -> x509.Name:
        if self.authority.certificate is None:
            raise TypeError(f"authority {self.authority.authority_id} is not an X.509 authority")
        return self.authority.certificate.subject

    @cached_property
    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.authority.public_key)

    @cached_property
    def leaf_template(self) -> LeafTemplate:
        """What every leaf this signer makes shares, encoded once (the leaf rules live in ``x509svid``)."""
        from sigil.ca.x509svid import leaf_template

        return leaf_template(
            self.private_key,
            issuer_name=self.issuer_name,
            authority_key_identifier=self.authority_key_identifier,
        )

    @cached_property
    def chain_above_leaf(self) -> IssuerChain:
        """What an SVID's chain carries after its leaf: the authority and its upstream intermediates."""
        cert = self.authority.certificate
        if cert is None or self.authority.upstream_root is None:
            # A self-signed authority is itself the anchor; SVIDs carry only the leaf.
            return IssuerChain.of(())
        return IssuerChain.of((cert, *self.authority.upstream_chain))


@dataclass(frozen=True, slots=True)
class IssuerChain:
    """The certificates an SVID's chain carries after its leaf, with their DER and PEM encoded once per signer."""

    certificates: tuple[x509.Certificate, ...]
    der: bytes
    pem: bytes

    @classmethod
    def of(cls, certificates: tuple[x509.Certificate, ...]) -> IssuerChain:
        return cls(
            certificates,
            b"".join(c.public_bytes(serialization.Encoding.DER) for c in certificates),
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates),
        )


def _ski(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def new_x509_authority(
    trust_domain: TrustDomain,
    key: PrivateKey,
    *,
    now: datetime,
    ttl: timedelta,
    organization: str = "Sigil",
    upstream: UpstreamCa | None = None,
) -> Authority:
    """Make a prepared X.509 authority: self-signed, or signed by ``upstream`` and capped at its expiry."""
    public_key = key.public_key()
    ski = _ski(public_key)
    serial = x509.random_serial_number()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} X.509 authority"),
            # Distinguishes successive authorities of one trust domain, as SPIRE's serialNumber attribute does.
            x509.NameAttribute(NameOID.SERIAL_NUMBER, format(serial, "x")),
        ]
    )
    not_before = now - NOT_BEFORE_CUSHION
    not_after = now + ttl
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(trust_domain.id))]),
            critical=False,
        )
    )
    if upstream is None:
        builder = builder.issuer_name(subject).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        signing_key: PrivateKey = key
        chain: tuple[x509.Certificate, ...] = ()
        root = None
    else:
        not_before = max(not_before, upstream.certificate.not_valid_before_utc)
        not_after = min(not_after, upstream.certificate.not_valid_after_utc)
        builder = builder.issuer_name(upstream.certificate.subject).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(upstream.certificate.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        signing_key = upstream.private_key
        chain = upstream.chain_below_root
        root = upstream.root
    certificate = (
        builder.not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(signing_key, signature_hash(signing_key))
    )
    return Authority(
        authority_id=ski.digest.hex(),
        kind=AuthorityKind.X509,
        status=AuthorityStatus.PREPARED,
        tainted=False,
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        certificate=certificate,
        upstream_chain=chain,
        upstream_root=root,
    )


def new_jwt_authority(key: PrivateKey, *, now: datetime, ttl: timedelta) -> Authority:
    """Make a prepared JWT authority with a fresh random ``kid``."""
    kid = "".join(secrets.choice(_KID_ALPHABET) for _ in range(32))
    return Authority(
        authority_id=kid,
        kind=AuthorityKind.JWT,
        status=AuthorityStatus.PREPARED,
        tainted=False,
        not_before=now,
        not_after=now + ttl,
        public_key=key.public_key(),
    )
