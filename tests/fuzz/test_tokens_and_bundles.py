"""JWT-SVIDs and SPIFFE bundle documents from outside: every mangling is refused with the parser's own error.

Tokens are built from a valid JWT-SVID with its header, payload and signature damaged separately, and re-signed by
the trusted key where the damage is in the claims, so the checks behind the signature are reached too.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fuzz.budget import FUZZ, corpus, outcome
from fuzz.mangling import mangled
from hypothesis import example, given
from hypothesis import strategies as st
from sigil_testing.pki import Domain

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import BundleError, JwtSvidError
from sigil.ca.jwtsvid import validate_jwt_svid
from sigil.ca.keys import jwt_algorithm

_DOMAIN = Domain("example.org")
_SUBJECT = _DOMAIN.id("ns", "default", "sa", "web")
_TOKEN = _DOMAIN.mint_jwt(_SUBJECT, ["svc"], ttl=timedelta(minutes=5))
_KEYS = {_DOMAIN.trust_domain: _DOMAIN.bundle.jwt_authorities}
_KID = _DOMAIN.jwt_signer.authority.authority_id

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _validate(token: str) -> None:
    svid = outcome(
        lambda: validate_jwt_svid(token, audience="svc", keys_for=_KEYS, now=_DOMAIN.now),
        JwtSvidError,
    )
    if isinstance(svid, JwtSvidError):
        assert svid.reason
        return
    assert svid.spiffe_id.trust_domain == _DOMAIN.trust_domain
    assert "svc" in svid.audience


@st.composite
def _claims(draw: st.DrawFn) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": str(_SUBJECT),
        "aud": ["svc"],
        "exp": int((_DOMAIN.now + timedelta(minutes=5)).timestamp()),
        "iat": int(_DOMAIN.now.timestamp()),
    }
    for name in draw(st.lists(st.sampled_from(["sub", "aud", "exp", "iat", "nbf", "jti", "x"]))):
        if draw(st.booleans()):
            claims.pop(name, None)
        else:
            claims[name] = draw(_JSON)
    return claims


@st.composite
def _headers(draw: st.DrawFn) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": jwt_algorithm(_DOMAIN.jwt_signer.private_key), "kid": _KID}
    for name in draw(st.lists(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x5c"]))):
        if draw(st.booleans()):
            header.pop(name, None)
        else:
            header[name] = draw(_JSON | st.sampled_from(["none", "HS256", "ES256", "RS256", "JWT"]))
    return header


@FUZZ
@given(_claims())
@example({"sub": str(_SUBJECT), "aud": ["svc"], "exp": "soon"})
@example({"sub": str(_SUBJECT), "aud": ["svc"], "exp": 1e300})
@example({"sub": str(_SUBJECT), "aud": ["svc"], "exp": 2**70})
def test_signed_tokens_with_any_claims_validate_or_are_refused(claims: dict[str, Any]) -> None:
    """A token signed by the trusted key but holding any claims at all validates or raises JwtSvidError."""
    token = jwt.encode(
        claims,
        _DOMAIN.jwt_signer.private_key,
        algorithm=jwt_algorithm(_DOMAIN.jwt_signer.private_key),
        headers={"kid": _KID, "typ": "JWT"},
    )
    _validate(token)


@FUZZ
@given(_headers())
@example({"alg": ["ES256"], "kid": _KID})
@example({"alg": "ES256", "kid": _KID, "typ": ["JWT"]})
@example({"alg": "ES256", "kid": {"a": 1}})
# Once a TypeError from pyjwt: an RSA algorithm with an EC key.
@example({"alg": "RS256", "kid": _KID})
@example({"alg": "ES384", "kid": _KID})
def test_any_header_over_a_valid_payload_is_refused_or_valid(header: dict[str, Any]) -> None:
    """A valid payload and signature under any header validates or raises JwtSvidError."""
    _, payload, signature = _TOKEN.split(".")
    _validate(".".join([_b64(json.dumps(header).encode()), payload, signature]))


@FUZZ
@given(
    st.integers(0, 2).flatmap(
        lambda part: st.tuples(st.just(part), mangled(_TOKEN.split(".")[part].encode()))
    )
)
def test_a_token_with_a_damaged_part_is_refused(damage: tuple[int, bytes]) -> None:
    """Header, payload or signature bytes damaged: JwtSvidError, never another exception."""
    part, data = damage
    parts = _TOKEN.split(".")
    parts[part] = data.decode("latin-1")
    _validate(".".join(parts))


@FUZZ
@given(st.text(max_size=2000))
def test_any_text_is_no_token(text: str) -> None:
    """Arbitrary text is refused as a JWT-SVID with JwtSvidError."""
    _validate(text)


_BUNDLE = _DOMAIN.bundle.to_json()


@st.composite
def _bundle_documents(draw: st.DrawFn) -> Any:
    document = json.loads(_BUNDLE)
    keys = document["keys"]
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(["doc", "key", "keys"]))
        if target == "doc":
            document[draw(st.sampled_from(["keys", "spiffe_sequence", "spiffe_refresh_hint"]))] = (
                draw(_JSON)
            )
        elif target == "keys" and isinstance(document.get("keys"), list):
            document["keys"].append(draw(_JSON))
        elif keys:
            key = draw(st.sampled_from(keys))
            if isinstance(key, dict):
                member = draw(
                    st.sampled_from(["use", "kty", "kid", "x5c", "crv", "x", "y", "n", "e", "d"])
                )
                key[member] = draw(
                    _JSON | st.sampled_from(["x509-svid", "jwt-svid", "EC", "RSA", "P-256"])
                )
    return document


def _parse_bundle(data: bytes | str) -> None:
    bundle = outcome(lambda: TrustBundle.parse_jwks(_DOMAIN.trust_domain, data), BundleError)
    if isinstance(bundle, BundleError):
        assert bundle.reason
        return
    assert bundle.trust_domain == _DOMAIN.trust_domain
    TrustBundle.parse_jwks(_DOMAIN.trust_domain, bundle.to_json())


@FUZZ
@given(_bundle_documents())
@example({"keys": [{"use": "jwt-svid", "kid": "k", "kty": "EC", "crv": "P-256", "x": 1, "y": 2}]})
@example({"keys": [], "spiffe_sequence": 1e400})
@example({"keys": [{"use": "x509-svid", "x5c": ["@@@"]}]})
def test_a_damaged_bundle_document_parses_or_is_refused(document: Any) -> None:
    """A SPIFFE bundle document with any member replaced parses (and round-trips) or raises BundleError."""
    _parse_bundle(json.dumps(document))


@FUZZ
@given(mangled(_BUNDLE))
@example(b"[" * 100_000)
def test_damaged_bundle_bytes_are_refused(data: bytes) -> None:
    """The bundle document's bytes damaged: a bundle or BundleError."""
    _parse_bundle(data)


@pytest.mark.parametrize("data", corpus("bundle"))
def test_the_bundles_that_found_bugs_are_refused(data: bytes) -> None:
    """Each kept bundle document (an x5c certificate whose EC point is off its curve, once accepted and then
    failing when the bundle was written) is refused with BundleError."""
    refused = outcome(lambda: TrustBundle.parse_jwks(_DOMAIN.trust_domain, data), BundleError)
    assert isinstance(refused, BundleError)
    assert "public key" in refused.reason


@FUZZ
@given(st.binary(max_size=4000))
def test_bytes_are_no_pem_or_der_bundle(data: bytes) -> None:
    """Arbitrary bytes as a PEM or DER bundle: a bundle or BundleError."""
    for parse in (TrustBundle.parse_pem, TrustBundle.parse_der):
        parsed = outcome(functools.partial(parse, _DOMAIN.trust_domain, data), BundleError)
        assert not isinstance(parsed, BundleError) or parsed.reason
