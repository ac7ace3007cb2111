"""JWT-SVIDs: minting and validation per the JWT-SVID standard.

Only ``alg``, ``kid`` and ``typ`` may appear in the header; ``alg`` must be one of the asymmetric algorithms the
standard lists (so ``none`` and HS* are refused); ``sub``, ``aud`` and ``exp`` are required; the token is checked
with the bundle of its subject's own trust domain
(https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from sigil.ca.authority import Signer
from sigil.ca.errors import InvalidSpiffeIdError, JwtSvidError, TtlError
from sigil.ca.keys import PublicKey, jwt_algorithm
from sigil.ca.spiffe_id import SpiffeId, TrustDomain

__all__ = ["ALLOWED_ALGORITHMS", "JwtSvid", "mint_jwt_svid", "validate_jwt_svid"]

ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
_ALLOWED_HEADERS = frozenset({"alg", "kid", "typ"})
#: Clock skew tolerated when checking ``exp`` (the standard allows "a small leeway").
LEEWAY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class JwtSvid:
    """A JWT-SVID: the compact token and what it says."""

    token: str
    spiffe_id: SpiffeId
    audience: tuple[str, ...]
    expiry: datetime
    issued_at: datetime
    key_id: str
    token_id: str
    claims: Mapping[str, Any]


def mint_jwt_svid(
    signer: Signer,
    *,
    spiffe_id: SpiffeId,
    audience: Sequence[str],
    ttl: timedelta,
    now: datetime,
) -> JwtSvid:
    """Sign a JWT-SVID for ``spiffe_id`` and ``audience``; it expires no later than its signing key."""
    if spiffe_id.is_root:
        raise InvalidSpiffeIdError(str(spiffe_id), "a JWT-SVID's SPIFFE ID must have a path")
    if isinstance(audience, str) or not audience or not all(audience):
        raise JwtSvidError("at least one non-empty audience is required")
    if ttl <= timedelta(0):
        raise TtlError(str(ttl), "must be positive")
    authority = signer.authority
    if now >= authority.not_after:
        raise TtlError(str(ttl), f"the signing key {authority.authority_id} has expired")
    expiry = min(now + ttl, authority.not_after)
    token_id = secrets.token_hex(16)
    claims: dict[str, Any] = {
        "sub": str(spiffe_id),
        "aud": list(audience),
        "exp": int(expiry.timestamp()),
        "iat": int(now.timestamp()),
        "jti": token_id,
    }
    token = jwt.encode(
        claims,
        signer.private_key,
        algorithm=jwt_algorithm(signer.private_key),
        headers={"kid": authority.authority_id, "typ": "JWT"},
    )
    return JwtSvid(
        token=token,
        spiffe_id=spiffe_id,
        audience=tuple(audience),
        expiry=datetime.fromtimestamp(claims["exp"], UTC),
        issued_at=datetime.fromtimestamp(claims["iat"], UTC),
        key_id=authority.authority_id,
        token_id=token_id,
        claims=claims,
    )


def validate_jwt_svid(
    token: str,
    *,
    audience: str,
    keys_for: Mapping[TrustDomain, Mapping[str, PublicKey]],
    now: datetime,
) -> JwtSvid:
    """Validate ``token`` for ``audience`` with the JWT keys of its subject's trust domain.

    ``keys_for`` maps each trusted trust domain to its keys by ``kid``; a token from a domain not in it, or signed by
    a key not in that domain's set, is refused.
    """
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise JwtSvidError("not a JWS compact token") from err
    extra = set(header) - _ALLOWED_HEADERS
    if extra:
        raise JwtSvidError(f"header parameters {sorted(extra)} are not allowed")
    # Header and claim values are any JSON: a list where a string belongs must be refused, not hashed.
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise JwtSvidError(f"algorithm {alg!r} is not allowed")
    typ = header.get("typ", "JWT")
    if not isinstance(typ, str) or typ not in {"JWT", "JOSE"}:
        raise JwtSvidError(f"typ {typ!r} is not allowed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JwtSvidError("the header has no kid")
    subject = unverified.get("sub")
    if not isinstance(subject, str):
        raise JwtSvidError("the sub claim is missing")
    try:
        spiffe_id = SpiffeId.parse(subject)
    except InvalidSpiffeIdError as err:
        raise JwtSvidError(f"sub is not a SPIFFE ID ({err.rule})") from err
    domain_keys = keys_for.get(spiffe_id.trust_domain)
    if domain_keys is None:
        raise JwtSvidError(f"no JWT bundle for trust domain {spiffe_id.trust_domain}")
    key = domain_keys.get(kid)
    if key is None:
        raise JwtSvidError(f"key {kid!r} is not in the bundle of {spiffe_id.trust_domain}")
    # pyjwt raises TypeError, not one of its errors, for an RS* token checked with an EC key (found by fuzzing).
    if alg[:2] not in (("ES",) if isinstance(key, ec.EllipticCurvePublicKey) else ("RS", "PS")):
        raise JwtSvidError(f"algorithm {alg!r} does not fit key {kid!r}")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            leeway=LEEWAY,
            # exp is checked below against the injected clock rather than pyjwt's wall clock.
            options={
                "require": ["sub", "aud", "exp"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError as err:
        raise JwtSvidError(f"audience {audience!r} is not among the token's audiences") from err
    except jwt.PyJWTError as err:
        raise JwtSvidError(f"the token does not validate: {err}") from err
    expiry = _instant(claims, "exp")
    if expiry is None:
        raise JwtSvidError("exp is not a NumericDate")
    if expiry + LEEWAY <= now:
        raise JwtSvidError("the token has expired")
    aud = claims["aud"]
    audiences = (aud,) if isinstance(aud, str) else tuple(aud)
    issued = _instant(claims, "iat")
    return JwtSvid(
        token=token,
        spiffe_id=spiffe_id,
        audience=audiences,
        expiry=expiry,
        issued_at=issued if issued is not None else expiry,
        key_id=kid,
        token_id=str(claims.get("jti", "")),
        claims=claims,
    )


def _instant(claims: Mapping[str, Any], name: str) -> datetime | None:
    """The NumericDate claim ``name`` (RFC 7519 §2: seconds, possibly fractional), or None if absent or unusable.

    The signature proves who signed the claims, not that they are sane: a string, a boolean or a date past year
    9999 must not reach :meth:`datetime.fromtimestamp` (found by fuzzing).
    """
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None
