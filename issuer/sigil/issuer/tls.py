"""TLS the SPIFFE way, shared by the issuer's client and server: contexts from bundles, peer IDs from certificates.

X509-SVID validation (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#5-validation) is chain
validation against the trust domain's bundle followed by a check of the peer's SPIFFE ID, never of a host name.
OpenSSL does the first part; :func:`peer_spiffe_id` gives callers what they need for the second.

The context itself (TLS 1.2 at least, no host names, the bundle as the store) and the loading of an SVID (through
pipes, never a file on disk) are the enforcer's one SPIFFE TLS builder, :mod:`sigil.enforcer.tls`; what is the
issuer's own here is trusting one bundle and naming the one server ID it expects.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from sigil.ca import spiffe_id
from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import InvalidSpiffeIdError, UriSanCountError
from sigil.ca.keys import PrivateKey
from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.tls import load_identity as load_pem_identity
from sigil.enforcer.tls import pinned_client_context, spiffe_context

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["client_context", "load_identity", "make_csr", "peer_spiffe_id", "spiffe_id_of"]


def make_csr(key: PrivateKey) -> bytes:
    """A PEM CSR over ``key``; the issuer decides the SPIFFE ID, so the request names none."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sigil")])
    )
    algorithm = hashes.SHA384() if getattr(key, "key_size", 256) == 384 else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def spiffe_id_of(certificate: x509.Certificate) -> SpiffeId | None:
    """The SPIFFE ID of a certificate, or None when it has no usable one (see :func:`sigil.ca.spiffe_id.spiffe_id_of`)."""
    try:
        return spiffe_id.spiffe_id_of(certificate)
    except (UriSanCountError, InvalidSpiffeIdError):
        return None


def peer_spiffe_id(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> SpiffeId | None:
    """The SPIFFE ID of the certificate the peer presented (already chain-verified by OpenSSL), if any."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return spiffe_id_of(x509.load_der_x509_certificate(der))


def load_identity(
    context: ssl.SSLContext, chain: Sequence[x509.Certificate], key: PrivateKey
) -> None:
    """Make ``chain`` (leaf first) and ``key`` the certificate ``context`` presents (the enforcer's loader)."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    load_pem_identity(context, chain_pem, key_pem, who="the server or agent SVID")


def client_context(
    bundle: TrustBundle,
    identity: tuple[Sequence[x509.Certificate], PrivateKey] | None = None,
    *,
    expect: SpiffeId | None = None,
) -> ssl.SSLContext:
    """A client context that trusts ``bundle`` only, checks no host name, and presents ``identity`` if given.

    With ``expect``, the handshake fails unless the server presents an X509-SVID of ``bundle`` for exactly that
    SPIFFE ID: the enforcer's in-handshake check (:func:`sigil.enforcer.tls.pinned_client_context`). The check
    must happen in the handshake, because an HTTP client may have released the connection (and with it the only
    handle on the peer's certificate) by the time a small response is read.
    """
    if expect is not None:
        context = pinned_client_context(BundleSet.of(bundle), expect=expect)
    else:
        context = spiffe_context(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), bundle.to_pem().decode())
    if identity is not None:
        load_identity(context, identity[0], identity[1])
    return context
