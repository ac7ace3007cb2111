"""A public key as a JSON Web Key and back: the EC and RSA parameters of RFC 7518, section 6.

SPIFFE bundles carry their authorities as JWKs (SPIFFE Trust Domain and Bundle, section 4:
https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md), and the node agent reads
its first bundle before it serves anything. PyJWT has this conversion, but importing any part of it runs
``jwt/__init__``, which imports its JWKS client and with it ``urllib.request`` and ``http.client``: about 1 MB of
resident memory on every node, for an HTTP client the agent never uses. The conversion itself is a few numbers in base64url, so it is written here on ``cryptography``, which validates
the key (an EC point must lie on its curve; an RSA modulus and exponent must be usable); PyJWT remains the
library for the tokens themselves (``jwtsvid.py``), imported where a JWT-SVID is minted or checked.

What is accepted is what PyJWT 2.x accepted for these two key types, with one difference: base64url values must
be unpadded and hold only the URL-safe alphabet (RFC 7515, section 2), where PyJWT's decoder skipped stray
characters. What is written is what PyJWT wrote but for ``key_ops``, which it added to RSA keys: a bundle's keys
carry ``use``, and RFC 7517 (section 4.3) says the two should not be used together.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sigil.ca.keys import PublicKey

__all__ = ["public_key_from_jwk", "public_key_to_jwk"]

#: JWK ``crv`` names (RFC 7518, section 6.2.1.1; secp256k1 from RFC 8812, section 3.1) and their curves.
_CURVES: Mapping[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
    "secp256k1": ec.SECP256K1,
}
_NAMES = {curve: name for name, curve in _CURVES.items()}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _encode(value: int, size: int | None = None) -> str:
    """``value`` big-endian in ``size`` bytes (the fewest, at least one, when None), base64url without padding."""
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


def _decode(jwk: Mapping[str, Any], member: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str) or not _BASE64URL.fullmatch(value) or len(value) % 4 == 1:
        raise ValueError(f"{member!r} is not an unpadded base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (
        binascii.Error
    ) as err:  # pragma: no cover - the pattern and length leave nothing it refuses
        raise ValueError(f"{member!r} is not base64url") from err


def public_key_to_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK members of ``key``: ``kty`` and the key's parameters (coordinates at the curve's full size)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = _NAMES.get(type(key.curve))
        if name is None:
            raise ValueError(f"curve {key.curve.name} has no JWK name")
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": name,
            "x": _encode(numbers.x, size),
            "y": _encode(numbers.y, size),
        }
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {"kty": "RSA", "n": _encode(rsa_numbers.n), "e": _encode(rsa_numbers.e)}
    raise TypeError(f"not an EC or RSA public key: {type(key).__name__}")


def public_key_from_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """The public key of an ``EC`` or ``RSA`` JWK; ``ValueError`` for any other, or for one holding private parts.

    An EC key's coordinates must be the curve's full size (RFC 7518, section 6.2.1.2) and name a point on it.
    """
    if "d" in jwk:
        raise ValueError("the JWK holds a private key")
    kty = jwk.get("kty")
    if kty == "EC":
        crv = jwk.get("crv")
        curve_class = _CURVES.get(crv) if isinstance(crv, str) else None
        if curve_class is None:
            raise ValueError(f"unknown curve {jwk.get('crv')!r}")
        curve = curve_class()
        x, y = _decode(jwk, "x"), _decode(jwk, "y")
        size = (curve.key_size + 7) // 8
        if not len(x) == len(y) == size:
            raise ValueError(f"coordinates of {jwk['crv']} must be {size} bytes")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        )
        return numbers.public_key()
    if kty == "RSA":
        n, e = _decode(jwk, "n"), _decode(jwk, "e")
        return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
    raise ValueError(f"unsupported key type {kty!r}")
