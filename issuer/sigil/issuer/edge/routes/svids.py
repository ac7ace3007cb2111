"""Workload SVIDs: batched X509-SVIDs and JWT-SVIDs for an agent's workloads, and SVIDs for agentless workloads.

An agent may hold the identities of the pods on its own node (checked against the watched pod cache, issue 3's node
authorization) and of the registration entries parented to it whose selectors the workload presented (SPIRE's
subset rule). A batch answers per item, like SPIRE's ``BatchNewX509SVID``, and signs all granted items in one CA call.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sigil.ca.errors import MalformedCsrError, SigilError
from sigil.ca.reserved_ids import k8s_agent_node
from sigil.ca.service import X509Request
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.agentapi import contract
from sigil.issuer.datastore.registry import Entry
from sigil.issuer.edge.parts import Issuer
from sigil.issuer.edge.problems import need_str, problem_body, read_json
from sigil.issuer.edge.routes.common import (
    authenticated_agent,
    issuer_of,
    parse_csrs,
    peer_address,
    svid_body,
)
from sigil.issuer.errors import (
    MalformedRequestError,
    NotEntitledError,
    UnavailableError,
)
from sigil.issuer.kube import KubeIdentity, authorize_pod_for_node

__all__ = ["routes"]

routes = web.RouteTableDef()


def _agent_node(agent: SpiffeId) -> str | None:
    found = k8s_agent_node(agent)
    return None if found is None else found[1]


class _Grants:
    """Which identities one agent may hold, with the agent's entries read once per request."""

    def __init__(self, issuer: Issuer, agent: SpiffeId) -> None:
        self._issuer = issuer
        self._agent = agent
        self._entries: list[Entry] | None = None

    async def for_item(self, item: dict[str, Any]) -> list[tuple[SpiffeId, Entry | None]]:
        pod, selectors, wanted = item.get("pod"), item.get("selectors"), item.get("spiffe_id")
        if (pod is None) == (selectors is None):
            raise MalformedRequestError("each item names either 'pod' or 'selectors'")
        if pod is not None:
            return [(self._pod_id(pod), None)]
        if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
            raise MalformedRequestError("'selectors' must be a list of strings")
        if self._entries is None:
            self._entries = await self._issuer.registry.entries(parent_id=self._agent)
        granted: list[tuple[SpiffeId, Entry | None]] = [
            (e.spiffe_id, e)
            for e in self._entries
            if e.matches(selectors) and (wanted is None or str(e.spiffe_id) == wanted)
        ]
        if not granted:
            raise NotEntitledError(
                str(wanted or "any identity"), "no entry under this agent matches the selectors"
            )
        return granted

    def _pod_id(self, pod: Any) -> SpiffeId:
        kube, settings = self._issuer.kube, self._issuer.settings.server.kubernetes
        if kube is None or settings is None:
            raise UnavailableError("this server does not serve Kubernetes pods")
        if not isinstance(pod, dict):
            raise MalformedRequestError("'pod' must be an object")
        namespace, name, uid = (need_str(pod, k) for k in ("namespace", "name", "uid"))
        node = _agent_node(self._agent)
        if node is None:
            raise NotEntitledError(f"pod {namespace}/{name}", "only a Kubernetes agent may ask")
        cached = authorize_pod_for_node(
            kube.pods, node, namespace=namespace, pod_name=name, pod_uid=uid
        )
        identity = KubeIdentity(namespace, cached.service_account, name, uid, node, "")
        return settings.workload_id_template.render(self._issuer.ca.settings.trust_domain, identity)


def _items(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = document.get(key)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MalformedRequestError(f"{key!r} must be a list of objects")
    if len(items) > contract.MAX_BATCH:
        raise MalformedRequestError(f"at most {contract.MAX_BATCH} items per batch")
    return items


@routes.post(contract.PATH_X509_SVIDS)
async def batch_x509(request: web.Request) -> web.Response:
    agent = (await authenticated_agent(request)).spiffe_id
    issuer = issuer_of(request)
    items = _items(await read_json(request), "requests")
    keys = await parse_csrs([i["csr"] if isinstance(i.get("csr"), str) else "" for i in items])
    grants = _Grants(issuer, agent)
    results: list[contract.X509ResultItem] = []
    pending: list[tuple[int, int]] = []  # (result index, how many SVIDs)
    minting: list[X509Request] = []
    for index, (item, key) in enumerate(zip(items, keys, strict=True)):
        try:
            if isinstance(key, MalformedCsrError):
                raise key
            granted = await grants.for_item(item)
        except SigilError as err:
            problem = problem_body(err)
            issuer.metrics.refusals.labels(problem["reason"]).inc()
            results.append({"problem": problem})
            continue
        results.append({"svids": []})
        pending.append((index, len(granted)))
        for spiffe_id, entry in granted:
            ttl = entry.x509_svid_ttl if entry is not None else None
            dns = entry.dns_names if entry is not None else ()
            minting.append(X509Request(spiffe_id, public_key=key, ttl=ttl, dns_names=dns))
    minted = iter(await issuer.ca.mint_x509_svids(minting) if minting else [])
    for index, count in pending:
        results[index]["svids"] = [svid_body(next(minted)) for _ in range(count)]
    issuer.metrics.svids_issued.labels("x509", "agent").inc(len(minting))
    body: contract.X509BatchResponse = {"results": results}
    return web.json_response(body)


@routes.post(contract.PATH_JWT_SVIDS)
async def jwt_svids(request: web.Request) -> web.Response:
    agent = (await authenticated_agent(request)).spiffe_id
    issuer = issuer_of(request)
    document = await read_json(request)
    audience = document.get("audience")
    if (
        not isinstance(audience, list)
        or not audience
        or not all(isinstance(a, str) and a for a in audience)
    ):
        raise MalformedRequestError("'audience' must be a non-empty list of strings")
    granted = await _Grants(issuer, agent).for_item(document)
    svids: list[contract.JwtSvidBody] = []
    for spiffe_id, entry in granted:
        ttl = entry.jwt_svid_ttl if entry is not None else None
        svid = await issuer.ca.mint_jwt_svid(spiffe_id, audience=audience, ttl=ttl)
        svids.append(
            {
                "spiffe_id": str(spiffe_id),
                "token": svid.token,
                "expires_at": svid.expiry.isoformat(),
            }
        )
    issuer.metrics.svids_issued.labels("jwt", "agent").inc(len(svids))
    body: contract.JwtSvidResponse = {"svids": svids}
    return web.json_response(body)


@routes.post(contract.PATH_WORKLOAD_X509)
async def workload_x509(request: web.Request) -> web.Response:
    """A workload without an agent (the Istio way): its own token with its own audience, exactly its own ID."""
    issuer = issuer_of(request)
    issuer.limiter.check("workload:" + peer_address(request))
    kube, settings = issuer.kube, issuer.settings.server.kubernetes
    if kube is None or settings is None:
        raise UnavailableError("this server does not serve Kubernetes workloads")
    document = await read_json(request)
    token, csr = need_str(document, "token"), need_str(document, "csr")
    identity = await kube.workloads.authenticate(token)
    (key,) = await parse_csrs([csr])
    if isinstance(key, MalformedCsrError):
        raise key
    spiffe_id = settings.workload_id_template.render(issuer.ca.settings.trust_domain, identity)
    (svid,) = await issuer.ca.mint_x509_svids([X509Request(spiffe_id, public_key=key)])
    issuer.metrics.svids_issued.labels("x509", "workload").inc()
    return web.json_response(svid_body(svid))
