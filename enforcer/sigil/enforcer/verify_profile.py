"""The leaf-profile fast path of peer verification: one signature check for a leaf shaped like one already passed.

Why it exists: pyca/cryptography's path validation (``x509.verification``) costs its ECDSA verification plus
a fixed overhead of about a third of one (building Python objects around the signature check, per call), and
peers present new leaves all the time (every rotation, every new pod). The SVIDs of one trust domain all come
from one template, so the verifier's rules give the same verdict for all of them except where their values
differ; those values are checked here on every call.

What is remembered, per anchor of each trust domain and per generation of the bundles (so a bundle change drops
it all): the *profiles* of leaves that pyca's verifier accepted as issued directly by that anchor. A profile is
every input its end-entity and issuer rules (RFC 5280 and CA/B as ``x509.verification`` applies them) read
that does not vary from leaf to leaf: the version, both signature algorithm identifiers, the validity dates'
encodings, and each extension's OID, criticality and value; of the subject alternative name, subject and
authority key identifiers only the OID and criticality, since those rules ask only whether they are present.

A leaf whose profile matches then needs what differs, checked on every call: the serial number's size and sign,
the issuer's name (the anchor's subject), the validity of the leaf (the caller checks it) and of the anchor at
the time, and the signature, verified with the anchor's public key loaded once. Anything else (intermediates,
an anchor with name constraints, a non-ECDSA signature, GeneralizedTime dates, fields after the extensions, a
profile not seen yet) goes to pyca's verifier, whose acceptance records the profile for the next leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["Anchor", "LeafShape", "Profile", "anchors_by_subject", "leaf_shape"]

#: A leaf's profile (see the module docstring): version, outer and inner signature algorithm, extensions.
Profile = tuple[bytes, bytes, bytes, tuple[tuple[bytes, bytes], ...]]


class LeafShape(NamedTuple):
    """What the fast path reads of a leaf's DER: its profile, the signed bytes, its issuer's name, its URI SANs."""

    profile: Profile
    tbs: bytes
    issuer: bytes
    uris: tuple[str, ...]


_MAX_PROFILES = 64  # per anchor: a trust domain mints from a handful of templates

# The two extensions whose value differs from leaf to leaf of one template (their OIDs' DER); the rules read
# only their presence and criticality, and they are checked here for what parsing them would refuse.
_SAN = bytes.fromhex("0603551d11")  # subjectAltName 2.5.29.17: its URIs are returned
_SKI = bytes.fromhex("0603551d0e")  # subjectKeyIdentifier 2.5.29.14: an OCTET STRING
# ecdsa-with-SHA256/384/512 (RFC 5758 3.2), as the AlgorithmIdentifier DER (no parameters) signs them.
_ECDSA = {
    bytes.fromhex("300a06082a8648ce3d040302"): ec.ECDSA(hashes.SHA256()),
    bytes.fromhex("300a06082a8648ce3d040303"): ec.ECDSA(hashes.SHA384()),
    bytes.fromhex("300a06082a8648ce3d040304"): ec.ECDSA(hashes.SHA512()),
}
_UTC_TIME = 0x17
_NAME_CONSTRAINTS = x509.NameConstraints


@dataclass(slots=True, eq=False)
class Anchor:
    """One trust anchor as the fast path needs it, and the leaf profiles verified under it."""

    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    not_before: datetime
    not_after: datetime
    profiles: set[Profile] = field(default_factory=set)

    def remember(self, profile: Profile) -> None:
        """Record a profile pyca's verifier accepted under this anchor (bounded)."""
        if len(self.profiles) < _MAX_PROFILES:
            self.profiles.add(profile)

    def verifies(self, leaf: x509.Certificate, shape: LeafShape, now: datetime) -> bool:
        """True when ``leaf`` (of ``shape``) is valid under this anchor at ``now``, by the fast path."""
        if shape.profile not in self.profiles or not self.not_before <= now <= self.not_after:
            return False
        try:
            self.public_key.verify(leaf.signature, shape.tbs, _ECDSA[shape.profile[1]])
        except InvalidSignature:
            return False
        return True


