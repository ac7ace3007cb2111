"""An operator's upstream CA, loaded from the familiar set of files.

The directory holds ``ca-cert.pem`` and ``ca-key.pem`` (the CA that signs Sigil's own rotating authorities),
``cert-chain.pem`` (from ``ca-cert.pem`` up to the root) and ``root-cert.pem`` (the root), as Istio's plug-in CA
secret does. The root anchors the trust bundle; SVIDs carry Sigil's authority and the upstream intermediates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sigil.ca.errors import KeyStoreError, UpstreamAuthorityError
from sigil.ca.keys import PrivateKey, load_private_key, public_key_der

__all__ = ["UPSTREAM_FILES", "UpstreamCa", "load_upstream_ca"]

UPSTREAM_FILES = ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")


@dataclass(frozen=True, slots=True)
class UpstreamCa:
    """The upstream signing certificate and key, with the chain to its root."""

    certificate: x509.Certificate
    private_key: PrivateKey
    #: Certificates above ``certificate`` and below the root, nearest first.
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate

    @property
    def chain_below_root(self) -> tuple[x509.Certificate, ...]:
        """``certificate`` and the intermediates above it, the root excluded; empty if it is the root."""
        if self.certificate == self.root:
            return ()
        return (self.certificate, *self.intermediates)


def _load_certs(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise UpstreamAuthorityError(str(path), "no such file") from err
    except OSError as err:
        raise UpstreamAuthorityError(str(path), f"cannot read ({err.strerror})") from err
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise UpstreamAuthorityError(str(path), "not a PEM certificate file") from err
    return certs


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when ``parent``'s name and key issued ``child``, with whatever hash ``child`` names."""
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def load_upstream_ca(directory: Path) -> UpstreamCa:
    """Load and cross-check the four upstream files in ``directory``.

    The key must match ``ca-cert.pem``, every link of ``cert-chain.pem`` must be signed by the next, and the chain
    must end at ``root-cert.pem``: a mismatched set is refused here rather than producing SVIDs nobody can verify.
    """
    cert_path = directory / "ca-cert.pem"
    certs = _load_certs(cert_path)
    if len(certs) != 1:
        raise UpstreamAuthorityError(
            str(cert_path), f"holds {len(certs)} certificates, expected one"
        )
    certificate = certs[0]
    key_path = directory / "ca-key.pem"
    try:
        key = load_private_key(key_path)
    except KeyStoreError as err:
        raise UpstreamAuthorityError(str(key_path), err.reason) from err
    if public_key_der(key.public_key()) != public_key_der(certificate.public_key()):  # type: ignore[arg-type]
        raise UpstreamAuthorityError(str(key_path), "does not match the public key of ca-cert.pem")
    if not _is_ca(certificate):
        raise UpstreamAuthorityError(
            str(cert_path), "is not a CA certificate (basicConstraints cA=false)"
        )
    roots = _load_certs(directory / "root-cert.pem")
    if len(roots) != 1:
        raise UpstreamAuthorityError(str(directory / "root-cert.pem"), "must hold exactly one root")
    root = roots[0]
    if not _issued_by(root, root):
        raise UpstreamAuthorityError(str(directory / "root-cert.pem"), "is not a self-signed root")
    chain = _load_certs(directory / "cert-chain.pem")
    if chain and chain[0] == certificate:
        chain = chain[1:]
    if chain and chain[-1] == root:
        chain = chain[:-1]
    links = [certificate, *chain, root]
    for child, parent in itertools.pairwise(links):
        if child == parent:
            continue
        if not _issued_by(child, parent):
            raise UpstreamAuthorityError(
                str(directory / "cert-chain.pem"),
                f"{child.subject.rfc4514_string()} is not signed by {parent.subject.rfc4514_string()}",
            )
    return UpstreamCa(
        certificate=certificate, private_key=key, intermediates=tuple(chain), root=root
    )
