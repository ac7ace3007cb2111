"""Policies out: the agents' long poll for the authorization policies in force (issue 5, "Distribution").

``GET /v1/agent/policies?after_revision=N&held_digest=D&wait=S`` (agent SVID): the set in force with its revision,
at once without ``after_revision``, else as soon as the revision differs from ``N`` or after ``S`` seconds with
what there is. With ``held_digest``, the digest of the set the agent holds, the answer is what changed since that
set when the server still keeps it (:mod:`sigil.issuer.policies.history`), else the whole set; an agent that
sends no digest (one older than deltas) is always answered the whole set, as before.
"""

from __future__ import annotations

import re

from aiohttp import web

from sigil.issuer.agentapi import contract
from sigil.issuer.edge.routes.bundle import query_number
from sigil.issuer.edge.routes.common import authenticated_agent, issuer_of
from sigil.issuer.errors import MalformedRequestError

__all__ = ["routes"]

routes = web.RouteTableDef()

#: A SHA-256 digest as the feed writes it (:func:`sigil.issuer.agentapi.contract.policy_set_digest`).
_DIGEST = re.compile(r"[0-9a-f]{64}")


@routes.get(contract.PATH_POLICIES)
async def policies(request: web.Request) -> web.Response:
    await authenticated_agent(request)
    issuer = issuer_of(request)
    after = query_number(request, "after_revision")
    if after is not None and after != int(after):
        raise MalformedRequestError("after_revision must be an integer")
    held = request.query.get("held_digest")
    if held is not None and not _DIGEST.fullmatch(held):
        raise MalformedRequestError("held_digest must be 64 lowercase hex digits")
    wait = query_number(request, "wait") or 0.0
    longest = min(wait, issuer.settings.server.long_poll_max.total_seconds())
    answer = await issuer.policies.wait_answer(
        after_revision=int(after) if after is not None else None,
        held_digest=held,
        longest=longest,
    )
    kind = "delta" if answer.delta else "full"
    issuer.metrics.policy_answers.labels(kind).inc()
    issuer.metrics.policy_answer_bytes.labels(kind).inc(len(answer.body))
    return web.Response(body=answer.body, content_type="application/json")
