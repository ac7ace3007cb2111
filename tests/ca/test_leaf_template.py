"""The leaf template makes, byte for byte, the certificate cryptography's CertificateBuilder makes."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from sigil_testing.ca import openssl
from spiffe import X509Svid as PySpiffeSvid

from sigil.ca.authority import AuthorityStatus, Signer, new_x509_authority
from sigil.ca.keys import (
    KeyType,
    PrivateKey,
    PublicKey,
    generate_key,
    private_key_der,
    public_key_der,
    signature_hash,
)
from sigil.ca.leaf_template import Leaf
from sigil.ca.spiffe_id import TrustDomain
from sigil.ca.x509svid import _LEAF_BASIC_CONSTRAINTS, _LEAF_EKU, _LEAF_KEY_USAGE

EPOCH = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
# Keys are made once: RSA generation would otherwise dominate the run. Sigil signs with these three types only
# (keys.KeyType); an Ed25519 key is refused in a CSR, so no leaf ever certifies one.
_KEYS: dict[KeyType, PrivateKey] = {kind: generate_key(kind) for kind in KeyType}
_SUBJECT_KEYS = [generate_key(kind).public_key() for kind in KeyType for _ in range(2)]
_SIGNERS = {
    kind: Signer(
        new_x509_authority(
            TrustDomain("example.org"), key, now=EPOCH, ttl=timedelta(days=1)
        ).with_status(AuthorityStatus.ACTIVE),
        key,
    )
    for kind, key in _KEYS.items()
}

_LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=20)
_DNS = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_PATH = st.lists(
    st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=30).filter(
        lambda s: s not in {".", ".."}
    ),
    min_size=1,
    max_size=6,
).map("/".join)
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
# From 1950 (UTCTime's first year) to 9999, microseconds included: DER drops them, both sides must agree. A
# third of the draws fall within a day of 2050, where UTCTime gives way to GeneralizedTime.
_TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(1950, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES
    ),
    st.datetimes(
        min_value=datetime(2049, 12, 31), max_value=datetime(2050, 1, 1, 23), timezones=_ZONES
    ),
    st.datetimes(min_value=datetime(2049, 12, 31), max_value=datetime(2050, 1, 1, 23)).map(
        lambda t: t.replace(tzinfo=UTC)
    ),
)


def _reference(signer: Signer, leaf: Leaf, public_key: PublicKey) -> x509.Certificate:
    """The same leaf made the ordinary way, every extension from its cryptography value object."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sigil")]
    if leaf.dns_names:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, leaf.dns_names[0]))
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(leaf.uri)]
    sans.extend(x509.DNSName(n) for n in leaf.dns_names)
    return (
        x509.CertificateBuilder()
        .issuer_name(signer.issuer_name)
        .subject_name(x509.Name(attributes))
        .public_key(public_key)
        .serial_number(leaf.serial)
        .not_valid_before(leaf.not_before)
        .not_valid_after(leaf.not_after)
        .add_extension(_LEAF_BASIC_CONSTRAINTS, critical=True)
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .add_extension(_LEAF_EKU, critical=False)
        .add_extension(signer.authority_key_identifier, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(signer.private_key, signature_hash(signer.private_key))
    )


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(KeyType)),
    subject=st.sampled_from(_SUBJECT_KEYS),
    serial=st.integers(min_value=1, max_value=2**128 - 1),
    times=st.tuples(_TIMES, _TIMES).map(sorted),
    trust_domain=_LABEL,
    path=_PATH,
    dns_names=st.lists(_DNS, max_size=4),
)
def test_template_matches_certificate_builder(
    kind: KeyType,
    subject: PublicKey,
    serial: int,
    times: list[datetime],
    trust_domain: str,
    path: str,
    dns_names: list[str],
) -> None:
    """For any ID, DNS names, times (either side of 2050), serial and key types, the DER is the builder's."""
    signer = _SIGNERS[kind]
    leaf = Leaf(
        serial=serial,
        not_before=times[0],
        not_after=times[1],
        spki=public_key_der(subject),
        uri=f"spiffe://{trust_domain}/{path}",
        dns_names=tuple(dns_names),
    )
    if dns_names and len(dns_names[0]) > 64:
        # The first DNS name is the subject's CN, bounded at 64 (RFC 5280 ub-common-name): both refuse it.
        with pytest.raises(ValueError, match="64"):
            _reference(signer, leaf, subject)
        with pytest.raises(ValueError, match="64"):
            signer.leaf_template.tbs_certificate(leaf)
        return
    reference = _reference(signer, leaf, subject)
    template = signer.leaf_template
    tbs = template.tbs_certificate(leaf)
    assert tbs == reference.tbs_certificate_bytes
    # ECDSA signatures are random, so the whole certificate is compared around the builder's own signature...
    assert template.assemble(tbs, reference.signature) == reference.public_bytes(
        serialization.Encoding.DER
    )
    # ...and the template's own signature verifies under the signer's certificate.
    ours = x509.load_der_x509_certificate(template.sign(tbs))
    assert signer.authority.certificate is not None
    ours.verify_directly_issued_by(signer.authority.certificate)


@pytest.mark.parametrize(
    ("dns_names", "uri", "message"),
    [
        (["bücher.example"], "spiffe://example.org/w", "not ASCII; pass an A-label"),
        ([], "spiffe://example.org/bücher", "URI SAN .* is not ASCII"),
        (["a" * 65], "spiffe://example.org/w", "1 to 64 bytes"),
    ],
)
def test_names_the_builder_refuses_are_refused_with_a_reason(
    dns_names: list[str], uri: str, message: str
) -> None:
    """A Unicode DNS name or URI, or a first DNS name too long for a CN, is refused saying which rule."""
    with pytest.raises(ValueError, match=message):
        _SIGNERS[KeyType.EC_P256].leaf_template.tbs_certificate(
            Leaf(
                serial=1,
                not_before=EPOCH,
                not_after=EPOCH + timedelta(hours=1),
                spki=public_key_der(_SUBJECT_KEYS[0]),
                uri=uri,
                dns_names=tuple(dns_names),
            )
        )


@pytest.mark.parametrize("kind", list(KeyType))
def test_openssl_and_py_spiffe_accept_template_leaves(kind: KeyType, tmp_path: Path) -> None:
    """A template leaf with DNS names and a notAfter past 2050 (GeneralizedTime) verifies with ``openssl verify``
    against its authority, for TLS client and server use, and parses as an X509-SVID in py-spiffe."""
    signer = _SIGNERS[kind]
    subject_key = generate_key(kind)
    leaf = Leaf(
        serial=0x1234_5678_9ABC_DEF0,
        not_before=EPOCH - timedelta(seconds=10),
        not_after=datetime(2051, 6, 1, tzinfo=UTC),
        spki=public_key_der(subject_key.public_key()),
        uri="spiffe://example.org/ns/default/sa/web",
        dns_names=("web.default.svc", "web"),
    )
    template = signer.leaf_template
    der = template.sign(template.tbs_certificate(leaf))
    assert signer.authority.certificate is not None
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(signer.authority.certificate.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(x509.load_der_x509_certificate(der).public_bytes(pem))
    at = str(int((EPOCH + timedelta(minutes=5)).timestamp()))
    for purpose in ("sslclient", "sslserver"):
        result = openssl(
            "verify", "-attime", at, "-purpose", purpose, "-CAfile", "ca.pem", "leaf.pem",
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    parsed = PySpiffeSvid.parse_raw(der, private_key_der(subject_key))
    assert str(parsed.spiffe_id) == leaf.uri
