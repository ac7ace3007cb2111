"""The test suite's one in-memory CA: trust domains whose X.509 and JWT authorities are made by Sigil's CA code.

A :class:`Domain` mints X509-SVIDs and JWT-SVIDs with the CA's own minting functions, without a datastore; tests
that need the CA service itself (rotation, journal, datastore) open a real one with ``sigil_testing.ca.open_ca``.
A domain lives at a fixed instant (``NOW`` unless given) so expiry tests are exact, or at the real time
(``now=None``) for SVIDs that real TLS stacks and clients such as py-spiffe check against the system clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sigil.ca.authority import Signer, new_jwt_authority, new_x509_authority
from sigil.ca.bundle import TrustBundle
from sigil.ca.jwtsvid import mint_jwt_svid
from sigil.ca.keys import PrivateKey, generate_key
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.ca.upstream import UpstreamCa
from sigil.ca.x509svid import X509Svid, mint_x509_svid
from sigil.enforcer.bundles import BundleSet

__all__ = ["NOW", "Domain", "Issued", "bad_leaf", "bundles", "write_svid_files"]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issued:
    """An SVID with its private key, ready to present."""

    svid: X509Svid
    key: PrivateKey

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self.svid.chain

    @property
    def ders(self) -> list[bytes]:
        return [cert.public_bytes(serialization.Encoding.DER) for cert in self.svid.chain]

    def chain_pem(self) -> bytes:
        return self.svid.chain_pem()

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


class Domain:
    """One trust domain's X.509 authority (self-signed, or under an upstream CA) and JWT authority, minting SVIDs."""

    def __init__(
        self,
        name: str | TrustDomain,
        *,
        now: datetime | None = NOW,
        ttl: timedelta = timedelta(days=30),
        upstream: UpstreamCa | None = None,
    ) -> None:
        self.trust_domain = name if isinstance(name, TrustDomain) else TrustDomain(name)
        self._fixed_now = now
        key = generate_key()
        self.authority = new_x509_authority(
            self.trust_domain, key, now=self.now, ttl=ttl, upstream=upstream
        )
        self.signer = Signer(self.authority, key)
        jwt_key = generate_key()
        self.jwt_signer = Signer(new_jwt_authority(jwt_key, now=self.now, ttl=ttl), jwt_key)

    @property
    def now(self) -> datetime:
        """The domain's instant: the fixed one it was made with, or the real time (``now=None``)."""
        return self._fixed_now if self._fixed_now is not None else datetime.now(UTC)

    @property
    def bundle(self) -> TrustBundle:
        """This trust domain's bundle: the X.509 anchor and the JWT authority's public key."""
        anchor = self.authority.anchor
        assert anchor is not None
        return TrustBundle(
            self.trust_domain,
            (anchor,),
            jwt_authorities={
                self.jwt_signer.authority.authority_id: self.jwt_signer.private_key.public_key()
            },
        )

    def bundle_pem(self) -> bytes:
        return self.bundle.to_pem()

    def id(self, *segments: str) -> SpiffeId:
        return self.trust_domain.spiffe_id(*segments)

    def mint(
        self,
        *segments: str,
        ttl: timedelta = timedelta(hours=1),
        now: datetime | None = None,
        spiffe_id: SpiffeId | None = None,
    ) -> Issued:
        key = generate_key()
        svid = mint_x509_svid(
            self.signer,
            spiffe_id=spiffe_id or self.id(*(segments or ("workload",))),
            public_key=key.public_key(),
            ttl=ttl,
            now=now or self.now,
            private_key=key,
        )
        return Issued(svid, key)

    def mint_jwt(
        self,
        spiffe_id: SpiffeId,
        audiences: Sequence[str],
        *,
        ttl: timedelta = timedelta(minutes=5),
    ) -> str:
        """A JWT-SVID for ``spiffe_id`` signed by the domain's JWT authority."""
        return mint_jwt_svid(
            self.jwt_signer, spiffe_id=spiffe_id, audience=list(audiences), ttl=ttl, now=self.now
        ).token


def bundles(*domains: Domain) -> BundleSet:
    """The bundle set holding each domain's own bundle."""
    return BundleSet.of(*(domain.bundle for domain in domains))


def bad_leaf(
    domain: Domain,
    *,
    uris: Sequence[str] = ("spiffe://example.org/workload",),
    ca: bool = False,
    key_cert_sign: bool = False,
    digital_signature: bool = True,
    eku: Sequence[x509.ObjectIdentifier] | None = (
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A leaf signed by ``domain``'s authority that breaks whichever X509-SVID rule the arguments say."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")]))
        .issuer_name(domain.signer.issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or domain.now - timedelta(minutes=1))
        .not_valid_after(not_after or domain.now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(domain.signer.authority_key_identifier, critical=False)
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(domain.signer.private_key, hashes.SHA256())


def write_svid_files(
    directory: Path, issued: Issued, *bundle_of: Domain
) -> tuple[Path, Path, Path]:
    """svid.pem, key.pem and bundle.pem as ``sigil-server x509 mint --write`` lays them out."""
    directory.mkdir(parents=True, exist_ok=True)
    svid, key, bundle = directory / "svid.pem", directory / "key.pem", directory / "bundle.pem"
    svid.write_bytes(issued.chain_pem())
    key.write_bytes(issued.key_pem())
    bundle.write_bytes(b"".join(domain.bundle_pem() for domain in bundle_of))
    return svid, key, bundle
