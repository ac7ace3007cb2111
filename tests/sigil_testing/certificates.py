"""X.509 authorities that are not SPIFFE ones: an operator's root and intermediate, a private Web PKI, the control
plane's serving CA. Every test that needs such a CA or a TLS server certificate makes it here.

SPIFFE trust domains come from :mod:`sigil_testing.pki` (and the CA service itself from
:func:`sigil_testing.ca.open_ca`). This module needs ``cryptography`` and ``sigil.ca.keys`` only, so the control
plane's command (``tools/controlplane``) can load it without the issuer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sigil.ca.keys import write_private_key

__all__ = ["WebPki", "ca_certificate", "server_certificate", "write_web_pki"]

HashAlgorithm = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
Signed = tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]

# Backdated a day, so that what a test makes "now" is already valid for a peer whose clock lags, and for a fake
# clock a test starts at the real time and then reads back.
_BACKDATE = timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ca_certificate(
    common_name: str,
    key: CertificateIssuerPrivateKeyTypes,
    *,
    issuer: Signed | None = None,
    days: int = 365,
    hash_algorithm: HashAlgorithm | None = None,
) -> x509.Certificate:
    """A CA certificate for ``key``: self-signed, or signed by ``issuer`` (its certificate and key)."""
    now = datetime.now(UTC)
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    signing_key = issuer[1] if issuer else key
    return builder.sign(
        signing_key, hash_algorithm if hash_algorithm is not None else hashes.SHA256()
    )


def server_certificate(
    common_name: str, key: ec.EllipticCurvePrivateKey, *, issuer: Signed, days: int = 7
) -> x509.Certificate:
    """A TLS server certificate for ``localhost`` and ``127.0.0.1``, signed by ``issuer``."""
    now = datetime.now(UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
        .sign(issuer[1], hashes.SHA256())
    )


@dataclass(frozen=True, slots=True)
class WebPki:
    """A private Web PKI: its root (``ca_file``) and a server certificate for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def write_web_pki(directory: Path) -> WebPki:
    """A root CA playing the public Web PKI, and a TLS server certificate it signed, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = ca_certificate("Test Web Root", root_key, days=30)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = server_certificate("localhost", leaf_key, issuer=(root, root_key))
    pem = serialization.Encoding.PEM
    pki = WebPki(directory / "web-root.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(root.public_bytes(pem))
    pki.cert_file.write_bytes(leaf.public_bytes(pem))
    write_private_key(pki.key_file, leaf_key)
    return pki
