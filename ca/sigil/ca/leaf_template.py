"""The X509-SVID leaf as a prepared DER template: only the fields that differ between two leaves are encoded.

Every leaf a signer makes shares its issuer, signature algorithm, basic constraints, key usages and authority key
identifier; what changes is the serial, the validity, the subject (``O=Sigil`` and a CN from the first DNS name),
the subject's key, its key identifier and the SANs. ``cryptography``'s ``CertificateBuilder`` re-validates and
re-encodes all of it for every certificate, which cost about a third of minting one; here the shared part is
encoded once per signer and the rest by hand, then signed with the key's raw ``sign``.

The output is byte for byte what ``CertificateBuilder`` makes from the same inputs (a Hypothesis property test over
IDs, DNS names, times on both sides of 2050, and P-256, P-384 and RSA keys holds it to that, in
``tests/ca/test_leaf_template.py``), so nothing downstream can tell the two apart. The DER rules used are X.690
§8.1-8.23 and §10-11; the time rule (UTCTime through 2049, GeneralizedTime after) is RFC 5280 §4.1.2.5.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding

from sigil.ca.keys import PrivateKey, signature_hash

__all__ = ["Leaf", "LeafTemplate", "der_span"]

# Tags (X.690 §8): universal, then context-specific constructed [0] and [3], and the SAN choices [2] and [6].
_INTEGER, _BIT_STRING, _OCTET_STRING, _OID = 0x02, 0x03, 0x04, 0x06
_UTF8, _UTC_TIME, _GENERALIZED_TIME = 0x0C, 0x17, 0x18
_SEQUENCE, _SET = 0x30, 0x31
_EXPLICIT_0, _EXPLICIT_3 = 0xA0, 0xA3
_SAN_DNS, _SAN_URI = 0x82, 0x86

#: ecdsa-with-SHA256/384 carry no parameters; sha256WithRSAEncryption carries NULL (RFC 5758 §3.2, RFC 4055 §5).
_SIGNATURE_ALGORITHMS = {
    "ecdsa-sha256": bytes.fromhex("300a06082a8648ce3d040302"),
    "ecdsa-sha384": bytes.fromhex("300a06082a8648ce3d040303"),
    "rsa-sha256": bytes.fromhex("300d06092a864886f70d01010b0500"),
}
#: Version v3 as [0] EXPLICIT INTEGER 2.
_VERSION_3 = bytes.fromhex("a003020102")
_OID_ORGANIZATION = bytes.fromhex("060355040a")
_OID_COMMON_NAME = bytes.fromhex("0603550403")
_OID_SKID = bytes.fromhex("0603551d0e")
_OID_SAN = bytes.fromhex("0603551d11")
_CRITICAL = bytes.fromhex("0101ff")
#: RFC 5280 Appendix A's ub-common-name; cryptography refuses a longer CN, and so does this.
_MAX_COMMON_NAME = 64


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag, definite length (X.690 §8.1.3, short form below 128), content."""
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def _integer(value: int) -> bytes:
    """A non-negative INTEGER in its shortest two's-complement form (a leading zero keeps it positive)."""
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _time(value: datetime) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; seconds, ``Z``, no fractions."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    if value.year < 2050:
        return _tlv(_UTC_TIME, value.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return _tlv(_GENERALIZED_TIME, f"{value.year:04d}{value:%m%d%H%M%S}Z".encode("ascii"))


@functools.lru_cache(maxsize=16)
def _validity(not_before: datetime, not_after: datetime) -> bytes:
    """The Validity SEQUENCE; the leaves of one batch share it, so it is encoded once per batch."""
    return _tlv(_SEQUENCE, _time(not_before) + _time(not_after))


def _extension(oid: bytes, value: bytes, *, critical: bool) -> bytes:
    return _tlv(_SEQUENCE, oid + (_CRITICAL if critical else b"") + _tlv(_OCTET_STRING, value))


def _ascii(value: str, what: str) -> bytes:
    """IA5String content: a SAN carries A-labels and URIs, never raw Unicode (RFC 5280 §4.2.1.6)."""
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} {value!r} is not ASCII; pass an A-label (punycode) form"
        ) from None


def der_span(data: bytes, at: int) -> tuple[int, int]:
    """Where the content of the DER element starting at ``at`` begins and ends (X.690 §8.1.3 lengths).

    For DER that a strict parser has already accepted (a CSR ``cryptography`` loaded, our own SPKI encoding).
    """
    first = data[at + 1]
    if first < 0x80:
        return at + 2, at + 2 + first
    size = first & 0x7F
    start = at + 2 + size
    return start, start + int.from_bytes(data[at + 2 : start], "big")


