"""Validation of a JWT-SVID for ValidateJWTSVID, by the rules of the JWT-SVID standard.

https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md: only the listed asymmetric algorithms; ``typ``
absent or ``JWT``/``JOSE``; ``sub`` a SPIFFE ID; ``aud`` and ``exp`` present; the signature checked with the key
named by ``kid`` in the JWT bundle of the *subject's* trust domain, never a key of another trust domain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jwt

from sigil.ca.errors import InvalidSpiffeIdError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.node_agent.errors import JwtSvidInvalidError

__all__ = ["ALLOWED_ALGORITHMS", "validate_jwt_svid"]

ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
_ALLOWED_TYP = frozenset({"JWT", "JOSE"})


def _key_for(jwks: bytes, kid: str, trust_domain: TrustDomain) -> Any:
    """The public key with ``kid`` in a JWKS document."""
    try:
        document = json.loads(jwks)
        keys = document["keys"]
    except (ValueError, KeyError, TypeError) as err:
        raise JwtSvidInvalidError(f"the JWT bundle of {trust_domain} is malformed") from err
    for entry in keys:
        if isinstance(entry, dict) and entry.get("kid") == kid:
            try:
                return jwt.PyJWK.from_dict(entry).key
            except jwt.PyJWTError as err:
                raise JwtSvidInvalidError(f"key {kid!r} of {trust_domain} is unusable") from err
    raise JwtSvidInvalidError(f"key {kid!r} is not in the JWT bundle of {trust_domain}")


def validate_jwt_svid(
    token: str,
    *,
    audience: str,
    bundles: Mapping[TrustDomain, bytes],
    leeway: float = 0.0,
) -> tuple[SpiffeId, dict[str, Any]]:
    """Validate ``token`` for ``audience``; returns its SPIFFE ID and claims or raises JwtSvidInvalidError."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise JwtSvidInvalidError("not a JWS in compact serialization") from err
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise JwtSvidInvalidError(f"algorithm {alg!r} is not allowed")
    typ = header.get("typ")
    if typ is not None and typ not in _ALLOWED_TYP:
        raise JwtSvidInvalidError(f"token type {typ!r} is not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JwtSvidInvalidError("the header has no key ID")
    subject = unverified.get("sub")
    if not isinstance(subject, str):
        raise JwtSvidInvalidError("the token has no subject")
    try:
        spiffe_id = SpiffeId.parse(subject)
    except InvalidSpiffeIdError as err:
        raise JwtSvidInvalidError(f"the subject is not a SPIFFE ID ({err.rule})") from err
    jwks = bundles.get(spiffe_id.trust_domain)
    if jwks is None:
        raise JwtSvidInvalidError(f"no JWT bundle for trust domain {spiffe_id.trust_domain}")
    key = _key_for(jwks, kid, spiffe_id.trust_domain)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=audience,
            leeway=leeway,
            options={"require": ["aud", "exp", "sub"]},
        )
    except jwt.PyJWTError as err:
        raise JwtSvidInvalidError(str(err)) from err
    return spiffe_id, claims
