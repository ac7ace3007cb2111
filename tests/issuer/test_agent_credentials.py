"""An agent's credential is checked on every request: no resumed or kept-alive connection outlives it.

These speak HTTP over Python's own ``ssl`` sockets (``http.client`` on a socket this module wraps), so a test can
hold one connection open across requests, or resume a TLS session, exactly as an attacker's client would.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.clock import FakeClock
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer

from sigil.ca.authority import AuthorityKind
from sigil.ca.keys import generate_key
from sigil.issuer.agentapi import contract
from sigil.issuer.client import AgentSvid, IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import AgentSvidSupersededError
from sigil.issuer.tls import client_context


@pytest.fixture
def wall() -> FakeClock:
    """The clock the issuer and its CA read."""
    return FakeClock()


@pytest.fixture
async def server(tmp_path: Path, wall: FakeClock) -> AsyncIterator[IssuerServer]:
    """A running issuer on a fake clock, agent SVIDs living five minutes."""
    settings = issuer_settings(tmp_path / "data", agent_svid_ttl=timedelta(minutes=5))
    async with running_issuer(settings, clock=wall) as running:
        yield running


@dataclass
class Reply:
    """What a raw client saw: the HTTP status, the problem's reason (if any), and whether TLS resumed."""

    status: int
    reason: str
    reused: bool