def _key_bits(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING's bits from SubjectPublicKeyInfo DER (what RFC 5280 §4.2.1.2 hashes)."""
    inner, _ = der_span(spki, 0)  # SubjectPublicKeyInfo SEQUENCE
    _, algorithm_end = der_span(spki, inner)  # AlgorithmIdentifier
    bits_start, bits_end = der_span(spki, algorithm_end)
    # The first content octet counts unused bits, always 0 for a key.
    return spki[bits_start + 1 : bits_end]


#: The subject's first RDN, the same in every leaf: O=Sigil.
_SUBJECT_ORGANIZATION = _tlv(_SET, _tlv(_SEQUENCE, _OID_ORGANIZATION + _tlv(_UTF8, b"Sigil")))
#: The SKID extension up to its 20-byte SHA-1 digest (RFC 5280 §4.2.1.2 method 1), which ends it.
_SKID_BEFORE_DIGEST = _extension(_OID_SKID, _tlv(_OCTET_STRING, bytes(20)), critical=False)[:-20]


@dataclass(frozen=True, slots=True)
class Leaf:
    """What differs between two leaves of one signer, already decided by the leaf rules (``x509svid``).

    Plain values only, so that a batch of them crosses to a signing worker process as it is.
    """

    serial: int
    not_before: datetime
    not_after: datetime
    #: The subject's key as SubjectPublicKeyInfo DER (what the certificate carries, and what its SKID hashes).
    spki: bytes
    #: The URI SAN: the SPIFFE ID.
    uri: str
    dns_names: tuple[str, ...] = ()


class LeafTemplate:
    """What every leaf of one signer shares, encoded once; :meth:`certificate` fills in the rest and signs.

    Made once per signer (``Signer.leaf_template``) from its key, its certificate's subject (the leaves' issuer)
    and ``shared_extensions``: the leaf rules of :mod:`sigil.ca.x509svid` with the authority key identifier, in
    the order the certificate lists them; the SKID and the SAN follow them.
    """

    __slots__ = ("_algorithm", "_extensions", "_issuer", "_sign")

    def __init__(
        self,
        private_key: PrivateKey,
        *,
        issuer: x509.Name,
        shared_extensions: Sequence[tuple[x509.ExtensionType, bool]],
    ) -> None:
        digest = signature_hash(private_key)
        self._sign: Callable[[bytes], bytes]
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            self._algorithm = _SIGNATURE_ALGORITHMS[f"ecdsa-{digest.name}"]
            self._sign = functools.partial(private_key.sign, signature_algorithm=ec.ECDSA(digest))
        else:
            self._algorithm = _SIGNATURE_ALGORITHMS[f"rsa-{digest.name}"]
            self._sign = functools.partial(
                private_key.sign, padding=padding.PKCS1v15(), algorithm=digest
            )
        self._issuer = issuer.public_bytes()
        self._extensions = b"".join(
            _extension(_tlv(_OID, _oid_content(value.oid)), value.public_bytes(), critical=critical)
            for value, critical in shared_extensions
        )

    def tbs_certificate(self, leaf: Leaf) -> bytes:
        """The TBSCertificate DER (RFC 5280 §4.1) of ``leaf``."""
        serial, dns_names, spki = leaf.serial, leaf.dns_names, leaf.spki
        if serial <= 0 or serial.bit_length() > 159:
            raise ValueError(
                "a serial is a positive number of at most 159 bits (RFC 5280 §4.1.2.2)"
            )
        # Subject: empty would force a critical SAN; SPIRE sets C/O and a CN from the first DNS name.
        subject = _SUBJECT_ORGANIZATION
        if dns_names:
            common_name = dns_names[0].encode("utf-8")
            if not 1 <= len(common_name) <= _MAX_COMMON_NAME:
                raise ValueError(
                    f"the first DNS name becomes the subject's CN, which must be 1 to "
                    f"{_MAX_COMMON_NAME} bytes; {dns_names[0]!r} has {len(common_name)}"
                )
            subject += _tlv(_SET, _tlv(_SEQUENCE, _OID_COMMON_NAME + _tlv(_UTF8, common_name)))
        names = _tlv(_SAN_URI, _ascii(leaf.uri, "the URI SAN"))
        for name in dns_names:
            names += _tlv(_SAN_DNS, _ascii(name, "the DNS name"))
        skid = hashlib.sha1(_key_bits(spki), usedforsecurity=False).digest()
        extensions = (
            self._extensions
            + _SKID_BEFORE_DIGEST
            + skid
            + _extension(_OID_SAN, _tlv(_SEQUENCE, names), critical=False)
        )
        return _tlv(
            _SEQUENCE,
            _VERSION_3
            + _integer(serial)
            + self._algorithm
            + self._issuer
            + _validity(leaf.not_before, leaf.not_after)
            + _tlv(_SEQUENCE, subject)
            + spki
            + _tlv(_EXPLICIT_3, _tlv(_SEQUENCE, extensions)),
        )

    def sign(self, tbs_certificate: bytes) -> bytes:
        """The Certificate DER: ``tbs_certificate``, the algorithm, and the signer's signature over it."""
        return self.assemble(tbs_certificate, self._sign(tbs_certificate))

    def certificates(self, leaves: Sequence[Leaf]) -> list[bytes]:
        """Each leaf's Certificate DER, signed."""
        return [self.sign(self.tbs_certificate(leaf)) for leaf in leaves]

    def assemble(self, tbs_certificate: bytes, signature: bytes) -> bytes:
        """The Certificate DER (RFC 5280 §4.1.1) of ``tbs_certificate`` with ``signature`` as the signer's."""
        return _tlv(
            _SEQUENCE,
            tbs_certificate + self._algorithm + _tlv(_BIT_STRING, b"\x00" + signature),
        )


def _oid_content(oid: x509.ObjectIdentifier) -> bytes:
    """An OBJECT IDENTIFIER's content octets (X.690 §8.19): the first two arcs in one, then base-128 arcs."""
    arcs = [int(arc) for arc in oid.dotted_string.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)
