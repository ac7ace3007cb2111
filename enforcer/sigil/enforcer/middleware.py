"""aiohttp middleware that authorizes every request by the TLS peer's SPIFFE ID and the policies in force.

Run the application behind a context from :mod:`sigil.enforcer.tls` (or any TLS context, given a verifier).
Per request the middleware takes the connection's TLS object, verifies the peer's chain (the verifier's cache
makes a keep-alive connection's later requests cost a hash and a lookup, and catches an SVID that expired
mid-connection), asks the :class:`~sigil.enforcer.authorizer.Authorizer`, and then either stores the peer's
SPIFFE ID under :data:`PEER` for the handler or answers ``403`` with an RFC 9457 problem document saying which
tier, policy and rule denied — users' first complaint about mesh authorization is an opaque
"RBAC: access denied" (istio#39802). A plaintext request, or a peer whose chain does not verify, is decided
as "no SVID" (authz.md part 7): it matches only rules without sources, and the configured default.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.tls import peer_chain, peer_of
from sigil.enforcer.verify import SvidVerifier

__all__ = ["PEER", "PROBLEM_JSON", "spiffe_authorization"]

PEER = web.RequestKey("sigil.enforcer.peer", SpiffeId)
"""The verified peer's SPIFFE ID, set on every request the middleware allowed with a peer."""

PROBLEM_JSON = "application/problem+json"


def spiffe_authorization(
    authorizer: Authorizer,
    *,
    port: int | None = None,
    verifier: SvidVerifier | None = None,
) -> Middleware:
    """The middleware; ``port`` is the server's own (default: the local port of each connection).

    ``verifier`` is needed only when the server's context was not built by :mod:`sigil.enforcer.tls` (whose
    contexts carry their own). Decisions and refusals are counted in the authorizer's metrics.
    """
    metrics = authorizer.metrics

    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer, refusal = _peer(request, verifier)
        if refusal is not None and metrics is not None:
            metrics.count_refusal(refusal.reason)
        decision = authorizer.decide(
            peer,
            port if port is not None else _local_port(request),
            address=_peer_address(request),
        )
        if not decision.allowed:
            return _forbidden(peer, decision.to_dict(), refusal)
        if peer is not None:
            request[PEER] = peer
        return await handler(request)

    return authorize


def _peer(
    request: web.Request, verifier: SvidVerifier | None
) -> tuple[SpiffeId | None, SvidVerificationError | None]:
    transport = request.transport
    tls = None if transport is None else transport.get_extra_info("ssl_object")
    if tls is None:
        return None, None
    checker = verifier or getattr(tls.context, "sigil_verifier", None)
    if checker is None:
        # No verifier at hand: only a handshake that ran the SPIFFE check counts.
        verified = peer_of(tls)
        return (None if verified is None else verified.spiffe_id), None
    chain = peer_chain(tls)
    if not chain:
        return None, None
    try:
        return checker.verify(chain).spiffe_id, None
    except SvidVerificationError as err:
        return None, err


def _peer_address(request: web.Request) -> str | None:
    """The connection's real peer IP (never a header a client can write, such as X-Forwarded-For)."""
    transport = request.transport
    peername = None if transport is None else transport.get_extra_info("peername")
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None  # a Unix socket: no address, so no rule with sourceCIDRs matches


def _local_port(request: web.Request) -> int:
    transport = request.transport
    sockname = None if transport is None else transport.get_extra_info("sockname")
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return 0


def _forbidden(
    peer: SpiffeId | None, decision: dict[str, Any], refusal: SvidVerificationError | None
) -> web.Response:
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": decision["reason"],
        "peer": None if peer is None else str(peer),
        "tier": decision["tier"],
        "policy": decision["policy"],
        "rule": decision["rule"],
    }
    if refusal is not None:
        problem["verification"] = {"reason": refusal.reason, "detail": refusal.detail}
    return web.Response(status=403, text=json.dumps(problem), content_type=PROBLEM_JSON)
