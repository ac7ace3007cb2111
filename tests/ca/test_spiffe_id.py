"""SPIFFE IDs are held to every rule of the SPIFFE-ID standard, and the broken rule is named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from sigil.ca import (
    InvalidSpiffeIdError,
    InvalidTrustDomainError,
    SpiffeId,
    TrustDomain,
    UriSanCountError,
    spiffe_id_of,
)


@pytest.mark.parametrize(
    "value",
    [
        "spiffe://example.org",
        "spiffe://example.org/ns/default/sa/web",
        "spiffe://a-b_c.d/A/b.c/D-E_F",
        "spiffe://10.0.0.1/workload",
        "spiffe://example.org/" + "/".join(["x" * 100] * 15),
    ],
)
def test_conformant_ids_round_trip(value: str) -> None:
    """A conformant ID parses and prints back unchanged."""
    assert str(SpiffeId.parse(value)) == value


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "empty"),
        ("http://example.org/x", "scheme must be 'spiffe'"),
        ("SPIFFE://example.org/x", "lowercase"),
        ("spiffe:example.org/x", "scheme must be 'spiffe'"),
        ("spiffe:///x", "trust domain is empty"),
        ("spiffe://Example.org/x", "must be lowercase"),
        ("spiffe://user@example.org/x", "userinfo"),
        ("spiffe://example.org:8080/x", "port"),
        ("spiffe://[::1]/x", "IPv6"),
        ("spiffe://exa%41mple.org/x", "percent-encoding"),
        ("spiffe://exa$mple.org/x", "only the characters"),
        ("spiffe://example.org/x?y=1", "query"),
        ("spiffe://example.org/x#frag", "fragment"),
        ("spiffe://example.org/", "must not end with '/'"),
        ("spiffe://example.org/x/", "must not end with '/'"),
        ("spiffe://example.org//x", "must not be empty"),
        ("spiffe://example.org/x/./y", "'.' or '..'"),
        ("spiffe://example.org/x/../y", "'.' or '..'"),
        ("spiffe://example.org/x%20y", "percent-encoding"),
        ("spiffe://example.org/x y", "only the characters"),
        ("spiffe://example.org/" + "x" * 2100, "2048 bytes"),
        ("spiffe://" + "a" * 256 + "/x", "255 bytes"),
    ],
)
def test_each_broken_rule_is_named(value: str, rule: str) -> None:
    """Every non-conformant ID is refused with an error naming the rule it breaks."""
    with pytest.raises(InvalidSpiffeIdError) as caught:
        SpiffeId.parse(value)
    assert rule in caught.value.rule
    assert caught.value.value.startswith(value[:20])


def test_trust_domain_accepts_a_name_or_its_id() -> None:
    """A trust domain can be given as ``example.org`` or ``spiffe://example.org``."""
    assert TrustDomain.parse("example.org") == TrustDomain.parse("spiffe://example.org")
    assert str(TrustDomain("example.org").id) == "spiffe://example.org"


@pytest.mark.parametrize(
    "value", ["Example.org", "spiffe://example.org/x", "https://example.org", ""]
)
def test_bad_trust_domains_are_refused(value: str) -> None:
    """Uppercase names, IDs with paths, other schemes and empty names are not trust domains."""
    with pytest.raises(InvalidTrustDomainError):
        TrustDomain.parse(value)


def test_ids_are_built_from_segments_with_the_same_rules() -> None:
    """Building an ID from segments validates each segment; a bad one is refused, not escaped."""
    td = TrustDomain("example.org")
    assert (
        str(td.spiffe_id("ns", "default", "sa", "web")) == "spiffe://example.org/ns/default/sa/web"
    )
    with pytest.raises(InvalidSpiffeIdError):
        td.spiffe_id("ns", "a/b")
    with pytest.raises(InvalidSpiffeIdError):
        td.spiffe_id("")


_segment = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=12).filter(
    lambda s: s not in {".", ".."}
)


@given(st.lists(_segment, min_size=0, max_size=8))
def test_any_valid_segments_round_trip(segments: list[str]) -> None:
    """Any list of valid segments makes an ID that parses back to itself."""
    built = TrustDomain("example.org").spiffe_id(*segments)
    assert SpiffeId.parse(str(built)) == built
    assert built.is_root == (not segments)


