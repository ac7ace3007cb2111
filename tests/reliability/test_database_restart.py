"""Database restart drill: the PostgreSQL under two issuer replicas stopped and started during steady issuance.

The test's own PostgreSQL (not the session's, which other tests share) is stopped the way an operator's restart does
it (``pg_ctl stop -m fast``) for a random second or three (seeded: ``SIGIL_TEST_DRILL_SEED``), three times (more with
``SIGIL_TEST_DRILL_SCALE``), while an agent of each replica asks for batches back to back. While it is down every
request is answered, within the client's timeout, 503 ``datastore_unavailable``: never a 500, never a hang. When it
is back each replica serves again by itself, and the journal holds exactly the SVIDs that were answered.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.drill_figures import drill_count, drill_rng, record_figures
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer
from sigil_testing.postgres import temporary_database
from sigil_testing.postgres_private import PrivatePostgres
from sigil_testing.waiting import eventually
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from sigil.ca.datastore.models import JournalRow
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import IssuerError

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

WORKLOAD_ID = SpiffeId.parse("spiffe://example.org/drill/steady")
_SELECTOR = "unix:uid:4545"
_BATCH = 4
#: The agents' request timeout: an answer later than this is a hang.
_TIMEOUT = 10.0
#: The node agent's default request timeout (sigil.issuer.client's), which a frozen database must not reach.
_AGENT_TIMEOUT = 30.0


@dataclass
class Outcomes:
    """What each request got, by phase (``up``, ``down``, ``back``)."""

    phase: str = "up"
    answers: dict[str, Counter[str]] = field(default_factory=dict)
    serials: list[str] = field(default_factory=list)
    holders: set[str] = field(default_factory=set)
    ok_since_back: Counter[str] = field(default_factory=Counter)
    #: Set to end the agents' loops after the request each has in flight (a cancelled request may be journaled
    #: and never read, which the journal check would count as lost).
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, replica: str, outcome: str) -> None:
        self.answers.setdefault(self.phase, Counter())[outcome] += 1
        if self.phase == "back" and outcome == "ok":
            self.ok_since_back[replica] += 1


async def _steady(server: IssuerServer, name: str, outcomes: Outcomes) -> None:
    """An agent of ``server`` asking for batches back to back until ``outcomes.stopping``."""
    csr = make_csr(generate_key())
    async with attested_agent(server) as bootstrap:
        assert bootstrap.agent_svid is not None
        agent_id = bootstrap.agent_svid.svid.spiffe_id
        outcomes.holders.add(str(agent_id))
        await server.issuer.registry.create_entry(
            WORKLOAD_ID, agent_id, [_SELECTOR], now=server.issuer.ca.now()
        )
        async with IssuerClient(
            server.url,
            bundle=server.issuer.ca.bundle(),
            agent_svid=bootstrap.agent_svid,
            timeout=_TIMEOUT,
        ) as agent:
            while not outcomes.stopping.is_set():
                try:
                    results = await agent.batch_x509_svids(
                        [X509SvidRequest(csr, selectors=(_SELECTOR,))] * _BATCH
                    )
                except IssuerError as err:
                    outcomes.note(name, f"{int(err.status)} {err.reason}")
                except (OSError, TimeoutError) as err:
                    outcomes.note(name, f"no answer: {type(err).__name__}")
                else:
                    for result in results:
                        if result.error is not None:
                            outcomes.note(name, f"item {result.error.reason}")
                        for svid in result.svids:
                            outcomes.serials.append(format(svid.chain[0].serial_number, "032x"))
                    if all(r.error is None for r in results):
                        outcomes.note(name, "ok")
                await asyncio.sleep(0.02)


async def _journal(url: str, outcomes: Outcomes) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(JournalRow))).all()
    finally:
        await engine.dispose()
    return [
        r.serial for r in rows if r.holder in outcomes.holders and r.spiffe_id == str(WORKLOAD_ID)
    ]


async def test_two_replicas_answer_503_while_postgres_restarts_and_resume_by_themselves(
    tmp_path: Path,
) -> None:
    """Three PostgreSQL restarts under two replicas: 503s while down, service back by itself, journal exact."""
    restarts = drill_count(3)
    rng = drill_rng("database-restart")
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    ca_options = {"key_store": "database", "key_encryption_key_file": kek}
    outcomes = Outcomes()
    recoveries: list[float] = []
    with PrivatePostgres() as pg:
        async with temporary_database(pg.admin_dsn) as url:
            settings = [
                issuer_settings(
                    tmp_path / name,
                    database_url=url,
                    ca_options=ca_options,
                    refresh_interval=timedelta(milliseconds=500),
                )
                for name in ("a", "b")
            ]
            async with running_issuer(settings[0]) as a, running_issuer(settings[1]) as b:
                loops = [
                    asyncio.create_task(_steady(server, name, outcomes))
                    for server, name in ((a, "a"), (b, "b"))
                ]
                try:
                    for restart in range(restarts):
                        outcomes.phase = "up"
                        wanted = 10 * (restart + 1)

                        def steady(wanted: int = wanted) -> bool:
                            return outcomes.answers.get("up", Counter())["ok"] >= wanted

                        await eventually(
                            steady,
                            what="steady issuance before the restart",
                            within=30,
                        )
                        outcomes.phase = "down"
                        await asyncio.to_thread(pg.stop)
                        await asyncio.sleep(rng.uniform(1.0, 3.0))
                        await asyncio.to_thread(pg.start)
                        outcomes.phase, outcomes.ok_since_back = "back", Counter()
                        back = time.monotonic()
                        await eventually(
                            lambda: len(outcomes.ok_since_back) == 2,
                            what=f"both replicas serving after restart {restart + 1}: {outcomes.answers}",
                            within=30,
                        )
                        recoveries.append(time.monotonic() - back)
                        for task in loops:
                            assert not task.done(), task
                finally:
                    outcomes.stopping.set()
                    done, _ = await asyncio.wait(loops, timeout=2 * _TIMEOUT)
                    for task in loops:
                        task.cancel()
                    await asyncio.gather(*loops, return_exceptions=True)
                for task in loops:
                    assert task in done, task
                    assert task.exception() is None, task
            journaled = await _journal(url, outcomes)
    print("database restart outcomes:", outcomes.answers, "recoveries (s):", recoveries)
    down = outcomes.answers.get("down", Counter())
    assert down, "no request was made while the database was down"
    assert set(down) <= {"ok", "503 datastore_unavailable", "item datastore_unavailable"}, down
    assert all(
        outcome in {"ok", "503 datastore_unavailable", "item datastore_unavailable"}
        for phase in outcomes.answers.values()
        for outcome in phase
    ), outcomes.answers
    assert len(outcomes.serials) == len(set(outcomes.serials)), "an SVID serial was answered twice"
    assert sorted(journaled) == sorted(outcomes.serials), "the journal and the answers differ"
    record_figures(
        "database_restart",
        restarts_tried=restarts,
        restarts_survived=restarts,
        requests_while_down=sum(down.values()),
        answers_while_down=dict(down),
        recovery_seconds=[round(r, 2) for r in recoveries],
    )


async def test_a_frozen_database_is_answered_503_within_the_agents_timeout(tmp_path: Path) -> None:
    """PostgreSQL frozen (SIGSTOP: connections open, nothing answers, as on a paused host): a request is answered
    503 ``datastore_unavailable`` before the agent's own timeout, and served again once it thaws. (It hung until
    the client gave up, for want of statement and connect timeouts on the datastore.)"""
    with PrivatePostgres() as pg:
        async with (
            temporary_database(pg.admin_dsn) as url,
            running_issuer(issuer_settings(tmp_path / "a", database_url=url)) as server,
            attested_agent(server) as agent,
        ):
            await agent.renew()
            pg.freeze()
            try:
                with pytest.raises(IssuerError) as refused:
                    await asyncio.wait_for(agent.renew(), _AGENT_TIMEOUT)
            finally:
                pg.thaw()
            assert (refused.value.status, refused.value.reason) == (
                503,
                "datastore_unavailable",
            )

            async def renews() -> bool:
                try:
                    await agent.renew()
                except IssuerError:
                    return False
                return True

            await eventually(renews, what="renewal once the database thawed", within=30)
    record_figures("database_freeze", frozen_requests_answered_503=1)