class RawAgent:
    """One TLS connection to the issuer with an agent SVID, over which requests go one after another."""

    def __init__(
        self, port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls = context.wrap_socket(raw, session=session)
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.http.sock = self.tls  # keep-alive on this very socket; never a silent reconnect

    def ask(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        payload = json.dumps(body) if body is not None else None
        self.http.request(method, path, body=payload, headers=headers)
        reply = self.http.getresponse()
        data = reply.read()
        reason = ""
        if reply.headers.get_content_type() == contract.PROBLEM_CONTENT_TYPE:
            reason = json.loads(data)["reason"]
        assert self.http.sock is self.tls
        return Reply(reply.status, reason, bool(self.tls.session_reused))

    def close(self) -> None:
        self.http.close()


def _context(server: IssuerServer, agent: AgentSvid, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = client_context(server.issuer.ca.bundle(), (agent.svid.chain, agent.private_key))
    context.maximum_version = version
    return context


def _csr() -> bytes:
    return make_csr(generate_key())


def _renew_body() -> dict[str, Any]:
    return {"csr": _csr().decode()}


def _call_resumed(port: int, context: ssl.SSLContext, session: ssl.SSLSession) -> Reply | OSError:
    try:
        agent = RawAgent(port, context, session)
        try:
            return agent.ask("POST", contract.PATH_RENEW, _renew_body())
        finally:
            agent.close()
    except (ssl.SSLError, ConnectionError) as err:
        # TLS 1.3 finishes the client's side of the handshake before the server has judged its certificate,
        # so the server's refusal may show as an alert or as the connection closing before any answer.
        return err


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_resumed_session_does_not_renew_an_agent_whose_authority_was_revoked(
    server: IssuerServer, version: ssl.TLSVersion
) -> None:
    """Resuming a TLS session from before the agent's authority was tainted and revoked gets no fresh SVID."""
    ca = server.issuer.ca
    (old,) = ca.authorities(AuthorityKind.X509)
    new = await ca.prepare(
        AuthorityKind.X509
    )  # the client trusts both, so only its own SVID is in question
    async with attested_agent(server) as client:
        assert client.agent_svid is not None
        context = _context(server, client.agent_svid, version)
    first = await asyncio.to_thread(RawAgent, server.port, context)
    try:
        assert (await asyncio.to_thread(first.ask, "GET", contract.PATH_BUNDLE)).status == 200
        session = first.tls.session
    finally:
        first.close()
    assert session is not None
    await ca.activate(AuthorityKind.X509, new.authority_id)
    await ca.taint(AuthorityKind.X509, old.authority_id)
    await ca.revoke(AuthorityKind.X509, old.authority_id, force=True)
    await server.issuer.serving.renew()  # what the next tick does after a bundle change

    outcome = await asyncio.to_thread(_call_resumed, server.port, context, session)

    if isinstance(outcome, Reply):
        assert (outcome.status, outcome.reason) == (401, "agent_svid_invalid")
        if version is ssl.TLSVersion.TLSv1_3:
            assert not outcome.reused  # no session tickets are handed out
    else:
        assert isinstance(
            outcome, ssl.SSLError | ConnectionError
        )  # a full handshake: the anchor is gone


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_the_issuer_never_resumes_a_tls_session(
    server: IssuerServer, version: ssl.TLSVersion
) -> None:
    """A client offering its previous session gets a full handshake, so its certificate is proved again."""
    async with attested_agent(server) as client:
        assert client.agent_svid is not None
        context = _context(server, client.agent_svid, version)
    first = await asyncio.to_thread(RawAgent, server.port, context)
    try:
        await asyncio.to_thread(first.ask, "GET", contract.PATH_BUNDLE)
        session = first.tls.session
    finally:
        first.close()
    second = await asyncio.to_thread(RawAgent, server.port, context, session)
    try:
        reply = await asyncio.to_thread(second.ask, "GET", contract.PATH_BUNDLE)
    finally:
        second.close()
    assert (reply.status, reply.reused) == (200, False)


async def test_a_kept_alive_connection_is_refused_once_the_agent_svid_expires(
    server: IssuerServer, wall: FakeClock
) -> None:
    """The next request on a connection opened with a live agent SVID is refused once that SVID has expired."""
    async with attested_agent(server) as client:
        assert client.agent_svid is not None
        context = _context(server, client.agent_svid, ssl.TLSVersion.TLSv1_3)
    agent = await asyncio.to_thread(RawAgent, server.port, context)
    try:
        assert (await asyncio.to_thread(agent.ask, "GET", contract.PATH_BUNDLE)).status == 200
        wall.advance(timedelta(minutes=6))
        expired = await asyncio.to_thread(agent.ask, "POST", contract.PATH_RENEW, _renew_body())
    finally:
        agent.close()
    assert (expired.status, expired.reason) == (401, "agent_svid_invalid")


async def test_a_kept_alive_connection_is_refused_once_the_agents_authority_is_revoked(
    server: IssuerServer,
) -> None:
    """Revoking the authority that signed an agent's SVID refuses the next request on its open connection."""
    ca = server.issuer.ca
    (old,) = ca.authorities(AuthorityKind.X509)
    async with attested_agent(server) as client:
        assert client.agent_svid is not None
        context = _context(server, client.agent_svid, ssl.TLSVersion.TLSv1_3)
    agent = await asyncio.to_thread(RawAgent, server.port, context)
    try:
        assert (await asyncio.to_thread(agent.ask, "GET", contract.PATH_BUNDLE)).status == 200
        new = await ca.prepare(AuthorityKind.X509)
        await ca.activate(AuthorityKind.X509, new.authority_id)
        await ca.taint(AuthorityKind.X509, old.authority_id)
        await ca.revoke(AuthorityKind.X509, old.authority_id, force=True)
        refused = await asyncio.to_thread(agent.ask, "GET", contract.PATH_BUNDLE)
    finally:
        agent.close()
    assert (refused.status, refused.reason) == (401, "agent_svid_invalid")


def _copy_of(server: IssuerServer, agent: IssuerClient) -> IssuerClient:
    """Another client holding the very same agent SVID and key (a stolen copy)."""
    return IssuerClient(server.url, bundle=agent.trust_bundle, agent_svid=agent.agent_svid)


async def test_a_copied_agent_svid_is_refused_once_the_real_agent_used_its_renewal(
    server: IssuerServer,
) -> None:
    """A stolen copy of an agent SVID stops working for renewal and every call once the agent's new SVID is used."""
    async with attested_agent(server) as real, _copy_of(server, real) as copy:
        await real.renew()
        await copy.bundle()  # the old SVID still works until its successor has been presented
        await real.bundle()
        with pytest.raises(AgentSvidSupersededError) as renewing:
            await copy.renew()
        with pytest.raises(AgentSvidSupersededError):
            await copy.bundle()
        with pytest.raises(AgentSvidSupersededError):
            await copy.batch_x509_svids([X509SvidRequest(_csr(), selectors=("unix:uid:1",))])
        await real.renew()
        await real.bundle()
    assert renewing.value.problem["status"] == 401  # type: ignore[attr-defined]
    assert renewing.value.problem["reason"] == "agent_svid_superseded"  # type: ignore[attr-defined]
