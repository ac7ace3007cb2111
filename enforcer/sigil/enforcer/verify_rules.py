"""The X509-SVID leaf rules, each refusal named: why a presented certificate is not an SVID.

X509-SVID.md §4 and §5 (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md): a leaf is not a CA
and may not sign certificates or CRLs, holds exactly one URI SAN with a SPIFFE ID that has a path, has
digitalSignature in its KeyUsage, and lists serverAuth and clientAuth when it has an ExtendedKeyUsage. Kept apart
from :mod:`sigil.enforcer.verify` (validity and the chain) so that each module stays one concept.
"""

from __future__ import annotations

import enum

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from sigil.ca.errors import InvalidSpiffeIdError
from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.errors import SvidVerificationError

__all__ = ["Refusal", "leaf_spiffe_id"]


class Refusal(enum.StrEnum):
    """Why a chain was refused: the ``reason`` of :class:`~sigil.enforcer.errors.SvidVerificationError`."""

    NO_CERTIFICATE = "no_certificate"
    MALFORMED = "malformed"
    CA_LEAF = "ca_leaf"
    KEY_CERT_SIGN = "key_cert_sign"
    NO_URI_SAN = "no_uri_san"
    MULTIPLE_URI_SANS = "multiple_uri_sans"
    INVALID_SPIFFE_ID = "invalid_spiffe_id"
    ROOT_SPIFFE_ID = "root_spiffe_id"
    BAD_KEY_USAGE = "bad_key_usage"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    UNKNOWN_TRUST_DOMAIN = "unknown_trust_domain"
    BAD_CHAIN = "bad_chain"
    #: A valid SVID, but not the server the client expected (tls.py's ``expect``).
    UNEXPECTED_PEER = "unexpected_peer"


def leaf_spiffe_id(leaf: x509.Certificate, extensions: x509.Extensions) -> SpiffeId:
    """The leaf's SPIFFE ID, after every leaf rule of X509-SVID.md §4 and §5 (raises on the first broken)."""
    # One pass over the extensions (this runs for every new peer certificate).
    constraints = usage = purposes = names = None
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints):
            constraints = value
        elif isinstance(value, x509.KeyUsage):
            usage = value
        elif isinstance(value, x509.ExtendedKeyUsage):
            purposes = value
        elif isinstance(value, x509.SubjectAlternativeName):
            names = value
    if constraints is not None and constraints.ca:
        raise SvidVerificationError(Refusal.CA_LEAF, "the leaf is a CA certificate (cA=true)")
    if usage is not None and (usage.key_cert_sign or usage.crl_sign):
        raise SvidVerificationError(
            Refusal.KEY_CERT_SIGN, "the leaf may sign certificates or CRLs (X509-SVID.md §4.3)"
        )
    uris = [] if names is None else names.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise SvidVerificationError(Refusal.NO_URI_SAN, "the leaf has no URI SAN")
    if len(uris) > 1:
        detail = f"the leaf has {len(uris)} URI SANs; an X509-SVID has exactly one"
        raise SvidVerificationError(Refusal.MULTIPLE_URI_SANS, detail)
    try:
        spiffe_id = SpiffeId.parse(uris[0])
    except InvalidSpiffeIdError as err:
        raise SvidVerificationError(Refusal.INVALID_SPIFFE_ID, err.rule) from err
    claimed = str(spiffe_id)
    if spiffe_id.is_root:
        detail = "the SPIFFE ID has no path: it names a trust domain, not a workload"
        raise SvidVerificationError(Refusal.ROOT_SPIFFE_ID, detail, spiffe_id=claimed)
    if usage is None or not usage.digital_signature:
        detail = "the leaf's KeyUsage must be present with digitalSignature (X509-SVID.md §4.3)"
        raise SvidVerificationError(Refusal.BAD_KEY_USAGE, detail, spiffe_id=claimed)
    wanted = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    if purposes is not None and not wanted <= set(purposes):
        detail = (
            "the leaf's ExtendedKeyUsage must list serverAuth and clientAuth (X509-SVID.md §4.4)"
        )
        raise SvidVerificationError(Refusal.BAD_KEY_USAGE, detail, spiffe_id=claimed)
    return spiffe_id
