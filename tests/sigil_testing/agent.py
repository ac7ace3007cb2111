"""A node agent's world for its tests: the real issuer (``sigil.issuer``) on a fake clock, and the agent's files.

The agent's tests need more of the issuer than a running server: to see what it was asked, to take it away and bring
it back on the same port while the clock moves, and to make it answer a batch item "not now". All of that is done
with the real issuer, the way an operator or a monitoring system would see or do it:

- what was issued is read from the CA's SVID journal in the datastore (one row per SVID minted), refusals from the
  issuer's Prometheus counter ``sigil_refusals`` and attestations from its agent list (``sigil-server agent list``);
- away and back: the server is stopped and opened again over the same data directory and the same port, the
  restart path an operator takes;
- "not now" for every batch item: the registration entries table becomes unreadable under the running issuer
  (:meth:`AgentWorld.entries_unreadable`), a real database failure, which the issuer answers per item as
  ``datastore_unavailable`` while the agent's own record still authenticates it;
- a taint: the admin API on the server's socket (``sigil-server authority prepare|activate|taint``), with the
  pause after ``prepare`` that the server needs to trust the new authority on its listener.

The issuer, its CA and the agent share one :class:`~sigil_testing.clock.FakeClock`.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sigil.ca.reserved_ids import join_agent_id, reserved_path
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.admin.client import SocketAdmin
from sigil.issuer.datastore.agentrecords import AttestedAgent
from sigil.issuer.edge.assembly import close_issuer, open_issuer
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings import ServerSettings
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import AgentSettings, AttestationSettings, RotationSettings
from sigil_testing.clock import FakeClock
from sigil_testing.issuer import issuer_settings
from sigil_testing.network import free_port
from sigil_testing.paths import new_short_directory
from sigil_testing.waiting import eventually

__all__ = ["WORKLOAD_ID", "AgentWorld", "agent_world"]

#: The identity ``agent_world`` gives this test process.
WORKLOAD_ID = SpiffeId.parse("spiffe://example.org/workload/me")

#: The issuer's table of registration entries (``sigil.issuer.datastore`` migration i0001).
_ENTRIES_TABLE = "registration_entries"


@dataclass
class AgentWorld:
    """The real issuer on a fake clock, one join token for an agent, and where that agent keeps its files."""

    clock: FakeClock
    directory: Path
    server_settings: ServerSettings
    #: The join token the agent attests with, and the agent ID it attests as (entries are parented to it).
    join_token: str
    agent_id: SpiffeId
    #: The lifetime of the workload X509-SVIDs the world's entries grant (JWT-SVIDs get an hour).
    x509_ttl: timedelta = timedelta(hours=1)
    _server: IssuerServer | None = None
    _registry: CollectorRegistry | None = None

    @property
    def server(self) -> IssuerServer:
        """The running issuer (an error while it is away)."""
        if self._server is None:
            raise RuntimeError("the issuer is stopped")
        return self._server

    @property
    def url(self) -> str:
        """The issuer's URL, the same across a stop and a start."""
        return f"https://127.0.0.1:{self.server_settings.server.port}"

    async def start_issuer(self) -> None:
        """Open the issuer over the world's data directory and serve on the world's port."""
        self._registry = CollectorRegistry()
        issuer = await open_issuer(self.server_settings, registry=self._registry, clock=self.clock)
        server = IssuerServer(issuer, shutdown_timeout=0.5)
        try:
            await server.start()
        except BaseException:
            await close_issuer(issuer)
            raise
        self._server = server

    async def stop_issuer(self) -> None:
        """Stop serving and close the issuer, as a stopped ``sigil-server`` would be: the issuer is away."""
        server, self._server = self._server, None
        if server is not None:
            await server.aclose()
            await close_issuer(server.issuer)

    async def add_entry(self, spiffe_id: SpiffeId, *selectors: str) -> None:
        """Entitle this world's agent's workloads showing all of ``selectors`` to ``spiffe_id``."""
        issuer = self.server.issuer
        await issuer.registry.create_entry(
            spiffe_id,
            self.agent_id,
            list(selectors),
            now=issuer.ca.now(),
            x509_svid_ttl=self.x509_ttl,
            jwt_svid_ttl=timedelta(hours=1),
        )

    async def remove_entries(self) -> None:
        """Delete every registration entry (``sigil-server entry delete`` of each)."""
        registry = self.server.issuer.registry
        for entry in await registry.entries():
            await registry.delete_entry(entry.entry_id)

    @contextmanager
    def entries_unreadable(self) -> Iterator[None]:
        """The registration entries table is gone from the database until the block ends (renamed away and back).

        The issuer reads the agent's own record first (it is still there, so the agent is authenticated) and the
        entries for each batch item, so every item is answered ``datastore_unavailable`` rather than the request.
        """
        database = self.server_settings.data_dir / "datastore.sqlite3"
        aside = f"{_ENTRIES_TABLE}_aside"
        with sqlite3.connect(database) as connection:
            connection.execute(f"ALTER TABLE {_ENTRIES_TABLE} RENAME TO {aside}")
        try:
            yield
        finally:
            with sqlite3.connect(database) as connection:
                connection.execute(f"ALTER TABLE {aside} RENAME TO {_ENTRIES_TABLE}")

    async def workload_svids_issued(self, kind: str = "x509") -> int:
        """How many workload SVIDs of ``kind`` (x509, jwt) the CA's journal records (agent and server SVIDs not)."""
        journal = await self.server.issuer.ca.store.journal(limit=100_000)
        return sum(
            1
            for entry in journal
            if entry.kind == kind and reserved_path(SpiffeId.parse(entry.spiffe_id)) is None
        )

    def refusals(self, reason: str) -> float:
        """The issuer's ``sigil_refusals`` counter for ``reason`` since it last started."""
        assert self._registry is not None
        value = self._registry.get_sample_value("sigil_refusals_total", {"reason": reason})
        return value or 0.0

    async def attested_agents(self) -> list[AttestedAgent]:
        """The issuer's agent list (one record per attestation; a restart that reuses its SVID adds none)."""
        return list(await self.server.issuer.registry.agents())

    async def taint_current_x509_authority(self) -> str:
        """Prepare, activate and taint through the admin socket, as an operator would; returns the tainted ID."""
        async with SocketAdmin(self.server.admin_socket) as admin:
            (old,) = [
                a
                for a in await admin.authorities()
                if a["kind"] == "x509" and a["status"] == "active"
            ]
            await admin.authority_step("prepare", "x509", None)
            # As an operator lets time pass between prepare and activate: the server's refresh loop (about a
            # second) puts the new authority in its listener's trust store before any agent holds an SVID of it.
            serving = self.server.issuer.serving
            await eventually(
                lambda: not serving.due(self.clock()),
                what="the listener trusting the new authority",
            )
            await admin.authority_step("activate", "x509", None)
            await admin.authority_step("taint", "x509", old["authority_id"])
        return str(old["authority_id"])

    @property
    def bundle_path(self) -> Path:
        """The bootstrap bundle (PEM) an operator would hand the agent."""
        return self.directory / "bootstrap.pem"

    def settings(self, **overrides: Any) -> AgentSettings:
        """Agent settings for this world: join token, bootstrap bundle, socket and state under the directory."""
        values: dict[str, Any] = {
            "trust_domain": self.server_settings.ca.trust_domain,
            "issuer_url": self.url,
            "data_dir": self.directory / "agent",
            "socket_path": self.directory / "agent.sock",
            "trust_bundle_path": self.bundle_path,
            "attestation": AttestationSettings(method="join_token", join_token=self.join_token),
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
    """The real issuer (entries granting X509-SVIDs of ``x509_ttl`` and JWT-SVIDs of an hour, agent SVIDs of twelve
    hours) with a join token for one agent, entitling this process's uid to WORKLOAD_ID under that agent."""
    directory = new_short_directory("sga-")
    # TLS checks certificates against real time, the issuer mints them at the fake clock's. Starting 45 minutes
    # behind, what the issuer mints while a test moves the clock by up to an hour is valid for real TLS: its own
    # SVID (four hours, never due for renewal in a test) also when it starts again 40 minutes on.
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=45))
    settings = issuer_settings(
        directory / "server",
        # A week of journal grace: tests count what was issued from the journal over simulated hours, and the
        # rotator's tick (real time) would otherwise prune rows expired an hour ago whenever the machine is slow
        # enough for it to run (found as a flake: 201 of at least 280 rotations counted under the full suite).
        ca_options={"x509_svid_ttl": timedelta(hours=4), "journal_grace": timedelta(days=7)},
        port=free_port(),
        agent_svid_ttl=timedelta(hours=12),
    )
    # The token and the agent ID it attests as are known once the issuer runs (the token is in its database).
    world = AgentWorld(
        clock, directory, settings, join_token="", agent_id=WORKLOAD_ID, x509_ttl=x509_ttl
    )
    try:
        await world.start_issuer()
        issuer = world.server.issuer
        token = await issuer.registry.generate_join_token(ttl=timedelta(hours=1), now=clock())
        world.bundle_path.write_bytes(issuer.ca.bundle().to_pem())
        world.join_token = token.token
        world.agent_id = join_agent_id(issuer.ca.settings.trust_domain, token.agent_suffix)
        if entitle_me:
            await world.add_entry(WORKLOAD_ID, f"unix:uid:{os.getuid()}")
        yield world
    finally:
        await world.stop_issuer()
        settings.admin_socket.parent.rmdir()
        shutil.rmtree(directory, ignore_errors=True)
