"""Agent identity: attestation by Kubernetes token or join token, and renewal with the current agent SVID.

Kubernetes agents follow SPIRE's k8s_psat (reference/spiffe.md §4) through :mod:`sigil.issuer.kube`; the agent ID is
``spiffe://TD/sigil/agent/k8s/CLUSTER/NODE``. Join-token agents get ``spiffe://TD/sigil/agent/join/<digest prefix>``,
named after the token's digest (never the token). Both endpoints take connections without a client certificate and
are rate-limited by peer address, as SPIRE limits node attestation per IP.
"""

from __future__ import annotations

from aiohttp import web

from sigil.ca.errors import MalformedCsrError
from sigil.ca.service import X509Request
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer import wire
from sigil.issuer.errors import JoinTokenInvalidError, NotEntitledError, UnavailableError
from sigil.issuer.kube import agent_spiffe_id
from sigil.issuer.problems import need_str, read_json
from sigil.issuer.routes.common import (
    authenticated_agent,
    issuer_of,
    parse_csrs,
    peer_address,
    svid_body,
)

__all__ = ["routes"]

routes = web.RouteTableDef()


async def _issue_agent_svid(
    request: web.Request, agent: SpiffeId, csr: str, *, method: str
) -> web.Response:
    issuer = issuer_of(request)
    (key,) = await parse_csrs([csr])
    if isinstance(key, MalformedCsrError):
        raise key
    ttl = issuer.settings.server.agent_svid_ttl
    (svid,) = await issuer.ca.mint_x509_svids([X509Request(agent, public_key=key, ttl=ttl)])
    issuer.metrics.svids_issued.labels("x509", "agent").inc()
    await issuer.registry.record_agent(
        str(agent),
        method=method,
        serial=svid.serial_hex,
        expires_at=svid.not_after,
        now=issuer.clock(),
    )
    body: wire.AgentSvidResponse = {"svid": svid_body(svid), "bundle": issuer.feed.current()}
    return web.json_response(body)


@routes.post(wire.PATH_ATTEST_K8S)
async def attest_k8s(request: web.Request) -> web.Response:
    issuer = issuer_of(request)
    issuer.limiter.check("attest:" + peer_address(request))
    document = await read_json(request)
    token, cluster, csr = (need_str(document, k) for k in ("token", "cluster", "csr"))
    if issuer.kube is None:
        raise UnavailableError("this server does not attest Kubernetes agents")
    expected = issuer.settings.server.kubernetes
    identity = await issuer.kube.agents.authenticate(token)
    if expected is None or cluster != expected.cluster:
        raise NotEntitledError(f"cluster {cluster!r}", "this server serves another cluster")
    agent = agent_spiffe_id(
        issuer.ca.settings.trust_domain, cluster=cluster, node_name=identity.node_name
    )
    return await _issue_agent_svid(request, agent, csr, method="k8s")


@routes.post(wire.PATH_ATTEST_JOIN_TOKEN)
async def attest_join_token(request: web.Request) -> web.Response:
    issuer = issuer_of(request)
    issuer.limiter.check("attest:" + peer_address(request))
    document = await read_json(request)
    token, csr = need_str(document, "token"), need_str(document, "csr")
    suffix = await issuer.registry.spend_join_token(token, now=issuer.clock())
    if suffix is None:
        raise JoinTokenInvalidError
    agent = issuer.ca.settings.trust_domain.spiffe_id("sigil", "agent", "join", suffix)
    return await _issue_agent_svid(request, agent, csr, method="join")


@routes.post(wire.PATH_RENEW)
async def renew(request: web.Request) -> web.Response:
    agent = authenticated_agent(request)
    document = await read_json(request)
    return await _issue_agent_svid(request, agent, need_str(document, "csr"), method="renew")
