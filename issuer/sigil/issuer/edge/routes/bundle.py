"""Bundles out: the agents' long poll, the SPIFFE federation bundle endpoint, and OIDC discovery for JWT-SVIDs.

- ``GET /v1/bundle`` (agents, mTLS): the own and federated bundles and the tainted authorities; with ``wait`` it
  returns as soon as the revision moves past the caller's, so a rotation reaches waiting agents at once. A caller
  with no client certificate gets the current answer at once and may not wait: that is how an agent with
  ``insecure_bootstrap`` learns its first bundle before it can attest. Bundles are public keys (the federation
  endpoint hands them to anyone), and a certificate that is presented is still checked like any other.
- The federation endpoint (``https_web``, its own listener): the bundle document, to anyone, as SPIFFE Federation
  §4 requires (no client authentication; ``application/json``).
- ``/.well-known/openid-configuration`` and ``/keys``: what relying parties outside SPIFFE (cloud IAM) read to
  verify JWT-SVIDs, as SPIRE's oidc-discovery-provider serves them, with ``use: sig`` (its ``set_key_use``). The
  document's ``issuer`` is ``server.oidc_issuer``; without it discovery is off (404), never guessed from the request.
"""

from __future__ import annotations

import math

from aiohttp import web

from sigil.issuer.agentapi import contract
from sigil.issuer.edge.routes.common import authenticated_agent, issuer_of
from sigil.issuer.errors import ClientCertificateRequiredError, MalformedRequestError, NotFoundError

__all__ = ["federation_routes", "query_number", "routes"]

routes = web.RouteTableDef()
federation_routes = web.RouteTableDef()


def query_number(request: web.Request, name: str) -> float | None:
    """A non-negative number from the query string, or None when absent; 400 when it is not one."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError as err:
        raise MalformedRequestError(f"{name} must be a number") from err
    if not math.isfinite(value) or value < 0:
        raise MalformedRequestError(f"{name} must be a non-negative number")
    return value


@routes.get(contract.PATH_BUNDLE)
async def bundle(request: web.Request) -> web.Response:
    issuer = issuer_of(request)
    after = query_number(request, "after_sequence")
    wait = query_number(request, "wait") or 0.0
    try:
        await authenticated_agent(request)
    except ClientCertificateRequiredError:
        if wait or after is not None or "after_revision" in request.query:
            raise  # a long poll holds a connection open: only agents may
        return web.json_response(
            await issuer.feed.wait(after_sequence=None, after_revision=None, longest=0.0)
        )
    longest = min(wait, issuer.settings.server.long_poll_max.total_seconds())
    response = await issuer.feed.wait(
        after_sequence=int(after) if after is not None else None,
        after_revision=request.query.get("after_revision"),
        longest=longest,
    )
    return web.json_response(response)


@federation_routes.get("/")
async def federation_bundle(request: web.Request) -> web.Response:
    issuer = issuer_of(request)
    return web.Response(body=issuer.ca.bundle().to_json(), content_type="application/json")


def _issuer_url(request: web.Request) -> str:
    # Only configuration names the issuer: a relying party pins it, and one taken from the Host header would let
    # any client (or a cache in front) make the document claim an issuer of its choosing.
    configured = issuer_of(request).settings.server.oidc_issuer
    if not configured:
        raise NotFoundError("OIDC discovery (server.oidc_issuer is not set)")
    return configured.rstrip("/")


@routes.get("/.well-known/openid-configuration")
async def openid_configuration(request: web.Request) -> web.Response:
    base = _issuer_url(request)
    return web.json_response(
        {
            "issuer": base,
            "jwks_uri": f"{base}/keys",
            "authorization_endpoint": "",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384"],
        }
    )


@routes.get("/keys")
async def keys(request: web.Request) -> web.Response:
    document = issuer_of(request).ca.bundle().to_jwks()
    jwks = [dict(k, use="sig") for k in document["keys"] if k.get("use") == "jwt-svid"]
    return web.json_response({"keys": jwks})
