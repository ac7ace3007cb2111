"""SPIFFE IDs, trust domains and CSRs from outside: any text or bytes gets the value or the parser's own error."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fuzz.budget import FUZZ, corpus, outcome
from fuzz.mangling import mangled
from hypothesis import example, given
from hypothesis import strategies as st

from sigil.ca.csr import parse_csr
from sigil.ca.errors import InvalidSpiffeIdError, InvalidTrustDomainError, MalformedCsrError
from sigil.ca.keys import KeyType, generate_key
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.tls import make_csr

_ID_PARTS = st.sampled_from(
    [
        "spiffe://",
        "SPIFFE://",
        "spiffe:",
        "//",
        "/",
        ".",
        "..",
        "%2F",
        "%",
        "?",
        "#",
        ":",
        "@",
        "example.org",
    ]
)
#: Text that looks like a SPIFFE ID often enough to reach the path and trust domain rules.
_ID_LIKE = st.one_of(
    st.text(),
    st.lists(st.one_of(_ID_PARTS, st.text(max_size=8)), max_size=12).map("".join),
    st.builds(lambda path: "spiffe://example.org" + path, st.text(max_size=3000)),
)

_KEYS = [generate_key(KeyType.EC_P256), generate_key(KeyType.RSA_2048)]
_CSRS_PEM = [make_csr(key) for key in _KEYS]
_CSRS_DER = [
    x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER) for pem in _CSRS_PEM
]


@FUZZ
@given(_ID_LIKE)
@example("spiffe://example.org/" + "a/" * 1500)
@example("spiffe://exa\x00mple.org/x")
def test_spiffe_id_text_parses_or_names_the_broken_rule(value: str) -> None:
    """Any text is a SPIFFE ID that prints back as itself, or InvalidSpiffeIdError with a rule."""
    parsed = outcome(lambda: SpiffeId.parse(value), InvalidSpiffeIdError)
    if isinstance(parsed, InvalidSpiffeIdError):
        assert parsed.rule
        return
    assert str(parsed) == value
    assert SpiffeId.parse(str(parsed)) == parsed


@FUZZ
@given(_ID_LIKE)
@example("spiffe://")  # once InvalidSpiffeIdError, which a policy's trustDomains did not catch
@example("spiffe://example.org?x")
def test_trust_domain_text_parses_or_names_the_broken_rule(value: str) -> None:
    """Any text is a trust domain (name or ID form) or InvalidTrustDomainError with a rule."""
    parsed = outcome(lambda: TrustDomain.parse(value), InvalidTrustDomainError)
    if isinstance(parsed, InvalidTrustDomainError):
        assert parsed.rule
        return
    assert TrustDomain.parse(str(parsed.id)) == parsed


@FUZZ
@given(st.sampled_from(_CSRS_DER + _CSRS_PEM).flatmap(mangled))
def test_a_mangled_csr_is_read_or_refused_as_malformed(data: bytes) -> None:
    """A CSR with bytes flipped, cut, repeated or spliced is parsed with a verified key or MalformedCsrError."""
    parsed = outcome(lambda: parse_csr(data), MalformedCsrError)
    if isinstance(parsed, MalformedCsrError):
        assert parsed.reason
        return
    assert parsed[1].public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) in {
        k.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for k in _KEYS
    }


@pytest.mark.parametrize("data", corpus("csr"))
def test_the_csrs_that_found_bugs_are_refused(data: bytes) -> None:
    """Each kept CSR (a signature algorithm OID cryptography does not know, once an UnsupportedAlgorithm that the
    issuer answered with a 500) is refused with MalformedCsrError."""
    refused = outcome(lambda: parse_csr(data), MalformedCsrError)
    assert isinstance(refused, MalformedCsrError)
    assert "signature algorithm" in refused.reason


@FUZZ
@given(st.binary(max_size=20_000))
@example(b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n")
@example(b"\x30\x84\xff\xff\xff\xff")
def test_arbitrary_bytes_are_no_csr(data: bytes) -> None:
    """Random bytes (PEM armour included) are refused as MalformedCsrError, never another exception."""
    parsed = outcome(lambda: parse_csr(data), MalformedCsrError)
    assert isinstance(parsed, MalformedCsrError)
    assert parsed.reason