@given(st.text(max_size=60))
def test_parse_never_raises_anything_but_the_named_error(value: str) -> None:
    """Arbitrary text either parses or is refused with InvalidSpiffeIdError, never another exception."""
    try:
        parsed = SpiffeId.parse(value)
    except InvalidSpiffeIdError:
        return
    assert str(parsed) == value


def test_an_id_built_from_segments_stops_at_2048_bytes() -> None:
    """Segments adding up to exactly 2048 bytes make an ID; one byte more is refused (SPIFFE-ID §2.3)."""
    td = TrustDomain("example.org")
    room = 2048 - len("spiffe://example.org/")
    longest = td.spiffe_id("a" * (room - 101), "b" * 100)
    assert len(str(longest).encode()) == 2048
    with pytest.raises(InvalidSpiffeIdError, match="longer than 2048 bytes"):
        td.spiffe_id("a" * (room - 100), "b" * 100)
    with pytest.raises(InvalidSpiffeIdError, match="longer than 2048 bytes"):
        td.spiffe_id(*["segment"] * 300)


def _certificate(*uris: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(hours=1))
    )
    if uris:
        sans = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_the_spiffe_id_of_a_certificate_is_its_one_uri_san() -> None:
    """A certificate with one spiffe:// URI SAN names that ID."""
    certificate = _certificate("spiffe://example.org/ns/a/sa/b")
    assert spiffe_id_of(certificate) == SpiffeId.parse("spiffe://example.org/ns/a/sa/b")


@pytest.mark.parametrize(
    "uris", [(), ("spiffe://example.org/a", "spiffe://example.org/b")], ids=["none", "two"]
)
def test_no_uri_san_or_several_are_refused_with_the_count(uris: tuple[str, ...]) -> None:
    """X509-SVID.md allows exactly one URI SAN; the error carries how many there were."""
    with pytest.raises(UriSanCountError) as caught:
        spiffe_id_of(_certificate(*uris))
    assert caught.value.count == len(uris)


def test_a_uri_san_that_is_no_spiffe_id_is_refused_by_rule() -> None:
    """A URI SAN of another scheme is an invalid SPIFFE ID, not silently skipped."""
    with pytest.raises(InvalidSpiffeIdError):
        spiffe_id_of(_certificate("https://example.org/a"))


_near_id = st.builds(
    "".join,
    st.lists(
        st.sampled_from(
            [
                "spiffe://",
                "SPIFFE://",
                "a",
                "Z",
                "0",
                ".",
                "..",
                "-",
                "_",
                "/",
                "//",
                "%2e",
                ":",
                "@",
                "é",
                "?",
                "#",
            ]
        ),
        max_size=14,
    ),
)


def _outcome(parse: Callable[[str], SpiffeId], value: str) -> SpiffeId | str:
    try:
        return parse(value)
    except InvalidSpiffeIdError as err:
        return err.rule


@given(st.one_of(_near_id, _near_id.map(lambda v: "spiffe://" + v)))
def test_the_one_match_path_agrees_with_the_rules(value: str) -> None:
    """parse's single-match path for plain IDs gives what the rule-by-rule path gives, ID or named rule."""
    assert _outcome(SpiffeId.parse, value) == _outcome(SpiffeId.parse_by_rules, value)


@pytest.mark.parametrize(
    "value",
    [
        "spiffe://" + "a" * 255 + "/x",
        "spiffe://" + "a" * 256 + "/x",
        "spiffe://example.org/" + "a" * (2048 - 21),
        "spiffe://example.org/" + "a" * (2048 - 20),
        "spiffe://example.org/a/./b",
        "spiffe://example.org/a/../b",
        "spiffe://example.org/.hidden/b",
        "spiffe://example.org/a/..",
        "spiffe://example.org",
    ],
)
def test_the_one_match_path_keeps_the_limits_and_dot_segments(value: str) -> None:
    """Length limits and '.'/'..' segments: the single-match path and the rules agree at each edge."""
    assert _outcome(SpiffeId.parse, value) == _outcome(SpiffeId.parse_by_rules, value)
