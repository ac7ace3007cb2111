"""A real issuer (SQLite, no Kubernetes) served for a whole fuzz module, an attested agent, and raw HTTP to both
of its listeners: the main one over mutual TLS with the agent's SVID, and the admin API on its Unix socket.

Requests are sent as bytes, not through :class:`~sigil.issuer.client.IssuerClient`: the client only builds
well-formed bodies, and the point here is the ones it never would.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from fuzz.background import BackgroundLoop
from prometheus_client import CollectorRegistry
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer

from sigil.ca.keys import generate_key
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import PROBLEMS
from sigil.issuer.tls import client_context, make_csr

__all__ = ["Answer", "IssuerWorld", "issuer_world"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, content type and the body parsed as JSON (None when it is not JSON)."""

    status: int
    content_type: str
    body: Any

    def assert_refusal_or_success(self) -> None:
        """A 2xx, or a problem document whose stable reason has that status in the one table; never a 5xx
        other than a refusal the table gives 503 (this issuer has no Kubernetes, so some routes are
        ``unavailable``)."""
        if 200 <= self.status < 300:
            return
        assert self.content_type == "application/problem+json", (self.status, self.body)
        assert isinstance(self.body, dict), self.body
        reason = self.body.get("reason")
        assert isinstance(reason, str), self.body
        assert reason in PROBLEMS, self.body
        assert reason != "internal_error", self.body
        assert PROBLEMS[reason].status == self.status, self.body
        assert self.status < 500 or reason in {"unavailable", "kubernetes_unavailable"}, self.body


@dataclass
class IssuerWorld:
    loop: BackgroundLoop
    server: IssuerServer
    agent_tls: ssl.SSLContext
    anonymous_tls: ssl.SSLContext
    registry: CollectorRegistry
    csr: str

    @property
    def admin_socket(self) -> Path:
        return self.server.admin_socket

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        query: Mapping[str, str] | None = None,
        agent: bool = True,
        admin: bool = False,
    ) -> Answer:
        """One request on the main listener (as the agent, or anonymous) or on the admin socket."""
        return self.loop.run(self._send(method, path, body, query=query, agent=agent, admin=admin))

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        query: Mapping[str, str] | None,
        agent: bool,
        admin: bool,
    ) -> Answer:
        if admin:
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=str(self.admin_socket))
            url, context = "http://sigil" + path, None
        else:
            connector = aiohttp.TCPConnector()
            url = self.server.url + path
            context = self.agent_tls if agent else self.anonymous_tls
        headers = {"Content-Type": "application/json"} if body is not None else {}
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.request(
                method, url, data=body, params=query, headers=headers, ssl=context or True
            ) as reply,
        ):
            raw = await reply.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            return Answer(reply.status, reply.content_type, parsed)

    def issued(self) -> float:
        """SVIDs issued so far, all kinds (the state a refused request must not move)."""
        total = 0.0
        for metric in self.registry.collect():
            if metric.name == "sigil_svids_issued":
                total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        return total


@contextmanager
def issuer_world(data_dir: Path) -> Iterator[IssuerWorld]:
    """The running issuer, an agent attested with a join token, and TLS contexts for both kinds of caller."""
    registry = CollectorRegistry()
    settings = issuer_settings(
        data_dir,
        rate_per_second=1e6,
        rate_burst=1e6,
        long_poll_max=timedelta(milliseconds=50),
        client_max_size=256 * 1024,
    )
    with BackgroundLoop() as loop:
        server = loop.enter(running_issuer(settings, registry=registry))
        client = loop.enter(attested_agent(server))
        svid = client.agent_svid
        assert svid is not None
        bundle, server_id = server.issuer.ca.bundle(), client.server_id
        identity = (svid.svid.chain, svid.private_key)
        yield IssuerWorld(
            loop=loop,
            server=server,
            agent_tls=client_context(bundle, identity, expect=server_id),
            anonymous_tls=client_context(bundle, None, expect=server_id),
            registry=registry,
            csr=make_csr(generate_key()).decode(),
        )
