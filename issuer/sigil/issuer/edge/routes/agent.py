"""Agent identity: attestation by Kubernetes token or join token, and renewal with the current agent SVID.

Kubernetes agents follow SPIRE's k8s_psat (reference/spiffe.md §4) through :mod:`sigil.issuer.kube`; the agent ID is
``spiffe://TD/sigil/agent/k8s/CLUSTER/NODE``. Join-token agents get ``spiffe://TD/sigil/agent/join/<digest prefix>``,
named after the token's digest (never the token). Both endpoints take connections without a client certificate and
are rate-limited by peer address, as SPIRE limits node attestation per IP.

Renewal follows SPIRE's RenewAgent: the new SVID is recorded as just issued beside the current one, and becomes
current (retiring the old one and every copy of it) when the agent first presents it (:mod:`sigil.issuer.agents.authentication`).
A Kubernetes agent's node must still exist with the UID it attested with. A banned agent ID cannot attest.
"""

from __future__ import annotations

from aiohttp import web

from sigil.ca.errors import MalformedCsrError
from sigil.ca.reserved_ids import join_agent_id, k8s_agent_id
from sigil.ca.service import X509Request
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.x509svid import X509Svid
from sigil.issuer.agentapi import contract
from sigil.issuer.agentapi.requests import AttestK8s, Renew, TokenAndCsr
from sigil.issuer.agents.authentication import CallingAgent
from sigil.issuer.edge.problems import read_json
from sigil.issuer.edge.routes.common import (
    authenticated_agent,
    issuer_of,
    parse_csrs,
    peer_address,
    svid_body,
)
from sigil.issuer.errors import (
    AgentBannedError,
    AgentNodeGoneError,
    AgentSvidSupersededError,
    JoinTokenInvalidError,
    NotEntitledError,
    UnavailableError,
)

__all__ = ["routes"]

routes = web.RouteTableDef()


async def _mint_agent_svid(request: web.Request, agent: SpiffeId, csr: str) -> X509Svid:
    issuer = issuer_of(request)
    (key,) = await parse_csrs(issuer, [csr])
    if isinstance(key, MalformedCsrError):
        raise key
    ttl = issuer.settings.server.agent_svid_ttl
    wanted = X509Request(agent, spki=key, ttl=ttl)
    (svid,) = await issuer.ca.mint_x509_svids([wanted], holder=str(agent))
    issuer.metrics.svids_issued.labels("x509", "agent").inc()
    return svid


def _answer(request: web.Request, svid: X509Svid) -> web.Response:
    body: contract.AgentSvidResponse = {
        "svid": svid_body(svid),
        "bundle": issuer_of(request).feed.current(),
    }
    return web.json_response(body)


async def _attested(
    request: web.Request, agent: SpiffeId, csr: str, *, method: str, node_uid: str | None = None
) -> web.Response:
    """A fresh attestation: refused for a banned ID; retires every earlier SVID of the ID."""
    issuer = issuer_of(request)
    known = await issuer.agent_records.get(str(agent))
    if known is not None and known.banned:
        raise AgentBannedError(str(agent))
    svid = await _mint_agent_svid(request, agent, csr)
    recorded = await issuer.agent_records.attested(
        str(agent),
        method=method,
        serial=svid.serial_hex,
        expires_at=svid.not_after,
        now=issuer.clock(),
        node_uid=node_uid,
    )
    if (
        not recorded
    ):  # banned while the SVID was being signed: it was never recorded, so it is worthless
        raise AgentBannedError(str(agent))
    return _answer(request, svid)


@routes.post(contract.PATH_ATTEST_K8S)
async def attest_k8s(request: web.Request) -> web.Response:
    issuer = issuer_of(request)
    issuer.limiter.check("attest:" + peer_address(request))
    body = AttestK8s.parse(await read_json(request))
    token, cluster, csr = body.token, body.cluster, body.csr
    if issuer.kube is None:
        raise UnavailableError("this server does not attest Kubernetes agents")
    expected = issuer.settings.server.kubernetes
    identity = await issuer.kube.agents.authenticate(token)
    if expected is None or cluster != expected.cluster:
        raise NotEntitledError(f"cluster {cluster!r}", "this server serves another cluster")
    agent = k8s_agent_id(
        issuer.ca.settings.trust_domain, cluster=cluster, node_name=identity.node_name
    )
    return await _attested(request, agent, csr, method="k8s", node_uid=identity.node_uid)


@routes.post(contract.PATH_ATTEST_JOIN_TOKEN)
async def attest_join_token(request: web.Request) -> web.Response:
    issuer = issuer_of(request)
    issuer.limiter.check("attest:" + peer_address(request))
    body = TokenAndCsr.parse(await read_json(request))
    suffix = await issuer.registry.spend_join_token(body.token, now=issuer.clock())
    if suffix is None:
        raise JoinTokenInvalidError
    agent = join_agent_id(issuer.ca.settings.trust_domain, suffix)
    return await _attested(request, agent, body.csr, method="join")


async def _check_node(request: web.Request, caller: CallingAgent) -> None:
    """A Kubernetes agent's node must still exist with the UID it attested with (SPIRE's k8s_psat re-check)."""
    issuer = issuer_of(request)
    found = caller.k8s_node
    if issuer.kube is None or found is None:
        raise UnavailableError("this server cannot check Kubernetes nodes")
    node_name = found[1]
    node = await issuer.kube.api.read_node(node_name)
    current = node.get("metadata", {}).get("uid", "") if node is not None else ""
    attested = caller.record.node_uid
    if not current or (attested is not None and current != attested):
        raise AgentNodeGoneError(node_name, attested_uid=attested or "?", current_uid=current)


@routes.post(contract.PATH_RENEW)
async def renew(request: web.Request) -> web.Response:
    """A new agent SVID for the caller; its current one keeps working until the new one is first presented."""
    issuer = issuer_of(request)
    caller = await authenticated_agent(request)
    csr = Renew.parse(await read_json(request)).csr
    if caller.record.method == "k8s":
        await _check_node(request, caller)
    svid = await _mint_agent_svid(request, caller.spiffe_id, csr)
    recorded = await issuer.agent_records.renewed(
        str(caller.spiffe_id),
        presented=caller.serial,
        serial=svid.serial_hex,
        expires_at=svid.not_after,
        now=issuer.clock(),
    )
    if not recorded:  # evicted, banned, re-attested or renewed by a newer SVID meanwhile
        raise AgentSvidSupersededError(str(caller.spiffe_id), caller.serial)
    return _answer(request, svid)
