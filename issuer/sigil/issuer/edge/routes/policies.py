"""Policies out: the agents' long poll for the authorization policies in force (issue 5, "Distribution").

``GET /v1/agent/policies?after_revision=N&wait=S`` (agent SVID): the whole set with its revision, at once without
``after_revision``, else as soon as the revision differs from ``N`` or after ``S`` seconds with what there is. The
whole set rather than a diff: it is small, an agent that missed revisions needs no history, and the agent scopes
it per workload itself.
"""

from __future__ import annotations

from aiohttp import web

from sigil.issuer.agentapi import contract
from sigil.issuer.edge.routes.bundle import query_number
from sigil.issuer.edge.routes.common import authenticated_agent, issuer_of
from sigil.issuer.errors import MalformedRequestError

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get(contract.PATH_POLICIES)
async def policies(request: web.Request) -> web.Response:
    await authenticated_agent(request)
    issuer = issuer_of(request)
    after = query_number(request, "after_revision")
    if after is not None and after != int(after):
        raise MalformedRequestError("after_revision must be an integer")
    wait = query_number(request, "wait") or 0.0
    longest = min(wait, issuer.settings.server.long_poll_max.total_seconds())
    body = await issuer.policies.wait_encoded(
        after_revision=int(after) if after is not None else None, longest=longest
    )
    return web.Response(body=body, content_type="application/json")
