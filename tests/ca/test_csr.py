"""Bad CSRs are refused with an error saying what was wrong, and nothing is minted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sigil_testing.ca import make_csr, openssl

from sigil.ca import SpiffeId
from sigil.ca.csr import parse_csr, subject_key_der
from sigil.ca.errors import MalformedCsrError
from sigil.ca.keys import KeyType, generate_key, public_key_der
from sigil.ca.service import CertificateAuthority, X509Request

WEB = SpiffeId.parse("spiffe://example.org/web")


def _tamper(pem: bytes) -> bytes:
    """Flip one bit inside the signature of a DER CSR: the structure parses, the signature does not hold."""
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    return bytes(der)


def test_bad_signature_is_refused() -> None:
    """A CSR whose signature does not match its key is refused as such."""
    csr, _ = make_csr()
    with pytest.raises(MalformedCsrError, match="signature does not verify"):
        parse_csr(_tamper(csr))


@pytest.mark.parametrize(
    "key",
    [
        ed25519.Ed25519PrivateKey.generate(),
        ec.generate_private_key(ec.SECP521R1()),
        # A weak key is exactly what this test must see refused.
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
    ],
    ids=["ed25519", "p521", "rsa1024"],
)
def test_wrong_key_types_are_refused(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
) -> None:
    """Keys other than P-256, P-384 and RSA >= 2048 are refused with 'wrong key type'."""
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    with pytest.raises(MalformedCsrError, match="wrong key type"):
        parse_csr(csr.public_bytes(serialization.Encoding.PEM))


def test_a_megabyte_of_garbage_is_refused_by_size() -> None:
    """1 MB of random bytes is refused before any parsing, naming the limit."""
    with pytest.raises(MalformedCsrError, match="larger than the 16384-byte limit"):
        parse_csr(os.urandom(1024 * 1024))


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", os.urandom(900)]
)
def test_unparsable_data_is_refused(data: bytes) -> None:
    """Empty, textual or random data gets a clear 'malformed CSR' error."""
    with pytest.raises(MalformedCsrError):
        parse_csr(data)


async def test_nothing_is_journaled_for_a_bad_csr(ca: CertificateAuthority) -> None:
    """A batch with a bad CSR mints nothing and journals nothing."""
    good, _ = make_csr()
    with pytest.raises(MalformedCsrError):
        await ca.mint_x509_svids([X509Request(WEB, csr=good), X509Request(WEB, csr=b"junk")])
    assert await ca.store.journal() == []


def test_der_and_pem_are_both_accepted() -> None:
    """The same CSR parses from PEM and from DER."""
    pem, key = make_csr()
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert parse_csr(pem)[1].public_numbers() == parse_csr(der)[1].public_numbers()
    assert parse_csr(der)[1].public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_a_sha1_signed_csr_is_refused(tmp_path: Path, key_type: str) -> None:
    """A CSR signed with SHA-1 (made by openssl, since cryptography will not sign one) is refused by name."""
    if key_type == "ec":
        made = openssl(
            "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem", cwd=tmp_path
        )
    else:
        made = openssl("genrsa", "-out", "k.pem", "2048", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    made = openssl(
        "req", "-new", "-sha1", "-key", "k.pem", "-subj", "/CN=old", "-out", "c.pem", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    with pytest.raises(MalformedCsrError, match="signature hash sha1 is not accepted"):
        parse_csr((tmp_path / "c.pem").read_bytes())


@pytest.mark.parametrize("key_type", list(KeyType))
def test_the_subject_key_is_exactly_what_re_encoding_the_key_gives(key_type: KeyType) -> None:
    """The key taken from the CSR's own bytes (EC) or re-encoded (RSA) is the SPKI the certificate builder writes."""
    key = generate_key(key_type)
    csr, public_key = parse_csr(make_csr(key)[0])
    assert subject_key_der(csr, public_key) == public_key_der(key.public_key())
