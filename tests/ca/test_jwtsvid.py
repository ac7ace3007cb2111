"""JWT-SVIDs carry the claims and header the JWT-SVID standard asks for, and forgeries are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sigil_testing.clock import FakeClock
from spiffe import JwtBundle, JwtSvid
from spiffe import TrustDomain as PyTrustDomain

from sigil.ca import SpiffeId, TrustDomain
from sigil.ca.authority import AuthorityKind
from sigil.ca.errors import JwtSvidError
from sigil.ca.jwtsvid import validate_jwt_svid
from sigil.ca.service import CertificateAuthority

WEB = SpiffeId.parse("spiffe://example.org/ns/default/sa/web")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict[str, object], claims: dict[str, object], secret: bytes) -> str:
    """The classic key-confusion forgery: an HMAC keyed with the verifier's public key (pyjwt won't make one)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _segment(token: str, index: int) -> dict[str, object]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


async def test_header_and_claims(ca: CertificateAuthority, clock: FakeClock) -> None:
    """ES256 with kid and typ JWT; sub, aud, exp, iat as the standard lists them; TTL 5 minutes."""
    svid = await ca.mint_jwt_svid(WEB, audience=["payments"])
    header = _segment(svid.token, 0)
    claims = _segment(svid.token, 1)
    assert header == {"alg": "ES256", "kid": svid.key_id, "typ": "JWT"}
    assert claims["sub"] == str(WEB)
    assert claims["aud"] == ["payments"]
    assert claims["iat"] == int(clock().timestamp())
    assert claims["exp"] == int((clock() + timedelta(minutes=5)).timestamp())
    assert svid.key_id in ca.jwt_keys()


async def test_py_spiffe_validates_what_we_mint(ca: CertificateAuthority) -> None:
    """py-spiffe's JwtSvid validates our token against our JWT bundle."""
    svid = await ca.mint_jwt_svid(WEB, audience=["payments"])
    bundle = JwtBundle.parse(PyTrustDomain("example.org"), ca.bundle().jwt_jwks_json())
    parsed = JwtSvid.parse_and_validate(svid.token, bundle, {"payments"})
    assert str(parsed.spiffe_id) == str(WEB)


async def test_validation_checks_audience_expiry_and_domain(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """The validator refuses a wrong audience, an expired token and a token from an unknown domain."""
    svid = await ca.mint_jwt_svid(WEB, audience=["payments"])
    keys = {TrustDomain("example.org"): ca.jwt_keys()}
    ok = validate_jwt_svid(svid.token, audience="payments", keys_for=keys, now=clock())
    assert ok.spiffe_id == WEB
    with pytest.raises(JwtSvidError, match="audience"):
        validate_jwt_svid(svid.token, audience="other", keys_for=keys, now=clock())
    with pytest.raises(JwtSvidError, match="expired"):
        validate_jwt_svid(
            svid.token, audience="payments", keys_for=keys, now=clock() + timedelta(hours=1)
        )
    with pytest.raises(JwtSvidError, match="no JWT bundle"):
        validate_jwt_svid(
            svid.token, audience="payments", keys_for={TrustDomain("other.org"): {}}, now=clock()
        )


async def test_forgeries_are_refused(ca: CertificateAuthority, clock: FakeClock) -> None:
    """alg none, an HMAC keyed with the public key, and a stranger's key are all refused."""
    svid = await ca.mint_jwt_svid(WEB, audience=["payments"])
    keys = {TrustDomain("example.org"): ca.jwt_keys()}
    claims = _segment(svid.token, 1)
    unsigned = _unsigned({"alg": "none", "kid": svid.key_id}, claims)
    with pytest.raises(JwtSvidError, match="algorithm 'none'"):
        validate_jwt_svid(unsigned, audience="payments", keys_for=keys, now=clock())
    public_pem = (
        ca.jwt_keys()[svid.key_id]
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    hmac = _hs256({"alg": "HS256", "kid": svid.key_id}, claims, public_pem.encode())
    with pytest.raises(JwtSvidError, match="algorithm 'HS256'"):
        validate_jwt_svid(hmac, audience="payments", keys_for=keys, now=clock())
    stranger = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": svid.key_id},
    )
    with pytest.raises(JwtSvidError, match="does not validate"):
        validate_jwt_svid(stranger, audience="payments", keys_for=keys, now=clock())


async def test_extra_headers_are_refused(ca: CertificateAuthority, clock: FakeClock) -> None:
    """A header parameter beyond alg, kid and typ makes the token invalid, as the standard requires."""
    svid = await ca.mint_jwt_svid(WEB, audience=["payments"])
    signer = ca.signer(AuthorityKind.JWT)
    token = jwt.encode(
        _segment(svid.token, 1),
        signer.private_key,
        algorithm="ES256",
        headers={"kid": svid.key_id, "jku": "https://evil.example/keys"},
    )
    with pytest.raises(JwtSvidError, match="not allowed"):
        validate_jwt_svid(
            token,
            audience="payments",
            keys_for={TrustDomain("example.org"): ca.jwt_keys()},
            now=clock(),
        )


async def test_audience_is_required(ca: CertificateAuthority) -> None:
    """Minting without an audience is refused."""
    with pytest.raises(JwtSvidError, match="audience"):
        await ca.mint_jwt_svid(WEB, audience=[])


async def test_a_federated_key_cannot_sign_for_local_ids(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """A partner trust domain's key, published under our kid or its own, never validates a token whose subject is
    one of ours: only the subject's own trust domain's keys are tried."""
    svid = await ca.mint_jwt_svid(WEB, audience=["payments"])
    partner = ec.generate_private_key(ec.SECP256R1())
    claims = _segment(svid.token, 1)
    for kid in (svid.key_id, "partner-key"):
        # The partner's keys come last, so a validator that pooled every domain's keys would pick the partner's.
        keys = {
            TrustDomain("example.org"): ca.jwt_keys(),
            TrustDomain("partner.org"): {kid: partner.public_key()},
        }
        forged = jwt.encode(claims, partner, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})
        with pytest.raises(
            JwtSvidError, match=r"does not validate|not in the bundle of example\.org"
        ):
            validate_jwt_svid(forged, audience="payments", keys_for=keys, now=clock())
    partner_claims = dict(claims, sub="spiffe://partner.org/web")
    theirs = jwt.encode(
        partner_claims, partner, algorithm="ES256", headers={"kid": "partner-key", "typ": "JWT"}
    )
    keys = {TrustDomain("partner.org"): {"partner-key": partner.public_key()}}
    assert validate_jwt_svid(theirs, audience="payments", keys_for=keys, now=clock()).spiffe_id == (
        SpiffeId.parse("spiffe://partner.org/web")
    )


async def test_expiry_leeway_ends_exactly_thirty_seconds_after_exp(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """A token is accepted until one second before exp + 30 s and refused from exp + 30 s on (the documented leeway)."""
    svid = await ca.mint_jwt_svid(WEB, audience=["payments"])
    keys = {TrustDomain("example.org"): ca.jwt_keys()}
    edge = svid.expiry + timedelta(seconds=30)
    accepted = validate_jwt_svid(
        svid.token, audience="payments", keys_for=keys, now=edge - timedelta(seconds=1)
    )
    assert accepted.spiffe_id == WEB
    with pytest.raises(JwtSvidError, match="expired"):
        validate_jwt_svid(svid.token, audience="payments", keys_for=keys, now=edge)
