"""The leaf-profile fast path of peer verification: one signature check for a leaf of a template seen before.

Why it exists: pyca/cryptography's path validation (``x509.verification``) costs its ECDSA verification plus
a fixed overhead of about a third of one (building Python objects around the signature check, per call), and
peers present new leaves all the time (every rotation, every new pod). The SVIDs of one trust domain all come
from one template, so the verifier's rules give the same verdict for all of them except where their values
differ; those values are checked here on every call.

What is remembered, per anchor of each trust domain and per generation of the bundles (so a bundle change drops
it all): the *templates* of leaves that the full path (Sigil's leaf rules, then pyca's verifier) accepted as
issued directly by that anchor. A template is the leaf's DER less what varies between leaves: the signature
algorithm (the version is v3, the only one pyca accepts), whether the subject is empty, and the extensions
octet for octet, except the contents of the subject key identifier (any octets, the same number of them) and
the subject alternative name's GeneralNames (parsed on every call). Every input that the end-entity and issuer
rules of RFC 5280 and CA/B (as ``x509.verification`` applies them) and the X509-SVID leaf rules read is
therefore either fixed by the template or checked here.

A leaf matching a template of its issuer needs what differs, checked on every call: the serial number's size
and sign, the issuer's name (the anchor's subject, by lookup), UTCTime validity dates (GeneralizedTime has year
rules; the caller checks the dates against its clock), the URIs of its SAN (the caller parses the one SPIFFE
ID), the anchor's validity at the time, and the signature over the TBS octets, verified with the anchor's public
key loaded once. The subject (beyond its emptiness) and the public key are not read by those rules beyond their
DER, which ``load_der_x509_certificate`` has checked before this module sees the leaf. Anything else
(intermediates, an anchor with name constraints, a non-ECDSA signature, fields after the key, any octet that
does not fit, a template not seen yet) goes to the full path, whose acceptance records the template for the
next leaf. ``tests/fuzz/test_peer_leaves.py`` varies each of these, signed by the authority, against the full
path.

Matching is by slices of the leaf's own DER (``bytes.startswith`` at an offset): no re-encoding, no parsed
extension objects, one pass over the top level of the TBS. Measured on the 2-core development machine, CPU time
per peer over ``bench/verify.py``'s 1,000 leaves: matching 6 us where the profile walk that built a tuple of
every extension took 9.5 us, and the path's own work 17 us where it was 29 us (the ECDSA verify is about
80 us). Work done between signature checks costs about twice its time alone (matching alone 6 us adds 10 to 12
us beside the verify: caches shared with OpenSSL), so every microsecond cut here counts nearly double.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from sigil.ca.spiffe_id import TrustDomain

__all__ = [
    "Anchor",
    "LeafShape",
    "Match",
    "Template",
    "anchors_by_issuer",
    "leaf_shape",
    "match_leaf",
]

_MAX_TEMPLATES = 64  # per anchor: a trust domain mints from a handful of templates

# The two extensions whose value differs from leaf to leaf of one template (their OIDs' DER).
_SAN = bytes.fromhex("0603551d11")  # subjectAltName 2.5.29.17: its URIs are returned
_SKI = bytes.fromhex("0603551d0e")  # subjectKeyIdentifier 2.5.29.14: an OCTET STRING of any octets
# ecdsa-with-SHA256/384/512 (RFC 5758 3.2), as the AlgorithmIdentifier DER (no parameters) signs them.
_ECDSA = {
    bytes.fromhex("300a06082a8648ce3d040302"): ec.ECDSA(hashes.SHA256()),
    bytes.fromhex("300a06082a8648ce3d040303"): ec.ECDSA(hashes.SHA384()),
    bytes.fromhex("300a06082a8648ce3d040304"): ec.ECDSA(hashes.SHA512()),
}
_ECDSA_SIZE = 12
_HEADS = bytes.fromhex(
    "3082"
)  # a SEQUENCE with a two-octet length: the certificate's, then the TBS's
_V3_SERIAL = bytes.fromhex(
    "a00302010202"
)  # [0] EXPLICIT INTEGER 2 (v3), then the serial's INTEGER tag
_VALIDITY = bytes.fromhex("301e170d")  # a SEQUENCE of two 13-octet UTCTimes, the first one's header
_UTC = bytes.fromhex("170d")
#: In :attr:`Template.pieces`, "a subjectAltName extension follows the literal octets".
SAN_EXTENSION = -1


@dataclass(frozen=True, slots=True)
class Template:
    """What every leaf of one template shares, octet for octet (see the module docstring).

    ``empty_subject``: pyca's end-entity rules require the SAN to be critical exactly when the subject is empty
    (RFC 5280 4.2.1.6), so whether it is belongs to the template, as the SAN's criticality does.
    ``pieces`` spell the extensions (inside their SEQUENCE): each is literal octets, then the number of octets
    that may hold anything (a subject key identifier's contents), or :data:`SAN_EXTENSION`: a subjectAltName
    extension whose OID and criticality are ``san_head`` and whose names are read anew for every leaf.
    """

    algorithm: bytes
    empty_subject: bool
    san_head: bytes
    pieces: tuple[tuple[bytes, int], ...]

    @property
    def signature_algorithm(self) -> ec.ECDSA:
        return _ECDSA[self.algorithm]


class LeafShape(NamedTuple):
    """A leaf's template, as learned from a leaf the full path accepted, with its issuer's name and URI SANs."""

    template: Template
    issuer: bytes
    uris: tuple[str, ...]


class Match(NamedTuple):
    """A leaf that fits a template of ``anchor``: the signed octets and its URI SANs, still to be checked."""

    anchor: Anchor
    template: Template
    tbs: bytes
    uris: list[str]


@dataclass(slots=True, eq=False)
class Anchor:
    """One trust anchor of one trust domain as the fast path needs it, and the templates verified under it."""

    trust_domain: TrustDomain
    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    not_before: datetime
    not_after: datetime
    # A tuple replaced whole, never changed in place: readers on other threads iterate a consistent one.
    templates: tuple[Template, ...] = ()

    def remember(self, template: Template) -> None:
        """Record a template the full path accepted under this anchor (bounded)."""
        if template not in self.templates and len(self.templates) < _MAX_TEMPLATES:
            self.templates = (*self.templates, template)

    def signed(self, match: Match, signature: bytes, now: datetime) -> bool:
        """True when this anchor is valid at ``now`` and its key verifies ``signature`` over the match's TBS."""
        if not self.not_before <= now <= self.not_after:
            return False
        try:
            self.public_key.verify(signature, match.tbs, match.template.signature_algorithm)
        except InvalidSignature:
            return False
        return True


def anchors_by_issuer(
    bundles: Mapping[TrustDomain, Sequence[x509.Certificate]],
) -> dict[bytes, list[Anchor]]:
    """The anchors the fast path can use, by their subject's DER (others are left to the full path)."""
    found: dict[bytes, list[Anchor]] = {}
    for trust_domain, certificates in bundles.items():
        for cert in certificates:
            key = cert.public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey) or not _unconstrained(cert):
                continue  # name constraints apply to the leaf's names: leave them to the full rules
            anchor = Anchor(
                trust_domain, cert, key, cert.not_valid_before_utc, cert.not_valid_after_utc
            )
            found.setdefault(cert.subject.public_bytes(), []).append(anchor)
    return found


