"""The issuer's API as typed calls: the agent's own identity, workload SVIDs, and the bundle and policy feeds.

Each call builds one :mod:`sigil.issuer.agentapi.contract` request body and parses its answer into a value of
:mod:`sigil.issuer.client.results`; how the request travels (TLS, client certificate, refusals as errors) is
:class:`~sigil.issuer.client.transport.Transport`'s business.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import cast

from sigil.ca.keys import PrivateKey, generate_key
from sigil.enforcer.policy import AcceptedPolicy
from sigil.issuer.agentapi import contract
from sigil.issuer.client.policy_delta import PolicyDeltaError, apply_delta
from sigil.issuer.client.results import (
    AgentSvid,
    BundleUpdate,
    IssuedJwtSvid,
    IssuedX509Svid,
    NodePodsUpdate,
    PolicyUpdate,
    X509SvidRequest,
    X509SvidResult,
)
from sigil.issuer.client.transport import Transport, error_from_problem
from sigil.issuer.tls import make_csr

__all__ = ["IssuerClient"]


class IssuerClient(Transport):
    """HTTPS client of one issuer URL; ``async with IssuerClient(url, bundle=...) as client:``.

    ``bundle`` is the trust domain's bundle the server's certificate must chain to (the bootstrap bundle before
    the first attestation; the client keeps it current from every bundle it receives afterwards).
    """

    # ------------------------------------------------------------------ agent identity
    async def attest_k8s(
        self, token: str, cluster: str, *, key: PrivateKey | None = None
    ) -> AgentSvid:
        """Attest with the agent's projected ServiceAccount token; the agent SVID is used from then on."""
        key, csr = await self._key_and_csr(key)
        body: contract.AttestK8sRequest = {"token": token, "cluster": cluster, "csr": csr.decode()}
        reply = await self._post(contract.PATH_ATTEST_K8S, body, anonymous=True)
        return await self._adopt(cast(contract.AgentSvidResponse, reply), key)

    async def attest_join_token(self, token: str, *, key: PrivateKey | None = None) -> AgentSvid:
        """Attest with a one-time join token (it is spent by this call, whatever the outcome)."""
        key, csr = await self._key_and_csr(key)
        body: contract.AttestJoinTokenRequest = {"token": token, "csr": csr.decode()}
        reply = await self._post(contract.PATH_ATTEST_JOIN_TOKEN, body, anonymous=True)
        return await self._adopt(cast(contract.AgentSvidResponse, reply), key)

    async def renew(self, *, key: PrivateKey | None = None) -> AgentSvid:
        """A fresh agent SVID over a fresh key, proved by the current one."""
        key, csr = await self._key_and_csr(key)
        body: contract.RenewRequest = {"csr": csr.decode()}
        reply = await self._post(contract.PATH_RENEW, body)
        return await self._adopt(cast(contract.AgentSvidResponse, reply), key)

    async def _key_and_csr(self, key: PrivateKey | None) -> tuple[PrivateKey, bytes]:
        if key is None:
            key = await asyncio.to_thread(generate_key)
        return key, await asyncio.to_thread(make_csr, key)

    async def _adopt(self, reply: contract.AgentSvidResponse, key: PrivateKey) -> AgentSvid:
        agent = AgentSvid(IssuedX509Svid.parse(reply["svid"]), key)
        update = BundleUpdate.parse(reply["bundle"])
        await self.set_bundle(update.bundle)
        await self.set_agent_svid(agent)
        return agent

    # ------------------------------------------------------------------ workload identities
    async def batch_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        """X509-SVIDs for many workloads in one request; each result is SVIDs or that item's refusal."""
        body: contract.X509BatchRequest = {"requests": [r.to_wire() for r in requests]}
        reply = cast(contract.X509BatchResponse, await self._post(contract.PATH_X509_SVIDS, body))
        results = []
        for item in reply["results"]:
            problem = item.get("problem")
            if problem is not None:
                results.append(X509SvidResult(error=error_from_problem(problem)))
            else:
                svids = tuple(IssuedX509Svid.parse(s) for s in item.get("svids", []))
                results.append(X509SvidResult(svids=svids))
        return results

    async def jwt_svid(
        self,
        *,
        audience: Sequence[str],
        pod: contract.PodRef | None = None,
        selectors: Sequence[str] = (),
        spiffe_id: str | None = None,
    ) -> list[IssuedJwtSvid]:
        """JWT-SVIDs for ``audience``: the pod's, or those of the entries ``selectors`` match."""
        body: contract.JwtSvidRequest = {"audience": list(audience)}
        if pod is not None:
            body["pod"] = pod
        if selectors:
            body["selectors"] = list(selectors)
        if spiffe_id is not None:
            body["spiffe_id"] = spiffe_id
        reply = cast(contract.JwtSvidResponse, await self._post(contract.PATH_JWT_SVIDS, body))
        return [IssuedJwtSvid.parse(s) for s in reply["svids"]]

    async def workload_x509_svid(self, token: str, csr: bytes) -> IssuedX509Svid:
        """A workload without an agent: its own projected token and CSR give exactly its own SVID."""
        body: contract.WorkloadX509Request = {"token": token, "csr": csr.decode()}
        reply = await self._post(contract.PATH_WORKLOAD_X509, body, anonymous=True)
        return IssuedX509Svid.parse(cast(contract.X509SvidBody, reply))

    # ------------------------------------------------------------------ feeds
    async def bundle(
        self,
        after_sequence: int | None = None,
        *,
        after_revision: str | None = None,
        wait: float | None = None,
    ) -> BundleUpdate:
        """The bundles now, or (with ``wait``) once they move past ``after_sequence``/``after_revision``.

        The server answers with what it has when ``wait`` seconds pass without a change; compare the revision.
        """
        params: dict[str, str] = {}
        if after_sequence is not None:
            params["after_sequence"] = str(after_sequence)
        if after_revision is not None:
            params["after_revision"] = after_revision
        reply = await self._long_poll(contract.PATH_BUNDLE, params, wait)
        update = BundleUpdate.parse(cast(contract.BundleResponse, reply))
        if not update.bundle.same_content(self._bundle):
            await self.set_bundle(update.bundle)
        return update

    async def policies(
        self,
        after_revision: int | None = None,
        *,
        wait: float | None = None,
        known: Mapping[str, AcceptedPolicy] | None = None,
        held: PolicyUpdate | None = None,
    ) -> PolicyUpdate:
        """The policies in force now, or (with ``wait``) once the revision differs from ``after_revision``.

        The server answers with what it has when ``wait`` seconds pass without a change; compare the revision.
        ``known`` (canonical document -> accepted policy, e.g. the last update's) spares parsing those again.
        ``held`` (the last update) asks for what changed since that set, when its digest checked out: the answer
        is applied to it and checked against the server's digest, and on any mismatch the whole set is fetched
        at once (:mod:`sigil.issuer.client.policy_delta`); either way the update returned is the server's set.
        """
        params: dict[str, str] = {}
        if after_revision is not None:
            params["after_revision"] = str(after_revision)
        if held is not None and held.held is not None:
            params["held_digest"] = held.digest
        reply = await self._long_poll(contract.PATH_POLICIES, params, wait)
        if "base_digest" not in reply:
            return PolicyUpdate.parse(cast(contract.PolicyResponse, reply), known=known)
        try:
            if held is None:
                raise PolicyDeltaError("a delta answer to a request that named no set")
            return apply_delta(held, cast(contract.PolicyDeltaResponse, reply), known=known)
        except (PolicyDeltaError, KeyError, TypeError, ValueError) as err:
            # Malformed or not adding up: the whole set, at once, without naming a base.
            reply = await self._long_poll(contract.PATH_POLICIES, {}, None)
            full = PolicyUpdate.parse(cast(contract.PolicyResponse, reply), known=known)
            return dataclasses.replace(full, delta_refused=str(err))

    async def node_pods(
        self, after_revision: str | None = None, *, wait: float | None = None
    ) -> NodePodsUpdate:
        """The pods of this agent's node now, or (with ``wait``) once they differ from ``after_revision``.

        The node is the one in the agent SVID; the server answers with what it has when ``wait`` seconds pass
        without a change (compare the revision), and refuses an agent attested without Kubernetes.
        """
        params: dict[str, str] = {}
        if after_revision is not None:
            params["after_revision"] = after_revision
        reply = await self._long_poll(contract.PATH_NODE_PODS, params, wait)
        return NodePodsUpdate.parse(cast(contract.NodePodsResponse, reply))
