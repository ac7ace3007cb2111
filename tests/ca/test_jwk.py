"""Public keys as JWKs: the same members PyJWT writes, the same keys it reads, and the refusals a bundle relies on."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from sigil.ca.jwk import public_key_from_jwk, public_key_to_jwk
from sigil.ca.keys import PublicKey, public_key_der

_CURVES = [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()]


def _ec(curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(curve).public_key()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


@pytest.mark.parametrize("curve", _CURVES, ids=lambda c: c.name)
def test_an_ec_key_is_written_as_pyjwt_writes_it_and_read_back(curve: ec.EllipticCurve) -> None:
    """An EC key's JWK equals PyJWT's (coordinates at the curve's full size) and reads back as the same key."""
    for _ in range(8):  # some keys have leading zero bytes in a coordinate
        key = _ec(curve)
        jwk = public_key_to_jwk(key)
        assert jwk == ECAlgorithm.to_jwk(key, as_dict=True)
        assert public_key_der(public_key_from_jwk(jwk)) == public_key_der(key)


def test_an_rsa_key_is_written_as_pyjwt_writes_it_and_read_back(rsa_key: rsa.RSAPublicKey) -> None:
    """An RSA key's JWK equals PyJWT's but for ``key_ops``, and reads back as the same key.

    PyJWT adds ``key_ops``; a bundle's keys carry ``use``, and RFC 7517 (section 4.3) says not to send both.
    """
    jwk = public_key_to_jwk(rsa_key)
    pyjwt = RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    assert pyjwt.pop("key_ops") == ["verify"]
    assert jwk == pyjwt
    assert public_key_der(public_key_from_jwk(jwk)) == public_key_der(rsa_key)


def test_what_pyjwt_writes_is_read_as_the_same_key(rsa_key: rsa.RSAPublicKey) -> None:
    """JWKs written by PyJWT (the issuer's peers' writer) read as the keys they came from."""
    written = [RSAAlgorithm.to_jwk(rsa_key, as_dict=True)]
    ec_keys = [_ec(c) for c in _CURVES[:3]]
    written += [ECAlgorithm.to_jwk(key, as_dict=True) for key in ec_keys]
    keys: list[PublicKey] = [rsa_key, *ec_keys]
    for key, jwk in zip(keys, written, strict=True):
        assert public_key_der(public_key_from_jwk(jwk)) == public_key_der(key)


def test_a_private_key_is_refused() -> None:
    """A JWK with its private part ``d`` is refused, even when the public part is fine."""
    private = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="private"):
        public_key_from_jwk(ECAlgorithm.to_jwk(private, as_dict=True))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"crv": "P-192"}, "unknown curve"),
        ({"crv": ["P-256"]}, "unknown curve"),
        ({"kty": "OKP"}, "unsupported key type"),
        ({"x": "AAAA"}, "must be 32 bytes"),
        ({"x": 7}, "not an unpadded base64url"),
        ({"x": None}, "not an unpadded base64url"),
        ({"y": "AA=="}, "not an unpadded base64url"),
        ({"y": "A+/A"}, "not an unpadded base64url"),
    ],
)
def test_unusable_ec_parameters_are_refused(change: dict[str, object], reason: str) -> None:
    """A curve not named by the standard, a short coordinate or a value that is not base64url is refused."""
    jwk: dict[str, object] = {**public_key_to_jwk(_ec(ec.SECP256R1())), **change}
    with pytest.raises(ValueError, match=reason):
        public_key_from_jwk(jwk)


def test_a_point_off_the_curve_is_refused() -> None:
    """Coordinates of the right size that name no point on the curve are refused (cryptography checks it)."""
    jwk = public_key_to_jwk(_ec(ec.SECP256R1()))
    jwk["y"] = jwk["x"]
    with pytest.raises(ValueError, match="not on the curve"):
        public_key_from_jwk(jwk)


def test_an_rsa_key_without_its_modulus_is_refused(rsa_key: rsa.RSAPublicKey) -> None:
    """An RSA JWK lacking ``n`` is refused."""
    jwk = dict(public_key_to_jwk(rsa_key))
    del jwk["n"]
    with pytest.raises(ValueError, match="'n'"):
        public_key_from_jwk(jwk)
