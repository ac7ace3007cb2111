"""Workload SVIDs: batched X509-SVIDs and JWT-SVIDs for an agent's workloads, and SVIDs for agentless workloads.

An agent may hold the identities of the pods on its own node (checked against the watched pod cache, issue 3's node
authorization) and of the registration entries parented to it whose selectors the workload presented (SPIRE's
subset rule). A batch answers per item, like SPIRE's ``BatchNewX509SVID``, and checks every CSR and signs all granted
items in one CA call.
"""

from __future__ import annotations

import json

from aiohttp import web

from sigil.ca.errors import MalformedCsrError, SigilError
from sigil.ca.minting import CsrGrants, Grant
from sigil.ca.service import X509Request
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.agentapi import contract
from sigil.issuer.agentapi.requests import JwtSvids, PodName, Subject, TokenAndCsr, X509Batch
from sigil.issuer.agents import CallingAgent
from sigil.issuer.datastore.registry import Entry
from sigil.issuer.edge.parts import Issuer
from sigil.issuer.edge.problems import problem_body, read_json
from sigil.issuer.edge.routes.common import (
    authenticated_agent,
    issuer_of,
    parse_csrs,
    peer_address,
    svid_body,
    svid_json,
)
from sigil.issuer.errors import (
    NotEntitledError,
    UnavailableError,
)
from sigil.issuer.kube import KubeIdentity, authorize_pod_for_node

__all__ = ["routes"]

routes = web.RouteTableDef()


class _Grants:
    """Which identities one agent may hold, with the agent's entries read once per request."""

    def __init__(self, issuer: Issuer, caller: CallingAgent) -> None:
        self._issuer = issuer
        self._caller = caller
        self._entries: list[Entry] | None = None
        #: The caller's node, read from its ID once per request rather than once per pod.
        self._k8s_node = caller.k8s_node

    async def for_subject(self, subject: Subject) -> list[tuple[SpiffeId, Entry | None]]:
        if subject.pod is not None:
            return [(self._pod_id(subject.pod), None)]
        selectors, wanted = subject.selectors or (), subject.spiffe_id
        if self._entries is None:
            self._entries = await self._issuer.registry.entries(parent_id=self._caller.spiffe_id)
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

    def _pod_id(self, pod: PodName) -> SpiffeId:
        kube, settings = self._issuer.kube, self._issuer.settings.server.kubernetes
        if kube is None or settings is None:
            raise UnavailableError("this server does not serve Kubernetes pods")
        found = self._k8s_node
        if found is None:
            raise NotEntitledError(
                f"pod {pod.namespace}/{pod.name}", "only a Kubernetes agent may ask"
            )
        node = found[1]
        cached = authorize_pod_for_node(
            kube.pods, node, namespace=pod.namespace, pod_name=pod.name, pod_uid=pod.uid
        )
        identity = KubeIdentity(pod.namespace, cached.service_account, pod.name, pod.uid, node, "")
        return settings.workload_id_template.render(self._issuer.ca.settings.trust_domain, identity)


@routes.post(contract.PATH_X509_SVIDS)
async def batch_x509(request: web.Request) -> web.Response:
    caller = await authenticated_agent(request)
    issuer = issuer_of(request)
    batch = X509Batch.parse(await read_json(request))
    grants = _Grants(issuer, caller)
    # Every entitlement is decided here before anything is signed; the CA then checks each CSR and signs what was
    # granted over its key in one call. An item refused here still has its CSR checked: a malformed CSR is the
    # reason an item is refused before any other, as when the CSRs were checked first.
    minting: list[CsrGrants] = []
    refused: dict[int, SigilError] = {}
    for index, (item, csr) in enumerate(zip(batch.items, batch.csrs(), strict=True)):
        try:
            # Parsed item by item: one malformed item is that item's problem, not the batch's.
            granted = await grants.for_subject(Subject.parse(item))
        except SigilError as err:
            refused[index] = err
            minting.append(CsrGrants(csr.encode()))
            continue
        minting.append(
            CsrGrants(
                csr.encode(),
                [
                    Grant(spiffe_id)
                    if entry is None
                    else Grant(spiffe_id, entry.x509_svid_ttl, entry.dns_names)
                    for spiffe_id, entry in granted
                ],
            )
        )
    minted = await issuer.ca.mint_x509_per_csr(minting, holder=str(caller.spiffe_id))
    # Each result as JSON text (an X509ResultItem).
    results: list[str] = []
    issued = 0
    for index, svids in enumerate(minted):
        if isinstance(svids, list) and index not in refused:
            issued += len(svids)
            results.append(f'{{"svids": [{", ".join([svid_json(s) for s in svids])}]}}')
            continue
        problem = problem_body(svids if isinstance(svids, MalformedCsrError) else refused[index])
        issuer.metrics.refusals.labels(problem["reason"]).inc()
        results.append(json.dumps({"problem": problem}))
    issuer.metrics.svids_issued.labels("x509", "agent").inc(issued)
    # A contract.X509BatchResponse, spliced: encoding the hundred SVIDs' dicts again cost more than making them.
    return web.json_response(text=f'{{"results": [{", ".join(results)}]}}')


@routes.post(contract.PATH_JWT_SVIDS)
async def jwt_svids(request: web.Request) -> web.Response:
    caller = await authenticated_agent(request)
    issuer = issuer_of(request)
    wanted = JwtSvids.parse(await read_json(request))
    granted = await _Grants(issuer, caller).for_subject(wanted.subject)
    svids: list[contract.JwtSvidBody] = []
    for spiffe_id, entry in granted:
        ttl = entry.jwt_svid_ttl if entry is not None else None
        svid = await issuer.ca.mint_jwt_svid(
            spiffe_id, audience=wanted.audience, ttl=ttl, holder=str(caller.spiffe_id)
        )
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
    body = TokenAndCsr.parse(await read_json(request))
    identity = await kube.workloads.authenticate(body.token)
    (key,) = await parse_csrs(issuer, [body.csr])
    if isinstance(key, MalformedCsrError):
        raise key
    spiffe_id = settings.workload_id_template.render(issuer.ca.settings.trust_domain, identity)
    (svid,) = await issuer.ca.mint_x509_svids([X509Request(spiffe_id, spki=key)])
    issuer.metrics.svids_issued.labels("x509", "workload").inc()
    return web.json_response(svid_body(svid))
