"""Leaves the trusted authority really signed, each differing from a template already verified: the leaf-profile
path judges every one exactly as path validation does (it may leave a leaf to path validation, never differ).

The leaf-profile path (``sigil.enforcer.verify_profile``) reads a leaf by slices of its DER once a leaf of its
template passed, so these tests vary what it reads (serial, dates, subject, key, SAN, key identifier, any octet)
and sign the result with the trusted authority's own key: a signature check cannot hide a shortcut's mistake.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fuzz.budget import FUZZ
from fuzz.mangling import mangled
from hypothesis import example, given
from hypothesis import strategies as st
from sigil_testing.clock import FakeClock
from sigil_testing.pki import NOW, Domain, bundles

from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.verify import Refusal, SvidVerifier, VerifiedSvid

# pyca warns on loading a serial that is not positive (a future release will refuse it); both paths load the leaf
# alike, and the verdicts are what these tests compare.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)

_DOMAIN = Domain("example.org")
_OTHER = Domain("other.example")
_TEMPLATE = _DOMAIN.mint("ns", "shop", "sa", "web").ders[
    0
]  # each fast verifier learns its template first
_LEAF = _DOMAIN.mint("ns", "shop", "sa", "api").ders[0]  # the leaf that the tests vary
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_SAN_OID = bytes.fromhex("0603551d11")
_SKI_OID = bytes.fromhex("0603551d0e")
_CRITICAL = bytes.fromhex("0101ff")
_COMMON_NAME = bytes.fromhex("0603550403")


def _der(tag: int, content: bytes, *, long_form: bool = False) -> bytes:
    """One TLV; ``long_form`` spells a short length the long way, which DER forbids (X.690 10.1)."""
    size = len(content)
    if size < 0x80 and not long_form:
        return bytes([tag, size]) + content
    octets = size.to_bytes(max(1, (size.bit_length() + 7) // 8), "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _items(tlv: bytes) -> list[bytes]:
    """The TLVs inside the constructed TLV ``tlv`` (the test's own reading, independent of the code under test)."""
    first = tlv[1]
    pos = 2 if first < 0x80 else 2 + (first & 0x7F)
    found = []
    while pos < len(tlv):
        first = tlv[pos + 1]
        header = 2 if first < 0x80 else 2 + (first & 0x7F)
        size = first if first < 0x80 else int.from_bytes(tlv[pos + 2 : pos + header], "big")
        found.append(tlv[pos : pos + header + size])
        pos += header + size
    return found


def _signed(tbs: bytes) -> bytes:
    """A certificate of ``tbs`` signed by the trusted authority itself."""
    key = _DOMAIN.signer.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _der(0x30, tbs + _ECDSA_SHA256 + _der(0x03, b"\0" + signature))


def _with(field: int, value: bytes) -> bytes:
    """``_LEAF`` with TBS field ``field`` (0 version ... 7 extensions) replaced by ``value``, signed anew."""
    fields = _items(_items(_LEAF)[0])
    fields[field] = value
    return _signed(_der(0x30, b"".join(fields)))


def _with_extension(oid: bytes, value: bytes | None, *, critical: bool = False) -> bytes:
    """``_LEAF`` with its extension ``oid`` holding ``value`` as its OCTET STRING (None: removed), signed anew."""
    extensions = []
    for extension in _items(_items(_items(_items(_LEAF)[0])[7])[0]):
        if not extension.startswith(oid, 2):
            extensions.append(extension)
        elif value is not None:
            extensions.append(
                _der(0x30, oid + (_CRITICAL if critical else b"") + _der(0x04, value))
            )
    return _with(7, _der(0xA3, _der(0x30, b"".join(extensions))))


def _outcome(verifier: SvidVerifier, der: bytes) -> VerifiedSvid | Refusal:
    try:
        return verifier.verify([der])
    except SvidVerificationError as err:
        return Refusal(err.reason)


def _judged_alike(der: bytes) -> tuple[VerifiedSvid | Refusal, int]:
    """Assert that both paths judge ``der`` alike; the verdict and how many leaves the profile path settled."""
    trusted = bundles(_DOMAIN, _OTHER)
    fast = SvidVerifier(trusted, clock=FakeClock(NOW), cache_size=0)
    full = SvidVerifier(trusted, clock=FakeClock(NOW), cache_size=0, leaf_profiles=False)
    assert isinstance(fast.verify([_TEMPLATE]), VerifiedSvid)
    verdict = _outcome(fast, der)
    assert verdict == _outcome(full, der)
    return verdict, fast.profile_hits


# --------------------------------------------------------------------------- the shortcut is taken


def test_leaves_differing_only_where_leaves_differ_take_the_profile_path() -> None:
    """A new serial, subject, key, key identifier or SPIFFE ID keeps a leaf on the profile path, verified."""
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = other_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for der in (
        _LEAF,
        _with(1, _der(0x02, bytes([0x7F]) * 20)),
        _with(5, _der(0x30, _der(0x31, _der(0x30, _COMMON_NAME + _der(0x0C, b"other"))))),
        _with(6, spki),
        _with_extension(_SKI_OID, _der(0x04, bytes(20))),
        _with_extension(_SAN_OID, _der(0x30, _der(0x86, b"spiffe://example.org/x/y"))),
    ):
        verdict, settled = _judged_alike(der)
        assert isinstance(verdict, VerifiedSvid)
        assert settled == 1


def test_an_empty_subject_beside_a_non_critical_san_is_refused_on_both_paths() -> None:
    """pyca requires the SAN to be critical exactly when the subject is empty: a template's leaf with an empty
    subject is refused, not verified by profile (the subject was not part of the profile before)."""
    verdict, settled = _judged_alike(_with(5, _der(0x30, b"")))
    assert (verdict, settled) == (Refusal.BAD_CHAIN, 0)


# --------------------------------------------------------------------------- any variation, judged alike

_SERIALS = st.one_of(
    st.binary(max_size=23),
    st.integers(-(2**170), 2**170).map(lambda n: n.to_bytes(23, "big", signed=True).lstrip(b"\0")),
)


@FUZZ
@given(_SERIALS)
@example(b"")  # no octets: not an INTEGER
@example(b"\x00")  # zero: pyca accepts it
@example(b"\x80" + bytes(19))  # negative
@example(b"\x00\x80" + bytes(19))  # 21 octets: a 20-octet positive with its sign octet
@example(b"\x01" + bytes(21))  # 22 octets: too long
@example(b"\x00\x01")  # not minimal
def test_any_serial_is_judged_alike(content: bytes) -> None:
    """A leaf whose serial number is any INTEGER (or not one) is judged alike by both paths."""
    _judged_alike(_with(1, _der(0x02, content)))


def _time(moment: datetime, generalized: bool) -> bytes:
    if generalized:
        return _der(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())
    return _der(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())


_MOMENTS = st.one_of(
    st.integers(-3 * 86_400, 3 * 86_400).map(lambda s: NOW + timedelta(seconds=s)),
    st.sampled_from([NOW.replace(year=y) for y in (1949, 1950, 2049, 2050, 2051)]),
)
_TIMES = st.one_of(
    st.builds(_time, _MOMENTS, st.booleans()),
    st.builds(_der, st.sampled_from([0x17, 0x18, 0x04]), st.binary(max_size=17)),
)


@FUZZ
@given(_TIMES, _TIMES)
@example(_time(NOW - timedelta(hours=1), True), _time(NOW + timedelta(hours=1), False))
@example(_time(NOW - timedelta(hours=1), False), _time(NOW.replace(year=2050), True))
@example(_time(NOW + timedelta(seconds=1), False), _time(NOW + timedelta(hours=1), False))
@example(_time(NOW - timedelta(hours=1), False), _time(NOW - timedelta(seconds=1), False))
def test_any_validity_is_judged_alike(not_before: bytes, not_after: bytes) -> None:
    """A leaf with any pair of validity dates (UTCTime, GeneralizedTime, garbage) is judged alike."""
    _judged_alike(_with(4, _der(0x30, not_before + not_after)))


_KEYS = [
    key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for key in (
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ec.generate_private_key(ec.SECP256K1()).public_key(),
        # A key too weak for CA/B: pyca checks issuers' keys, not the leaf's, and the profile path must agree.
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),  # noqa: S505
        ed25519.Ed25519PrivateKey.generate().public_key(),
    )
]