def anchors_by_subject(certificates: tuple[x509.Certificate, ...]) -> dict[bytes, list[Anchor]]:
    """The anchors the fast path can use, by their subject's DER (others are left to pyca's verifier)."""
    found: dict[bytes, list[Anchor]] = {}
    for cert in certificates:
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        if not _unconstrained(cert):
            continue  # name constraints apply to the leaf's names: leave them to the full rules
        anchor = Anchor(cert, key, cert.not_valid_before_utc, cert.not_valid_after_utc)
        found.setdefault(cert.subject.public_bytes(), []).append(anchor)
    return found


def _unconstrained(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(_NAME_CONSTRAINTS)
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return False


def leaf_shape(der: bytes) -> LeafShape | None:
    """The shape of the leaf ``der``, or None when the fast path does not apply to it."""
    try:
        return _walk(der)
    except (IndexError, ValueError):
        return None


def _walk(der: bytes) -> LeafShape | None:
    tag, start, end = _tlv(der, 0)
    if tag != 0x30 or end != len(der):
        return None
    tag, tbs_start, tbs_end = _tlv(der, start)
    tbs = der[start:tbs_end]
    _, _, outer_end = _tlv(der, tbs_end)
    outer = der[tbs_end:outer_end]
    if outer not in _ECDSA:
        return None
    tag, start, end = _tlv(der, tbs_start)
    version = b""
    if tag == 0xA0:
        version, (tag, start, end) = der[tbs_start:end], _tlv(der, end)
    if tag != 0x02 or not 1 <= end - start <= 21 or der[start] & 0x80:
        return None  # the serial: a positive integer of at most 20 octets (21 with a sign octet)
    _, _, inner_end = _tlv(der, end)
    inner = der[end:inner_end]
    _, _, issuer_end = _tlv(der, inner_end)
    issuer = der[inner_end:issuer_end]
    tag, start, validity_end = _tlv(der, issuer_end)
    # Both dates must be UTCTime (short, so their length is one octet): GeneralizedTime has year rules.
    if der[start] != _UTC_TIME or der[start + 2 + der[start + 1]] != _UTC_TIME:
        return None
    _, _, subject_end = _tlv(der, validity_end)
    _, _, spki_end = _tlv(der, subject_end)
    if spki_end == tbs_end:
        return None  # no extensions: no SAN, not an SVID
    tag, start, end = _tlv(der, spki_end)
    if tag != 0xA3 or end != tbs_end:
        return None
    _, pos, stop = _tlv(der, start)
    extensions = []
    uris: tuple[str, ...] | None = None
    while pos < stop:
        first = der[pos + 1]
        if first < 0x80:  # inlined _tlv: most extensions are short
            value, pos = pos + 2, pos + 2 + first
        else:
            _, value, pos = _tlv(der, pos)
        oid_end = value + 2 + der[value + 1]  # an OID of under 128 octets
        oid = der[value:oid_end]
        if oid != _SAN and oid != _SKI:
            extensions.append((oid, der[oid_end:pos]))
            continue
        octets = oid_end + 3 if der[oid_end] == 0x01 else oid_end  # past the criticality
        tag, content, end = _tlv(der, octets)
        inner_tag, inner_start, inner_end = _tlv(der, content)
        if tag != 0x04 or end != pos or inner_end != end:
            return None
        if oid == _SKI:
            if inner_tag != 0x04:
                return None
        elif uris is not None or inner_tag != 0x30:
            return None
        else:
            uris = _uris(der, inner_start, inner_end)
            if uris is None:
                return None
        extensions.append((oid, der[oid_end:octets]))  # the criticality alone
    if uris is None:
        return None
    return LeafShape((version, outer, inner, tuple(extensions)), tbs, issuer, uris)


def _uris(der: bytes, pos: int, stop: int) -> tuple[str, ...] | None:
    """The URIs among the GeneralNames in ``der[pos:stop]``; None when any name is not a URI or DNS name."""
    found = []
    while pos < stop:
        tag, start, pos = _tlv(der, pos)
        text = der[start:pos].decode("ascii")  # IA5String; a non-ASCII octet raises ValueError
        if tag == 0x86:  # [6] uniformResourceIdentifier
            found.append(text)
        elif tag != 0x82:  # [2] dNSName
            return None
    if pos != stop:
        return None
    return tuple(found)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """The tag at ``pos``, where its value starts and where it ends (DER definite lengths only)."""
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    size = first & 0x7F
    if not 1 <= size <= 4:
        raise ValueError("unsupported DER length")
    start = pos + 2 + size
    end = start + int.from_bytes(data[pos + 2 : start], "big")
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, start, end
