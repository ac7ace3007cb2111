"""ValidateJWTSVID's check: the CA's JWT-SVID validator fed with the bundles the Workload API serves.

The rules (allowed algorithms and header parameters, ``sub``/``aud``/``exp``, the key taken from the bundle of
the *subject's* trust domain: https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md) live once, in
:func:`sigil.ca.jwtsvid.validate_jwt_svid`; this module turns JWKS documents into its key map and the CA's
errors into the agent's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import BundleError, JwtSvidError
from sigil.ca.jwtsvid import validate_jwt_svid as _validate
from sigil.ca.keys import PublicKey
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.node_agent.errors import JwtSvidInvalidError

__all__ = ["validate_jwt_svid"]

_log = structlog.get_logger(__name__)


def _keys_by_domain(
    bundles: Mapping[TrustDomain, bytes],
) -> dict[TrustDomain, Mapping[str, PublicKey]]:
    keys: dict[TrustDomain, Mapping[str, PublicKey]] = {}
    for trust_domain, jwks in bundles.items():
        try:
            keys[trust_domain] = TrustBundle.parse_jwks(trust_domain, jwks).jwt_authorities
        except BundleError as err:
            # One broken federated bundle must not stop tokens of other trust domains from validating.
            _log.warning(
                "skipping a malformed JWT bundle", trust_domain=str(trust_domain), error=str(err)
            )
    return keys


def validate_jwt_svid(
    token: str, *, audience: str, bundles: Mapping[TrustDomain, bytes], now: datetime
) -> tuple[SpiffeId, dict[str, Any]]:
    """Validate ``token`` for ``audience`` against JWKS ``bundles``; its SPIFFE ID and claims, or an error."""
    try:
        svid = _validate(token, audience=audience, keys_for=_keys_by_domain(bundles), now=now)
    except JwtSvidError as err:
        raise JwtSvidInvalidError(err.reason) from err
    return svid.spiffe_id, dict(svid.claims)
