"""The SPIFFE bundle and PEM bundle parse back, follow the bundle format, and are numbered on every change."""

from __future__ import annotations

import json

import pytest
from spiffe import JwtBundle, X509Bundle
from spiffe import TrustDomain as PyTrustDomain

from sigil.ca import TrustDomain
from sigil.ca.authority import AuthorityKind
from sigil.ca.bundle import TrustBundle, load_der_certificates
from sigil.ca.errors import BundleError
from sigil.ca.service import CertificateAuthority

TD = TrustDomain("example.org")


async def test_jwks_follows_the_bundle_format(ca: CertificateAuthority) -> None:
    """x509-svid keys carry one x5c and no kid; jwt-svid keys carry a kid; sequence and hint are set."""
    document = json.loads(ca.bundle().to_json())
    uses = [key["use"] for key in document["keys"]]
    assert sorted(uses) == ["jwt-svid", "x509-svid"]
    for key in document["keys"]:
        assert key["kty"] == "EC"
        if key["use"] == "x509-svid":
            assert "kid" not in key
            assert len(key["x5c"]) == 1
        else:
            assert key["kid"]
    assert document["spiffe_sequence"] >= 1
    assert document["spiffe_refresh_hint"] == 300


async def test_bundles_parse_back(ca: CertificateAuthority) -> None:
    """JWKS, PEM and DER forms parse back to the same authorities."""
    bundle = ca.bundle()
    from_jwks = TrustBundle.parse_jwks(TD, bundle.to_json())
    assert from_jwks.same_content(bundle)
    assert from_jwks.sequence == bundle.sequence
    assert TrustBundle.parse_pem(TD, bundle.to_pem()).x509_authorities == bundle.x509_authorities
    assert TrustBundle.parse_der(TD, bundle.x509_der()).x509_authorities == bundle.x509_authorities


async def test_py_spiffe_accepts_our_bundles(ca: CertificateAuthority) -> None:
    """py-spiffe's X509Bundle and JwtBundle accept what we publish."""
    bundle = ca.bundle()
    x509_bundle = X509Bundle.parse(PyTrustDomain("example.org"), bundle.to_pem())
    assert len(x509_bundle.x509_authorities) == 1
    jwt_bundle = JwtBundle.parse(PyTrustDomain("example.org"), bundle.jwt_jwks_json())
    assert set(jwt_bundle.jwt_authorities) == set(bundle.jwt_authorities)


async def test_sequence_grows_on_every_change(ca: CertificateAuthority) -> None:
    """Preparing, then revoking an authority each advance spiffe_sequence; a no-op does not."""
    first = ca.bundle().sequence
    await ca.rotate()
    assert ca.bundle().sequence == first
    old = ca.signer(AuthorityKind.X509).authority.authority_id
    prepared = await ca.prepare(AuthorityKind.X509)
    assert ca.bundle().sequence == first + 1
    assert len(ca.bundle().x509_authorities) == 2
    await ca.activate(AuthorityKind.X509, prepared.authority_id)
    await ca.taint(AuthorityKind.X509, old)
    await ca.revoke(AuthorityKind.X509, old)
    assert ca.bundle().sequence == first + 2
    assert len(ca.bundle().x509_authorities) == 1


def test_unknown_uses_and_key_types_are_skipped() -> None:
    """Consumers ignore entries with an unknown use or kty, and x509 entries with no certificate."""
    document = {
        "keys": [
            {"kty": "EC", "use": "something-else", "crv": "P-256"},
            {"kty": "OKP", "use": "jwt-svid", "kid": "k1", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "EC", "use": "x509-svid", "x5c": []},
        ],
        "spiffe_sequence": 7,
    }
    bundle = TrustBundle.parse_jwks(TD, json.dumps(document))
    assert bundle.x509_authorities == ()
    assert dict(bundle.jwt_authorities) == {}
    assert bundle.sequence == 7


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"nokeys": 1}', "'keys' is missing"),
        ('{"keys": [{"use": "jwt-svid", "kty": "EC"}]}', "without a kid"),
        ('{"keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["!!"]}]}', "not a DER certificate"),
        ('{"keys": [], "spiffe_sequence": -1}', "spiffe_sequence"),
    ],
)
def test_broken_documents_say_what_is_wrong(document: str, reason: str) -> None:
    """A broken bundle document is refused with a reason naming the problem."""
    with pytest.raises(BundleError, match=reason):
        TrustBundle.parse_jwks(TD, document)


def test_der_splitting_refuses_truncation(ca_bundle_der: bytes) -> None:
    """A DER bundle cut short is refused rather than silently shortened."""
    assert len(load_der_certificates(ca_bundle_der)) == 1
    with pytest.raises(BundleError, match="cut short"):
        load_der_certificates(ca_bundle_der[:-10])


@pytest.fixture
def ca_bundle_der(ca: CertificateAuthority) -> bytes:
    return ca.bundle().x509_der()
