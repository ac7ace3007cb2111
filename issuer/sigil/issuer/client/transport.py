"""HTTPS to one issuer: SPIFFE server authentication, the agent SVID as client certificate, problems back to errors.

Every call of :class:`~sigil.issuer.client.IssuerClient` goes through :meth:`Transport._request`, so trust is decided
in one place and the SPIFFE way (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#5-validation):
the server's certificate must chain to the trust domain's bundle and carry the server's SPIFFE ID; host names are
not checked. Once the agent holds an agent SVID, every request presents it as the TLS client certificate. An RFC 9457
refusal becomes the issuer's own error class (:func:`error_from_problem`), so the agent catches
``PodOnOtherNodeError`` and not a status code. The bytes travel over :mod:`sigil.issuer.client.http11` (h11 on asyncio
streams), so that the node agent, which imports this client, does not load aiohttp.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import Mapping
from typing import Any, Protocol, cast
from urllib.parse import urlencode

from sigil.ca import reserved_ids
from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.agentapi import contract
from sigil.issuer.client.http11 import ConnectionPool
from sigil.issuer.client.results import AgentSvid
from sigil.issuer.errors import PROBLEMS, IssuerError
from sigil.issuer.tls import client_context, peer_spiffe_id
from sigil.kit import Service

__all__ = ["ProblemReply", "Transport", "error_from_problem", "raise_for_problem"]


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
    if cls is IssuerError and reason in PROBLEMS:
        # A reason of the contract with no IssuerError class of its own (the CA's errors the edge answers:
        # ``datastore_unavailable``, ``malformed_csr``) keeps its name, not the class's ``internal_error``.
        object.__setattr__(error, "reason", reason)
    error.problem = dict(problem)  # type: ignore[attr-defined]
    return error


class ProblemReply(Protocol):
    """What :func:`raise_for_problem` reads of an answer: an aiohttp ``ClientResponse`` or an ``http11.Reply``."""

    @property
    def content_type(self) -> str: ...

    async def json(self, *, content_type: str | None = ...) -> Any: ...

    def raise_for_status(self) -> None: ...


async def raise_for_problem(reply: ProblemReply) -> None:
    """Raise the issuer error an RFC 9457 answer names, or the reply's own error for any other error status."""
    if reply.content_type == contract.PROBLEM_CONTENT_TYPE:
        raise error_from_problem(cast(contract.ProblemBody, await reply.json(content_type=None)))
    reply.raise_for_status()


class Transport(Service):
    """Kept-alive connections to one issuer URL, the TLS context it uses, and the bundle and agent SVID behind it.

    The arguments are :class:`~sigil.issuer.client.IssuerClient`'s, which adds the calls.
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
        self.server_id = server_id or reserved_ids.server_id(bundle.trust_domain)
        self._agent_svid = agent_svid
        self._timeout = timeout
        self._context: tuple[AgentSvid, TrustBundle, ssl.SSLContext] | None = None
        self._pool: ConnectionPool | None = None

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

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

    async def _post(self, path: str, body: Mapping[str, Any], *, anonymous: bool = False) -> Any:
        return await self._request(
            "POST", path, body=json.dumps(body).encode(), anonymous=anonymous
        )

    async def _long_poll(self, path: str, params: dict[str, str], wait: float | None) -> Any:
        """GET ``path``; with ``wait`` the server may hold its answer that long, so the timeout grows by as much."""
        if wait is not None:
            params["wait"] = f"{wait:g}"
        query = f"?{urlencode(params)}" if params else ""
        return await self._request("GET", path + query, extra=wait or 0)

    async def _ssl(self, anonymous: bool) -> tuple[ssl.SSLContext, AgentSvid | None]:
        """The context for one request and the agent SVID it presents (None when anonymous)."""
        # The server's SPIFFE ID is checked in the handshake (the context's ``expect``); _check_server after the
        # reply cannot be relied on alone, since a small reply may arrive after its connection was released.
        agent, bundle = self._agent_svid, self._bundle
        if anonymous or agent is None:
            context = await asyncio.to_thread(
                functools.partial(client_context, bundle, None, expect=self.server_id)
            )
            return context, None
        cached = self._context
        if cached is not None and cached[0] is agent and cached[1] is bundle:
            return cached[2], agent
        identity = (agent.svid.chain, agent.private_key)
        context = await asyncio.to_thread(
            functools.partial(client_context, bundle, identity, expect=self.server_id)
        )
        # Built from what was held when it began: a rotation while it was being built must not be undone by it.
        self._context = (agent, bundle, context)
        return context, agent

    async def _request(
        self,
        method: str,
        target: str,
        *,
        body: bytes = b"",
        anonymous: bool = False,
        extra: float = 0,
    ) -> Any:
        if self._pool is None:
            self._pool = ConnectionPool(self._url)
        context, presented = await self._ssl(anonymous)
        async with asyncio.timeout(self._timeout + extra):
            reply, ssl_object = await self._pool.request(method, target, body=body, context=context)
        self._check_server(ssl_object)
        try:
            await raise_for_problem(reply)
        except IssuerError as err:
            err.presented_serial = (
                None if presented is None else presented.svid.chain[0].serial_number
            )
            raise
        return await reply.json()

    def _check_server(self, ssl_object: ssl.SSLObject | None) -> None:
        if ssl_object is None:
            return  # plain HTTP (tests of the app behind a terminating proxy); nothing to check
        found = peer_spiffe_id(ssl_object)
        if found != self.server_id:
            raise ssl.SSLCertVerificationError(
                f"the server presented SPIFFE ID {found}, not {self.server_id}"
            )