def _unconstrained(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return False


def match_leaf(der: bytes, by_issuer: Mapping[bytes, Sequence[Anchor]]) -> Match | None:
    """The first template of an anchor named as the leaf's issuer that ``der`` fits, or None."""
    try:
        frame = _frame(der)
        if frame is None:
            return None
        tbs, algorithm, empty_subject, issuer, start, stop = frame
        for anchor in by_issuer.get(issuer, ()):
            for template in anchor.templates:
                if template.algorithm == algorithm and template.empty_subject is empty_subject:
                    uris = _fits(der, start, stop, template)
                    if uris is not None:
                        return Match(anchor, template, tbs, uris)
    except (IndexError, ValueError):
        pass
    return None


def leaf_shape(der: bytes) -> LeafShape | None:
    """The template of the leaf ``der``, or None when the fast path does not apply to it."""
    try:
        return _learn(der)
    except (IndexError, ValueError):
        return None


_Frame = tuple[bytes, bytes, bool, bytes, int, int]


def _frame(der: bytes) -> _Frame | None:
    """The TBS octets, signature algorithm, whether the subject is empty, the issuer, and where the extensions'
    contents start and stop.

    None when the leaf is not one the fast path judges: not of 256 octets to 64 KiB (the lengths of the
    certificate and TBS take two octets), not v3 (pyca refuses it), a serial pyca refuses, GeneralizedTime
    dates, no extensions or fields after the key other than them, a non-ECDSA signature or outer and inner
    algorithms that differ (RFC 5280 4.1.1.2). The DER has been parsed by pyca already; the lengths are still
    checked, and fixed encodings are compared rather than walked.
    """
    if not der.startswith(_HEADS, 0, 2) or (der[2] << 8 | der[3]) + 4 != len(der):
        return None
    if not der.startswith(_HEADS, 4, 6) or not der.startswith(_V3_SERIAL, 8):
        return None
    tbs_end = 8 + (der[6] << 8 | der[7])
    size = der[14]  # the serial: a positive integer of at most 20 octets (21 with a sign octet)
    if not 1 <= size <= 21 or der[15] & 0x80:
        return None
    algorithm_at = 15 + size
    issuer_at = algorithm_at + _ECDSA_SIZE
    algorithm = der[algorithm_at:issuer_at]
    if algorithm not in _ECDSA or not der.startswith(algorithm, tbs_end):
        return None
    _, _, issuer_end = _tlv(der, issuer_at)
    # Both dates UTCTime, which DER spells in 13 octets (X.690 11.8): GeneralizedTime has year rules.
    if not der.startswith(_VALIDITY, issuer_end) or not der.startswith(_UTC, issuer_end + 17):
        return None
    _, subject, subject_end = _tlv(der, issuer_end + 32)
    _, _, key_end = _tlv(der, subject_end)
    tag, start, end = _tlv(der, key_end)
    if tag != 0xA3 or end != tbs_end:
        return None
    tag, start, stop = _tlv(der, start)
    if tag != 0x30 or stop != tbs_end:
        return None
    return der[4:tbs_end], algorithm, subject == subject_end, der[issuer_at:issuer_end], start, stop


def _fits(der: bytes, pos: int, stop: int, template: Template) -> list[str] | None:
    """The URIs of the leaf's SAN when its extensions in ``der[pos:stop]`` fit ``template``, else None."""
    uris: list[str] | None = None
    for literal, then in template.pieces:
        if not der.startswith(literal, pos):
            return None
        pos += len(literal)
        if then == SAN_EXTENSION:
            found = _san(der, pos, stop, template.san_head)
            if found is None:
                return None
            uris, pos = found
        else:
            pos += then
    if pos != stop:
        return None
    return uris


def _san(der: bytes, pos: int, stop: int, head: bytes) -> tuple[list[str], int] | None:
    """The URIs of the subjectAltName extension at ``pos`` (OID and criticality ``head``) and where it ends;
    None when a name is neither a URI nor a DNS name, or anything does not parse."""
    tag, start, end = _tlv(der, pos)
    if tag != 0x30 or end > stop or not der.startswith(head, start):
        return None
    tag, content, octets_end = _tlv(der, start + len(head))
    if tag != 0x04 or octets_end != end:
        return None
    tag, pos, names_end = _tlv(der, content)
    if tag != 0x30 or names_end != end:
        return None
    uris = []
    while pos < end:
        tag, start, pos = _tlv(der, pos)
        text = der[start:pos].decode("ascii")  # IA5String; a non-ASCII octet raises ValueError
        if tag == 0x86:  # [6] uniformResourceIdentifier
            uris.append(text)
        elif tag != 0x82:  # [2] dNSName
            return None
    if pos != end:
        return None
    return uris, end


def _learn(der: bytes) -> LeafShape | None:
    frame = _frame(der)
    if frame is None:
        return None
    _, algorithm, empty_subject, issuer, pos, stop = frame
    pieces: list[tuple[bytes, int]] = []
    literal = pos  # where the current run of literal octets started
    san_head = b""
    uris: tuple[str, ...] | None = None
    while pos < stop:
        tag, value, end = _tlv(der, pos)
        if tag != 0x30 or end > stop:
            return None
        _, _, oid_end = _tlv(der, value)
        oid = der[value:oid_end]
        octets = oid_end + 3 if der[oid_end] == 0x01 else oid_end  # past the criticality
        if oid == _SAN:
            found = _san(der, pos, stop, der[value:octets])
            if found is None or uris is not None:
                return None
            uris = tuple(found[0])
            san_head = der[value:octets]
            pieces.append((der[literal:pos], SAN_EXTENSION))
            literal = end
        elif oid == _SKI:
            tag, content, octets_end = _tlv(der, octets)
            inner_tag, inner_start, inner_end = _tlv(der, content)
            if tag != 0x04 or inner_tag != 0x04 or octets_end != end or inner_end != end:
                return None
            pieces.append((der[literal:inner_start], inner_end - inner_start))
            literal = end
        pos = end
    if uris is None or pos != stop:
        return None  # no SAN: not an SVID
    if literal < stop:
        pieces.append((der[literal:stop], 0))
    return LeafShape(Template(algorithm, empty_subject, san_head, tuple(pieces)), issuer, uris)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """The tag at ``pos``, where its value starts and where it ends.

    DER only (X.690 10.1): definite lengths in the fewest octets; and at most two length octets, since a leaf
    of 64 KiB or more is none the fast path judges. Lengths are read octet by octet: this runs a dozen times
    per peer, and ``int.from_bytes`` on a slice costs twice as much.
    """
    first = data[pos + 1]
    if first < 0x80:
        start = pos + 2
        end = start + first
    elif first == 0x81:
        start = pos + 3
        end = start + data[pos + 2]
        if end - start < 0x80:
            raise ValueError("not a DER length")
    elif first == 0x82:
        start = pos + 4
        end = start + (data[pos + 2] << 8 | data[pos + 3])
        if end - start < 0x100:
            raise ValueError("not a DER length")
    else:
        raise ValueError("not a DER length, or longer than the fast path reads")
    if end > len(data):
        raise ValueError("truncated DER")
    return data[pos], start, end