@FUZZ
@given(st.sampled_from(_KEYS), st.sampled_from([b"", _items(_items(_LEAF)[0])[3]]))
def test_any_key_and_subject_are_judged_alike(spki: bytes, subject_content: bytes) -> None:
    """A leaf with a key of another type or size, and an empty or other subject, is judged alike."""
    fields = _items(_items(_LEAF)[0])
    fields[5], fields[6] = _der(0x30, subject_content), spki
    _judged_alike(_signed(_der(0x30, b"".join(fields))))


_URIS = st.one_of(
    st.sampled_from(
        [
            "spiffe://example.org/ns/shop/sa/db",
            "spiffe://example.org",
            "spiffe://other.example/x",
            "spiffe://unknown.example/x",
            "spiffe://EXAMPLE.org/x",
            "https://example.org/x",
            "spiffe://example.org/a/../b",
        ]
    ),
    st.text(max_size=40).map(lambda text: "spiffe://example.org/" + text),
)
_NAMES = st.one_of(
    st.builds(
        lambda uri, long_form: _der(0x86, uri.encode(), long_form=long_form), _URIS, st.booleans()
    ),
    st.builds(
        lambda name: _der(0x82, name.encode()), st.sampled_from(["web.example.org", "é.org"])
    ),
    st.builds(lambda name: _der(0x81, name), st.just(b"web@example.org")),  # rfc822Name
    st.builds(lambda address: _der(0x87, address), st.binary(min_size=4, max_size=4)),  # iPAddress
    st.binary(max_size=12),
)


