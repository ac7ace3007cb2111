"""A small issuer that speaks the wire contract (``sigil.issuer.agentapi.contract``) over real HTTPS, for the agent's tests.

It stands in for ``sigil-server`` while the node agent is tested: a real aiohttp server with a server SVID
(``spiffe://example.org/sigil/server``) from a real Sigil CA, asking for (and, on renewal, requiring) the agent's
SVID as the TLS client certificate, so the agent's :class:`~sigil.issuer.client.IssuerClient` runs unmodified.
Registration entries are (selectors, SPIFFE ID); a batch item gets an SVID for every entry whose selectors it shows.
It counts what it was asked, can be stopped and started again on the same port, and long-polls bundles.

Agent tests that need none of that run against the real issuer (``sigil_testing.enrolment.enrol_agent``, as
``test_health.py``, ``test_guards.py`` and ``test_agent_real_issuer.py`` do). What still uses this, and why:
``test_svid_manager.py`` (every batch item refused as ``unavailable`` on demand, batch sizes counted),
``test_agent_end_to_end.py`` and ``test_agent_cli.py`` (the issuer away and back on the same port while a fake
clock moves, attestations counted).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from sigil.ca.authority import AuthorityKind
from sigil.ca.csr import parse_csr
from sigil.ca.errors import SigilError
from sigil.ca.keys import generate_key
from sigil.ca.service import CertificateAuthority, X509Request
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.ca.x509svid import X509Svid
from sigil.issuer.agentapi import contract
from sigil.issuer.tls import load_identity
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import AgentSettings, AttestationSettings, RotationSettings
from sigil_testing.ca import open_ca
from sigil_testing.clock import FakeClock
from sigil_testing.network import free_port
from sigil_testing.paths import new_short_directory

__all__ = ["WORKLOAD_ID", "AgentWorld", "FakeIssuer", "IssuerCounts", "agent_world"]


@dataclass
class IssuerCounts:
    """What the issuer was asked, by kind."""

    attestations: int = 0
    renewals: int = 0
    x509_batches: int = 0
    x509_items: int = 0
    jwt_requests: int = 0
    bundle_requests: int = 0
    batch_sizes: list[int] = field(default_factory=list)


def _problem(status: int, reason: str, detail: str) -> web.Response:
    body: contract.ProblemBody = {
        "type": "about:blank",
        "title": reason,
        "status": status,
        "detail": detail,
        "reason": reason,
    }
    return web.json_response(body, status=status, content_type=contract.PROBLEM_CONTENT_TYPE)


def _svid_body(svid: X509Svid) -> contract.X509SvidBody:
    return {
        "spiffe_id": str(svid.spiffe_id),
        "chain_pem": svid.chain_pem().decode(),
        "expires_at": svid.not_after.isoformat(),
        "signer_ids": [svid.authority_id],
    }


class FakeIssuer:
    """``async with FakeIssuer(ca) as issuer:`` serves on 127.0.0.1 at :attr:`url` until the block ends."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        join_tokens: Sequence[str] = ("join-me",),
        agent_ttl: timedelta = timedelta(hours=12),
        jwt_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.ca = ca
        self.counts = IssuerCounts()
        self.entries: list[tuple[frozenset[str], SpiffeId]] = []
        #: When set, every batch item is answered with a problem of this reason (say, ``unavailable``).
        self.item_problem: str | None = None
        self._join_tokens = set(join_tokens)
        self._agent_ttl = agent_ttl
        self._jwt_ttl = jwt_ttl
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._server_context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    def add_entry(self, spiffe_id: SpiffeId, *selectors: str) -> None:
        """Entitle callers showing all of ``selectors`` to ``spiffe_id``."""
        self.entries.append((frozenset(selectors), spiffe_id))

    async def __aenter__(self) -> FakeIssuer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (again, on the same port after :meth:`stop`)."""
        if self._server_context is None:
            self._server_context = await self._make_context()
        app = web.Application()
        app.router.add_post(contract.PATH_ATTEST_JOIN_TOKEN, self._attest)
        app.router.add_post(contract.PATH_RENEW, self._renew)
        app.router.add_post(contract.PATH_X509_SVIDS, self._x509)
        app.router.add_post(contract.PATH_JWT_SVIDS, self._jwt)
        app.router.add_get(contract.PATH_BUNDLE, self._bundle)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        if self._port == 0:
            self._port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", self._port, ssl_context=self._server_context)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        """Close the listener and every connection: the issuer is away."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _make_context(self) -> ssl.SSLContext:
        key = generate_key()
        (svid,) = await self.ca.mint_x509_svids(
            [
                X509Request(
                    self.ca.settings.trust_domain.spiffe_id("sigil", "server"),
                    public_key=key.public_key(),
                    ttl=timedelta(hours=20),
                )
            ]
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        load_identity(context, svid.chain, key)
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=self.ca.bundle().to_pem().decode())
        return context

    def bundle_response(self) -> contract.BundleResponse:
        bundle = self.ca.bundle()
        tainted = sorted(self.ca.tainted_authority_ids())
        digest = hashlib.sha256(bundle.to_json() + "\n".join(tainted).encode())
        return {
            "trust_domain": self.ca.settings.trust_domain.name,
            "sequence": bundle.sequence,
            "revision": digest.hexdigest()[:32],
            "bundle": bundle.to_jwks(),
            "federated": {},
            "tainted_authority_ids": tainted,
        }

    async def taint_current_x509_authority(self) -> str:
        """Rotate the X.509 authority (prepare, activate) and taint the old one; returns the tainted ID."""
        (old,) = [a for a in self.ca.authorities(AuthorityKind.X509) if a.status.value == "active"]
        new = await self.ca.prepare(AuthorityKind.X509)
        await self.ca.activate(AuthorityKind.X509, new.authority_id)
        await self.ca.taint(AuthorityKind.X509, old.authority_id)
        if self._server_context is not None:
            # Agents renewed by the new authority must still pass the client-certificate check.
            self._server_context.load_verify_locations(cadata=self.ca.bundle().to_pem().decode())
        return old.authority_id

    # -- handlers -----------------------------------------------------------------------------------------

    async def _agent_svid(self, agent: SpiffeId, csr: str) -> web.Response:
        _, public_key = parse_csr(csr.encode())
        (svid,) = await self.ca.mint_x509_svids(
            [X509Request(agent, public_key=public_key, ttl=self._agent_ttl)]
        )
        body: contract.AgentSvidResponse = {
            "svid": _svid_body(svid),
            "bundle": self.bundle_response(),
        }
        return web.json_response(body)

    async def _attest(self, request: web.Request) -> web.Response:
        document: dict[str, Any] = await request.json()
        token = document["token"]
        if token not in self._join_tokens:
            return _problem(401, "join_token_invalid", "join token invalid or spent")
        self._join_tokens.discard(token)
        self.counts.attestations += 1
        suffix = hashlib.sha256(token.encode()).hexdigest()[:16]
        agent = self.ca.settings.trust_domain.spiffe_id("sigil", "agent", "join", suffix)
        return await self._agent_svid(agent, document["csr"])

    async def _renew(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if not peer:
            return _problem(401, "client_certificate_required", "present the agent SVID")
        document: dict[str, Any] = await request.json()
        self.counts.renewals += 1
        agent = self.ca.settings.trust_domain.spiffe_id("sigil", "agent", "renewed")
        return await self._agent_svid(agent, document["csr"])

    def _matching(self, selectors: Sequence[str]) -> list[SpiffeId]:
        shown = frozenset(selectors)
        return [spiffe_id for required, spiffe_id in self.entries if required <= shown]

    async def _x509(self, request: web.Request) -> web.Response:
        document: contract.X509BatchRequest = await request.json()
        items = document["requests"]
        self.counts.x509_batches += 1
        self.counts.x509_items += len(items)
        self.counts.batch_sizes.append(len(items))
        results: list[contract.X509ResultItem] = []
        for item in items:
            ids = self._matching(item.get("selectors", []))
            if self.item_problem is not None:
                results.append({"problem": {**self._not_entitled(), "reason": self.item_problem}})
                continue
            if not ids:
                results.append({"problem": self._not_entitled()})
                continue
            _, public_key = parse_csr(item["csr"].encode())
            minted = await self.ca.mint_x509_svids(
                [X509Request(spiffe_id, public_key=public_key) for spiffe_id in ids]
            )
            results.append({"svids": [_svid_body(svid) for svid in minted]})
        body: contract.X509BatchResponse = {"results": results}
        return web.json_response(body)

    def _not_entitled(self) -> contract.ProblemBody:
        return {
            "type": "about:blank",
            "title": "Not entitled",
            "status": 403,
            "detail": "no entry matches",
            "reason": "not_entitled",
        }

    async def _jwt(self, request: web.Request) -> web.Response:
        document: contract.JwtSvidRequest = await request.json()
        self.counts.jwt_requests += 1
        ids = self._matching(document.get("selectors", []))
        wanted = document.get("spiffe_id")
        ids = [i for i in ids if wanted is None or str(i) == wanted]
        if not ids:
            return _problem(403, "not_entitled", "no entry matches")
        svids: list[contract.JwtSvidBody] = []
        for spiffe_id in ids:
            try:
                token = await self.ca.mint_jwt_svid(
                    spiffe_id, audience=document["audience"], ttl=self._jwt_ttl
                )
            except SigilError as err:
                return _problem(503, "unavailable", str(err))
            svids.append(
                {
                    "spiffe_id": str(spiffe_id),
                    "token": token.token,
                    "expires_at": token.expiry.isoformat(),
                }
            )
        body: contract.JwtSvidResponse = {"svids": svids}
        return web.json_response(body)

    async def _bundle(self, request: web.Request) -> web.Response:
        self.counts.bundle_requests += 1
        after = request.query.get("after_revision")
        wait = float(request.query.get("wait", "0"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        response = self.bundle_response()
        # Poll the CA's state until it moves past ``after`` or the wait is over (good enough for tests).
        while after is not None and response["revision"] == after and loop.time() < deadline:
            await asyncio.sleep(0.02)
            response = self.bundle_response()
        return web.json_response(response)


@dataclass
class AgentWorld:
    """A CA on a fake clock, a fake issuer in front of it, and where an agent of it keeps its files."""

    clock: FakeClock
    ca: CertificateAuthority
    issuer: FakeIssuer
    directory: Path

    @property
    def bundle_path(self) -> Path:
        """The bootstrap bundle (PEM) an operator would hand the agent."""
        path = self.directory / "bootstrap.pem"
        if not path.exists():
            path.write_bytes(self.ca.bundle().to_pem())
        return path

    def settings(self, **overrides: Any) -> AgentSettings:
        """Agent settings for this world: join token, bootstrap bundle, socket and state under the directory."""
        values: dict[str, Any] = {
            "trust_domain": self.ca.settings.trust_domain,
            "issuer_url": self.issuer.url,
            "data_dir": self.directory / "agent",
            "socket_path": self.directory / "agent.sock",
            "trust_bundle_path": self.bundle_path,
            "attestation": AttestationSettings(method="join_token", join_token="join-me"),
            "rotation": RotationSettings(
                batch_window=timedelta(milliseconds=20),
                backoff_initial=timedelta(milliseconds=50),
                backoff_max=timedelta(milliseconds=200),
                bundle_wait=timedelta(seconds=1),
            ),
        }
        values.update(overrides)
        return AgentSettings(**values)

    def agent(self, **overrides: Any) -> NodeAgent:
        """A node agent on the world's clock with a seeded jitter source."""
        return NodeAgent(self.settings(**overrides), clock=self.clock, rng=random.Random(7))  # noqa: S311 -- test jitter


@asynccontextmanager
async def agent_world(
    *, x509_ttl: timedelta = timedelta(hours=1), entitle_me: bool = True
) -> AsyncIterator[AgentWorld]:
    """A running fake issuer (SVIDs of ``x509_ttl``) entitling this process's uid to WORKLOAD_ID."""
    directory = new_short_directory("sga-")
    # Ten minutes in the past: certificates minted as the test moves the clock stay valid for real TLS.
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    ca = await open_ca(
        directory / "ca", clock, x509_svid_ttl=x509_ttl, trust_domain=TrustDomain("example.org")
    )
    try:
        async with FakeIssuer(ca) as issuer:
            if entitle_me:
                issuer.add_entry(WORKLOAD_ID, f"unix:uid:{os.getuid()}")
            yield AgentWorld(clock, ca, issuer, directory)
    finally:
        await ca.aclose()
        shutil.rmtree(directory, ignore_errors=True)


#: The identity ``agent_world`` gives this test process.
WORKLOAD_ID = SpiffeId.parse("spiffe://example.org/workload/me")
