"""The node agent's client for the issuer: attestation, renewal, batched SVIDs, JWT-SVIDs and the bundle long poll.

This is the only issuer module the node agent may import (an import-linter contract holds it to that), so it knows
nothing of the server's internals: it speaks :mod:`sigil.issuer.wire` over HTTPS and turns RFC 9457 refusals back
into the issuer's own error classes, so the agent catches ``PodOnOtherNodeError`` and not a status code.

Trust runs the SPIFFE way (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#5-validation): the
server's certificate must chain to the trust domain's bundle and carry the server's SPIFFE ID; host names are not
checked. Once the agent holds an agent SVID, every request presents it as the TLS client certificate.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self, cast

import aiohttp
from cryptography import x509

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import PrivateKey, generate_key
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.errors import PolicyError
from sigil.enforcer.policy import Policy, parse_policy
from sigil.enforcer.policy.schema import Where
from sigil.issuer import wire
from sigil.issuer.errors import PROBLEMS, IssuerError
from sigil.issuer.tls import client_context, make_csr, peer_spiffe_id

__all__ = [
    "AgentSvid",
    "BundleUpdate",
    "IssuedJwtSvid",
    "IssuedX509Svid",
    "IssuerClient",
    "PolicyUpdate",
    "X509SvidRequest",
    "X509SvidResult",
    "error_from_problem",
    "make_csr",
]


@dataclass(frozen=True, slots=True)
class IssuedX509Svid:
    """An X509-SVID the issuer signed over the caller's key (the caller keeps the private key)."""

    spiffe_id: SpiffeId
    chain: tuple[x509.Certificate, ...]
    expires_at: datetime

    @classmethod
    def parse(cls, body: wire.X509SvidBody) -> IssuedX509Svid:
        return cls(
            SpiffeId.parse(body["spiffe_id"]),
            tuple(x509.load_pem_x509_certificates(body["chain_pem"].encode())),
            datetime.fromisoformat(body["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class AgentSvid:
    """The agent's own SVID and its key: the client certificate of every later request."""

    svid: IssuedX509Svid
    private_key: PrivateKey


@dataclass(frozen=True, slots=True)
class IssuedJwtSvid:
    spiffe_id: SpiffeId
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class X509SvidRequest:
    """One workload in a batch: a pod (``namespace``, ``name``, ``uid``) or its selectors, and its CSR (PEM)."""

    csr: bytes
    pod: wire.PodRef | None = None
    selectors: tuple[str, ...] = ()
    spiffe_id: str | None = None

    def to_wire(self) -> wire.X509RequestItem:
        item: wire.X509RequestItem = {"csr": self.csr.decode()}
        if self.pod is not None:
            item["pod"] = self.pod
        if self.selectors:
            item["selectors"] = list(self.selectors)
        if self.spiffe_id is not None:
            item["spiffe_id"] = self.spiffe_id
        return item


@dataclass(frozen=True, slots=True)
class X509SvidResult:
    """The answer for one request of a batch: its SVIDs, or why it was refused."""

    svids: tuple[IssuedX509Svid, ...] = ()
    error: IssuerError | None = None


@dataclass(frozen=True, slots=True)
class BundleUpdate:
    """Own and federated bundles, the tainted authorities, and the revision to wait past next."""

    trust_domain: TrustDomain
    sequence: int
    revision: str
    bundle: TrustBundle
    federated: Mapping[TrustDomain, TrustBundle]
    tainted_authority_ids: frozenset[str]

    @classmethod
    def parse(cls, body: wire.BundleResponse) -> BundleUpdate:
        td = TrustDomain.parse(body["trust_domain"])
        federated = {
            TrustDomain.parse(name): TrustBundle.parse_jwks(TrustDomain.parse(name), _json(doc))
            for name, doc in body["federated"].items()
        }
        return cls(
            td,
            body["sequence"],
            body["revision"],
            TrustBundle.parse_jwks(td, _json(body["bundle"])),
            federated,
            frozenset(body["tainted_authority_ids"]),
        )


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    """The authorization policies in force, parsed, with the revision to wait past next.

    ``documents`` are the resources as the server sent them. A document this client's schema refuses (a server
    newer than the agent) is left out of ``policies`` and reported in ``refused``, never raised: the rest stand.
    """

    revision: int
    digest: str
    policies: tuple[Policy, ...]
    documents: tuple[Mapping[str, Any], ...]
    namespaces: Mapping[str, Mapping[str, str]]
    refused: tuple[PolicyError, ...] = ()

    @classmethod
    def parse(cls, body: wire.PolicyResponse) -> PolicyUpdate:
        policies: list[Policy] = []
        refused: list[PolicyError] = []
        for number, document in enumerate(body["policies"]):
            try:
                policies.append(parse_policy(document, where=Where("issuer", number)))
            except PolicyError as err:
                refused.append(err)
        return cls(
            body["revision"],
            body["digest"],
            tuple(policies),
            tuple(body["policies"]),
            {ns: dict(labels) for ns, labels in body["namespaces"].items()},
            tuple(refused),
        )


def _json(document: Mapping[str, Any]) -> str:
    return json.dumps(document)


def _error_classes(root: type[IssuerError]) -> dict[str, type[IssuerError]]:
    found: dict[str, type[IssuerError]] = {}
    for sub in root.__subclasses__():
        if "reason" in vars(sub):
            found.setdefault(sub.reason, sub)
        found.update(_error_classes(sub))
    return found


def error_from_problem(problem: Mapping[str, Any]) -> IssuerError:
    """The issuer error class a problem's ``reason`` names, carrying the server's ``detail`` and the problem.

    Leaf fields (``namespace``, ``pod_name``, ...) are not on the wire; ``detail`` says them in words. A reason this
    client does not know becomes a plain :class:`IssuerError`.
    """
    reason = str(problem.get("reason", ""))
    cls = (
        _error_classes(IssuerError).get(reason, IssuerError) if reason in PROBLEMS else IssuerError
    )
    error = cls.__new__(cls)
    IssuerError.__init__(error, str(problem.get("detail") or problem.get("title") or reason))
    error.problem = dict(problem)  # type: ignore[attr-defined]
    return error


class IssuerClient:
    """HTTPS client of one issuer URL; ``async with IssuerClient(url, bundle=...) as client:``.

    ``bundle`` is the trust domain's bundle the server's certificate must chain to (the bootstrap bundle before
    the first attestation; the client keeps it current from every bundle it receives afterwards).
    """

    def __init__(
        self,
        url: str,
        *,
        bundle: TrustBundle,
        server_id: SpiffeId | None = None,
        agent_svid: AgentSvid | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._url = url.rstrip("/")
        self._bundle = bundle
        self.server_id = server_id or bundle.trust_domain.spiffe_id("sigil", "server")
        self._agent_svid = agent_svid
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def agent_svid(self) -> AgentSvid | None:
        return self._agent_svid

    @property
    def trust_bundle(self) -> TrustBundle:
        return self._bundle

    async def set_agent_svid(self, agent_svid: AgentSvid | None) -> None:
        """Present ``agent_svid`` from the next request on (the agent's rotation calls this)."""
        self._agent_svid = agent_svid
        self._context = None

    async def set_bundle(self, bundle: TrustBundle) -> None:
        """Verify the server against ``bundle`` from the next request on."""
        self._bundle = bundle
        self._context = None

    # ------------------------------------------------------------------ agent identity
    async def attest_k8s(
        self, token: str, cluster: str, *, key: PrivateKey | None = None
    ) -> AgentSvid:
        """Attest with the agent's projected ServiceAccount token; the agent SVID is used from then on."""
        key, csr = await self._key_and_csr(key)
        body: wire.AttestK8sRequest = {"token": token, "cluster": cluster, "csr": csr.decode()}
        reply = await self._post(wire.PATH_ATTEST_K8S, body, anonymous=True)
        return await self._adopt(cast(wire.AgentSvidResponse, reply), key)

    async def attest_join_token(self, token: str, *, key: PrivateKey | None = None) -> AgentSvid:
        """Attest with a one-time join token (it is spent by this call, whatever the outcome)."""
        key, csr = await self._key_and_csr(key)
        body: wire.AttestJoinTokenRequest = {"token": token, "csr": csr.decode()}
        reply = await self._post(wire.PATH_ATTEST_JOIN_TOKEN, body, anonymous=True)
        return await self._adopt(cast(wire.AgentSvidResponse, reply), key)

    async def renew(self, *, key: PrivateKey | None = None) -> AgentSvid:
        """A fresh agent SVID over a fresh key, proved by the current one."""
        key, csr = await self._key_and_csr(key)
        body: wire.RenewRequest = {"csr": csr.decode()}
        reply = await self._post(wire.PATH_RENEW, body)
        return await self._adopt(cast(wire.AgentSvidResponse, reply), key)

    async def _key_and_csr(self, key: PrivateKey | None) -> tuple[PrivateKey, bytes]:
        if key is None:
            key = await asyncio.to_thread(generate_key)
        return key, await asyncio.to_thread(make_csr, key)

    async def _adopt(self, reply: wire.AgentSvidResponse, key: PrivateKey) -> AgentSvid:
        agent = AgentSvid(IssuedX509Svid.parse(reply["svid"]), key)
        update = BundleUpdate.parse(reply["bundle"])
        await self.set_bundle(update.bundle)
        await self.set_agent_svid(agent)
        return agent

    # ------------------------------------------------------------------ workload identities
    async def batch_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        """X509-SVIDs for many workloads in one request; each result is SVIDs or that item's refusal."""
        body: wire.X509BatchRequest = {"requests": [r.to_wire() for r in requests]}
        reply = cast(wire.X509BatchResponse, await self._post(wire.PATH_X509_SVIDS, body))
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
        pod: wire.PodRef | None = None,
        selectors: Sequence[str] = (),
        spiffe_id: str | None = None,
    ) -> list[IssuedJwtSvid]:
        """JWT-SVIDs for ``audience``: the pod's, or those of the entries ``selectors`` match."""
        body: wire.JwtSvidRequest = {"audience": list(audience)}
        if pod is not None:
            body["pod"] = pod
        if selectors:
            body["selectors"] = list(selectors)
        if spiffe_id is not None:
            body["spiffe_id"] = spiffe_id
        reply = cast(wire.JwtSvidResponse, await self._post(wire.PATH_JWT_SVIDS, body))
        return [
            IssuedJwtSvid(
                SpiffeId.parse(s["spiffe_id"]), s["token"], datetime.fromisoformat(s["expires_at"])
            )
            for s in reply["svids"]
        ]

    async def workload_x509_svid(self, token: str, csr: bytes) -> IssuedX509Svid:
        """A workload without an agent: its own projected token and CSR give exactly its own SVID."""
        body: wire.WorkloadX509Request = {"token": token, "csr": csr.decode()}
        reply = await self._post(wire.PATH_WORKLOAD_X509, body, anonymous=True)
        return IssuedX509Svid.parse(cast(wire.X509SvidBody, reply))

    # ------------------------------------------------------------------ bundles
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
        if wait is not None:
            params["wait"] = f"{wait:g}"
        reply = await self._request("GET", wire.PATH_BUNDLE, params=params, extra=wait or 0)
        update = BundleUpdate.parse(cast(wire.BundleResponse, reply))
        if not update.bundle.same_content(self._bundle):
            await self.set_bundle(update.bundle)
        return update

    # ------------------------------------------------------------------ policies
    async def policies(
        self, after_revision: int | None = None, *, wait: float | None = None
    ) -> PolicyUpdate:
        """The policies in force now, or (with ``wait``) once the revision differs from ``after_revision``.

        The server answers with what it has when ``wait`` seconds pass without a change; compare the revision.
        """
        params: dict[str, str] = {}
        if after_revision is not None:
            params["after_revision"] = str(after_revision)
        if wait is not None:
            params["wait"] = f"{wait:g}"
        reply = await self._request("GET", wire.PATH_POLICIES, params=params, extra=wait or 0)
        return PolicyUpdate.parse(cast(wire.PolicyResponse, reply))

    # ------------------------------------------------------------------ transport
    async def _post(self, path: str, body: Mapping[str, Any], *, anonymous: bool = False) -> Any:
        return await self._request("POST", path, json=body, anonymous=anonymous)

    async def _ssl(self, anonymous: bool) -> ssl.SSLContext:
        # The server's SPIFFE ID is checked in the handshake (the context's ``expect``); _check_server after the
        # reply cannot be relied on alone, since a small reply may arrive after its connection was released.
        if anonymous or self._agent_svid is None:
            return await asyncio.to_thread(
                functools.partial(client_context, self._bundle, None, expect=self.server_id)
            )
        if self._context is None:
            identity = (self._agent_svid.svid.chain, self._agent_svid.private_key)
            self._context = await asyncio.to_thread(
                functools.partial(client_context, self._bundle, identity, expect=self.server_id)
            )
        return self._context

    async def _request(
        self,
        method: str,
        path: str,
        *,
        anonymous: bool = False,
        extra: float = 0,
        **kwargs: Any,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        context = await self._ssl(anonymous)
        timeout = aiohttp.ClientTimeout(total=self._timeout + extra)
        async with self._session.request(
            method, self._url + path, ssl=context, timeout=timeout, **kwargs
        ) as reply:
            self._check_server(reply)
            if reply.content_type == wire.PROBLEM_CONTENT_TYPE:
                raise error_from_problem(
                    cast(wire.ProblemBody, await reply.json(content_type=None))
                )
            reply.raise_for_status()
            return await reply.json()

    def _check_server(self, reply: aiohttp.ClientResponse) -> None:
        connection = reply.connection
        transport = connection.transport if connection is not None else None
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return  # plain HTTP (tests of the app behind a terminating proxy); nothing to check
        found = peer_spiffe_id(ssl_object)
        if found != self.server_id:
            raise ssl.SSLCertVerificationError(
                f"the server presented SPIFFE ID {found}, not {self.server_id}"
            )
