"""Building blocks for tests that need a real Sigil CA: CSRs, an operator's upstream CA, openssl."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sigil.ca.keys import PrivateKey, generate_key, write_private_key
from sigil.ca.service import CertificateAuthority
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import TrustDomain
from sigil_testing.certificates import ca_certificate
from sigil_testing.clock import FakeClock

__all__ = ["make_csr", "open_ca", "openssl", "write_upstream_ca"]

EPOCH = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def open_ca(data_dir: Path, clock: FakeClock, **overrides: object) -> CertificateAuthority:
    """Open a CA on SQLite under ``data_dir`` (trust domain example.org unless overridden)."""
    settings = CaSettings(data_dir=data_dir, **overrides)  # type: ignore[arg-type]
    return await CertificateAuthority.open(settings, clock=clock)


def make_csr(key: PrivateKey | None = None, *, uri: str | None = None) -> tuple[bytes, PrivateKey]:
    """A PEM CSR over a fresh P-256 key (or ``key``), optionally asking for a URI SAN the CA must ignore."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asked-for")])
    )
    if uri is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


@dataclass(frozen=True)
class UpstreamFiles:
    directory: Path
    root: x509.Certificate
    intermediate: x509.Certificate


def write_upstream_ca(
    directory: Path,
    *,
    days: int = 365,
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
) -> UpstreamFiles:
    """An operator's upstream CA (root, then an intermediate that signs Sigil) in the four-file layout.

    ``hash_algorithm`` is the one the operator's CAs sign with (SHA-256 unless given).
    """
    chosen = hash_algorithm if hash_algorithm is not None else hashes.SHA256()
    directory.mkdir(parents=True, exist_ok=True)
    root_key = generate_key()
    root = ca_certificate("Operator Root", root_key, days=days * 10, hash_algorithm=chosen)
    inter_key = generate_key()
    inter = ca_certificate(
        "Operator Intermediate",
        inter_key,
        issuer=(root, root_key),
        days=days,
        hash_algorithm=chosen,
    )
    pem = serialization.Encoding.PEM
    (directory / "ca-cert.pem").write_bytes(inter.public_bytes(pem))
    write_private_key(directory / "ca-key.pem", inter_key)
    (directory / "cert-chain.pem").write_bytes(inter.public_bytes(pem) + root.public_bytes(pem))
    (directory / "root-cert.pem").write_bytes(root.public_bytes(pem))
    return UpstreamFiles(directory, root, inter)


def trust_domain() -> TrustDomain:
    return TrustDomain("example.org")


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``openssl`` command (an unmodified, independent implementation) and return what it said."""
    return subprocess.run(  # noqa: S603 - the arguments are the test's own
        ["openssl", *args],  # noqa: S607 - openssl from PATH is the point: the system's own tool
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
