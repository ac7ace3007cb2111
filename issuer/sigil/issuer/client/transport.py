"""HTTPS to one issuer: SPIFFE server authentication, the agent SVID as client certificate, problems back to errors.

Every call of :class:`~sigil.issuer.client.IssuerClient` goes through :meth:`Transport._request`, so trust is decided
in one place and the SPIFFE way (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#5-validation):
the server's certificate must chain to the trust domain's bundle and carry the server's SPIFFE ID; host names are
not checked. Once the agent holds an agent SVID, every request presents it as the TLS client certificate. An RFC 9457
refusal becomes the issuer's own error class (:func:`error_from_problem`), so the agent catches
``PodOnOtherNodeError`` and not a status code.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Mapping
from typing import Any, cast

import aiohttp

from sigil.ca import reserved_ids
from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.agentapi import contract
from sigil.issuer.client.results import AgentSvid
from sigil.issuer.errors import PROBLEMS, IssuerError
from sigil.issuer.tls import client_context, peer_spiffe_id
from sigil.kit import Service

__all__ = ["Transport", "error_from_problem", "raise_for_problem"]


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


async def raise_for_problem(reply: aiohttp.ClientResponse) -> None:
    """Raise the issuer error an RFC 9457 answer names, or aiohttp's for any other error status."""
    if reply.content_type == contract.PROBLEM_CONTENT_TYPE:
        raise error_from_problem(cast(contract.ProblemBody, await reply.json(content_type=None)))
    reply.raise_for_status()


class Transport(Service):
    """One aiohttp session to one issuer URL, the TLS context it uses, and the bundle and agent SVID behind it.

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
        self._context: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

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

    async def _post(self, path: str, body: Mapping[str, Any], *, anonymous: bool = False) -> Any:
        return await self._request("POST", path, json=body, anonymous=anonymous)

    async def _long_poll(self, path: str, params: dict[str, str], wait: float | None) -> Any:
        """GET ``path``; with ``wait`` the server may hold its answer that long, so the timeout grows by as much."""
        if wait is not None:
            params["wait"] = f"{wait:g}"
        return await self._request("GET", path, params=params, extra=wait or 0)

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
            await raise_for_problem(reply)
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
