"""The issuer's OpenAPI 3.1 document, served at ``/openapi.json`` on the main listener and the admin socket.

It describes the agent API (:mod:`sigil.issuer.agentapi.contract`, over mutual TLS) and the admin API (the local
socket's routes, :mod:`sigil.issuer.edge.routes.admin`), so that clients in other languages and API fuzzers
(schemathesis) can be pointed at a running server. A test fails when a route is served that the document does not
describe, or when a contract TypedDict and its schema (:mod:`sigil.issuer.edge.openapi_schemas`) disagree.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from sigil.issuer.admin.contract import ADMIN_PREFIX
from sigil.issuer.edge.openapi_paths import ADMIN_PATHS, AGENT_PATHS, operation
from sigil.issuer.edge.openapi_schemas import SCHEMAS

__all__ = ["OPENAPI_PATH", "document", "routes"]

OPENAPI_PATH: Final = "/openapi.json"


def document() -> dict[str, Any]:
    """The whole OpenAPI document (a fresh copy each call)."""
    paths: dict[str, Any] = {path: dict(ops) for path, ops in AGENT_PATHS.items()}
    paths.update({ADMIN_PREFIX + path: dict(ops) for path, ops in ADMIN_PATHS.items()})
    paths[OPENAPI_PATH] = {
        "get": operation(
            "openapi", "This document", answer={"type": "object"}, refusals=(), tags=("meta",)
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sigil issuer",
            "version": "1",
            "description": (
                "The agent API (HTTPS with mutual TLS: agents present their agent SVID) and the admin API (the "
                "server's local Unix socket, under "
                + ADMIN_PREFIX
                + "). Every refusal is an RFC 9457 "
                "application/problem+json body whose reason is stable."
            ),
        },
        "paths": paths,
        "components": {"schemas": {name: dict(schema) for name, schema in SCHEMAS.items()}},
    }


routes = web.RouteTableDef()


@routes.get(OPENAPI_PATH)
async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(document())
