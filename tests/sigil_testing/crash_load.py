"""What runs against a server while the crash drill kills it: an agent issuing batches, and an operator rotating.

The agent asks for batches of :data:`BATCH` X509-SVIDs and one JWT-SVID at a time and keeps every SVID it was
answered (those must verify after any restart); the operator walks each authority kind through SPIRE's manual cycle
(prepare, activate, taint, revoke) through the admin API, the way ``sigil-server authority`` does. Both run until
the drill kills the server; what was in flight then is recorded, so the report can say where the kills landed.
Failures while the server is up are kept too: a refusal the server owes no one (``internal_error``) fails the drill.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.admin import SocketAdmin
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.client.results import IssuedJwtSvid, IssuedX509Svid
from sigil.issuer.errors import IssuerError
from sigil_testing.server_process import TRUST_DOMAIN, ServerProcess

__all__ = ["AUDIENCE", "BATCH", "SELECTOR", "WORKLOAD_ID", "Issued", "Load", "next_step"]

#: Every batch asks for this many SVIDs, so a journal group of another size is a half-written batch.
BATCH = 5
WORKLOAD_ID = SpiffeId.parse("spiffe://example.org/drill/workload")
SELECTOR = "unix:uid:4343"
AUDIENCE = "crash-drill"
# The admin client speaks aiohttp over the admin socket; the issuer client's failures are OSError or TimeoutError.
_TRANSPORT = (aiohttp.ClientError, OSError, TimeoutError)


@dataclass
class Issued:
    """Every SVID the server answered with, by holder (the agent that asked)."""

    x509: list[tuple[str, IssuedX509Svid]] = field(default_factory=list)
    jwt: list[tuple[str, IssuedJwtSvid]] = field(default_factory=list)
    #: Unexpected refusals while the server was up, by reason.
    refusals: Counter[str] = field(default_factory=Counter)
    #: The operation in flight at each kill ("x509 prepare", "batch", ...).
    killed_during: Counter[str] = field(default_factory=Counter)
    steps_done: Counter[str] = field(default_factory=Counter)
    #: Steps asked of the server, counted before the call: the server may act on one before it answers.
    steps_begun: Counter[str] = field(default_factory=Counter)
    #: Agents whose own SVID's authority the operator revoked under them (an expected refusal).
    agents_cut: int = 0


def next_step(authorities: list[dict[str, object]], kind: str) -> tuple[str, str | None]:
    """The operator's next step for ``kind``: activate what is prepared, taint what is old, revoke what is
    tainted, else prepare."""
    mine = [a for a in authorities if a["kind"] == kind and a["status"] != "revoked"]
    for status, tainted, verb in (
        ("prepared", False, "activate"),
        ("old", False, "taint"),
        ("old", True, "revoke"),
    ):
        for authority in mine:
            if authority["status"] == status and authority["tainted"] is tainted:
                return verb, str(authority["authority_id"])
    return "prepare", None


class Load:
    """The agent and the operator against one server, until the drill kills it (:meth:`note_kill` first, so that
    the connection errors that follow end them quietly) or cancels them."""

    def __init__(self, server: ServerProcess, issued: Issued, rng: random.Random) -> None:
        self._server = server
        self._issued = issued
        self._rng = rng
        self._csr = make_csr(generate_key())
        self.in_flight: dict[str, str] = {}
        self.killed = False

    async def agent(self) -> None:
        """Attest with a fresh join token, then ask for batches until the server goes away."""
        try:
            await self._agent()
        except _TRANSPORT:
            if not self.killed:
                raise

    async def _agent(self) -> None:
        self.in_flight["agent"] = "attest"
        async with SocketAdmin(self._server.admin_socket) as admin:
            token = await admin.generate_token(600)
            await admin.create_entry(str(WORKLOAD_ID), token["agent_id"], [SELECTOR], [])
            bundle = TrustBundle.parse_jwks(TRUST_DOMAIN, await admin.bundle("spiffe"))
        holder = str(token["agent_id"])
        async with IssuerClient(self._server.url, bundle=bundle, timeout=10) as client:
            await client.attest_join_token(token["token"])
            while True:
                revokes = self._revokes_begun()
                try:
                    self.in_flight["agent"] = "batch"
                    results = await client.batch_x509_svids(
                        [X509SvidRequest(self._csr, selectors=(SELECTOR,))] * BATCH
                    )
                    for result in results:
                        if result.error is not None:
                            self._refused(result.error)
                        self._issued.x509.extend((holder, svid) for svid in result.svids)
                    self.in_flight["agent"] = "jwt"
                    for svid in await client.jwt_svid(audience=[AUDIENCE], selectors=[SELECTOR]):
                        self._issued.jwt.append((holder, svid))
                except _TRANSPORT:
                    if self._revokes_begun() == revokes:
                        raise
                    # The authority that signed its SVID was just revoked (--force): on a new connection the
                    # server's TLS handshake, which checks client certificates against the current bundle,
                    # fails before any refusal can be answered; or the server's own certificate moved to an
                    # authority prepared after this agent read its bundle (a real agent follows the bundle
                    # feed; this one does not). It attests afresh.
                    self._issued.agents_cut += 1
                    return
                except IssuerError as err:
                    if err.reason == "agent_svid_invalid":
                        # The operator revoked (--force) the authority that signed its SVID: the next round
                        # attests afresh.
                        self._issued.agents_cut += 1
                        return
                    self._refused(err)
                    await asyncio.sleep(0.05)

    async def operator(self) -> None:
        """Take the next step of a kind picked at random, a random short pause between steps."""
        try:
            await self._operator()
        except _TRANSPORT:
            if not self.killed:
                raise

    async def _operator(self) -> None:
        async with SocketAdmin(self._server.admin_socket) as admin:
            while True:
                kind = self._rng.choice(["x509", "jwt"])
                try:
                    verb, authority_id = next_step(await admin.authorities(), kind)
                    self.in_flight["operator"] = f"{kind} {verb}"
                    self._issued.steps_begun[f"{kind} {verb}"] += 1
                    await admin.authority_step(verb, kind, authority_id, force=verb == "revoke")
                    self._issued.steps_done[f"{kind} {verb}"] += 1
                    self.in_flight["operator"] = "idle"
                except IssuerError as err:
                    self._refused(err)
                await asyncio.sleep(self._rng.uniform(0, 0.01))

    def _revokes_begun(self) -> int:
        """x509 revokes asked of the server, answered or not: it may act on one before it answers (found on a
        slow machine: the agent's next handshake failed before the operator had its answer)."""
        return self._issued.steps_begun["x509 revoke"]

    def _refused(self, err: IssuerError) -> None:
        if not self.killed:
            self._issued.refusals[err.reason] += 1

    def note_kill(self) -> None:
        self.killed = True
        for operation in self.in_flight.values():
            self._issued.killed_during[operation] += 1