@FUZZ
@given(st.lists(_NAMES, max_size=3), st.booleans(), st.booleans())
@example(
    [_der(0x86, b"spiffe://example.org/a"), _der(0x86, b"spiffe://example.org/b")], False, False
)
@example([_der(0x86, b"spiffe://example.org/a", long_form=True)], False, False)
@example([_der(0x86, b"spiffe://example.org/a")], True, False)
@example([_der(0x86, b"spiffe://example.org/a")], False, True)
@example([], False, False)
def test_any_subject_alternative_name_is_judged_alike(
    names: list[bytes], critical: bool, long_form: bool
) -> None:
    """A leaf whose SAN holds any names (URIs, DNS names, others, garbage; any criticality) is judged alike."""
    value = _der(0x30, b"".join(names), long_form=long_form)
    _judged_alike(_with_extension(_SAN_OID, value, critical=critical))


@FUZZ
@given(st.binary(max_size=40), st.sampled_from([0x04, 0x03, 0x30]), st.booleans())
@example(bytes(20), 0x04, True)
@example(bytes(19), 0x04, False)
def test_any_key_identifier_is_judged_alike(content: bytes, tag: int, critical: bool) -> None:
    """A leaf whose subject key identifier holds any octets, under any tag and criticality, is judged alike."""
    _judged_alike(_with_extension(_SKI_OID, _der(tag, content), critical=critical))


@FUZZ
@given(mangled(_items(_LEAF)[0]))
def test_any_damage_to_the_signed_part_is_judged_alike(tbs: bytes) -> None:
    """A leaf whose TBS octets were damaged anywhere and then signed by the authority is judged alike."""
    _judged_alike(_signed(tbs))


@FUZZ
@given(mangled(_LEAF))
def test_any_damage_to_an_unsigned_leaf_is_judged_alike(der: bytes) -> None:
    """A leaf damaged anywhere after signing (its signature no longer covers it) is judged alike."""
    _judged_alike(der)
