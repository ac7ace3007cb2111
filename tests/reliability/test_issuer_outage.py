"""Issuer outage drill: the issuer stopped for ten minutes of injected time while an agent serves short SVIDs.

The real issuer and the real node agent share a fake clock (``sigil_testing.agent.agent_world``); workloads ask
through the unmodified py-spiffe client: this process, and processes of their own gid for the other workloads. The
clock moves through the outage in steps of a random few seconds (seeded: ``SIGIL_TEST_DRILL_SEED``) and at each step
the agent does what is due and this workload asks for its SVID: it gets one that is valid at that instant, or
``UNAVAILABLE``, never an expired one. A workload that first asks during the outage gets ``UNAVAILABLE``. When the
issuer returns, every rotation that fell due is done in one batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing
import yaml
from sigil_testing.agent import WORKLOAD_ID, AgentWorld, agent_world
from sigil_testing.drill_figures import drill_rng, record_figures
from sigil_testing.waiting import eventually
from spiffe import WorkloadApiClient
from spiffe.errors import PySpiffeError

from sigil.ca.spiffe_id import SpiffeId
from sigil.node_agent.agent import NodeAgent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.getuid() != 0, reason="the other workloads run with their own gid (needs root)"
    ),
]

_SVID_TTL = timedelta(minutes=4)
_OUTAGE = timedelta(minutes=10)
STEADY_GID, NEWCOMER_GID = 4646, 4747
STEADY_ID = SpiffeId.parse("spiffe://example.org/drill/steady")
NEWCOMER_ID = SpiffeId.parse("spiffe://example.org/drill/newcomer")

_FETCH = r"""
import sys
from spiffe import WorkloadApiClient
try:
    with WorkloadApiClient(socket_path=sys.argv[1], default_timeout=10) as client:
        svid = client.fetch_x509_svid()
        print("ok", svid.spiffe_id, svid.leaf.serial_number)
except Exception as err:  # the parent asserts what it was
    print("fail", type(err).__name__, str(err).replace("\n", " ")[:200])
"""


async def _fetch_as(agent: NodeAgent, gid: int) -> str:
    """One X509-SVID fetch by a workload process of ``gid``: ``ok ID SERIAL`` or ``fail ...``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FETCH,
        agent.endpoint,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "GRPC_POLL_STRATEGY": "poll"},
        group=gid,
        extra_groups=[],
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return out.decode().strip()


def _fetch_mine(agent: NodeAgent) -> tuple[int, datetime] | str:
    """This workload's X509-SVID (serial, not_after) or the refusal's text."""
    try:
        with WorkloadApiClient(socket_path=agent.endpoint, default_timeout=10) as client:
            leaf = client.fetch_x509_svid().leaf
    except PySpiffeError as err:
        return str(err)
    return leaf.serial_number, leaf.not_valid_after_utc


def _patient(world: AgentWorld) -> NodeAgent:
    """An agent that never drops an idle workload."""
    rotation = dataclasses.replace(world.settings().rotation, idle_timeout=timedelta(days=1))
    return world.agent(rotation=rotation)


async def test_ten_minutes_without_the_issuer_serve_no_expired_svid_and_one_batch_catches_up() -> (
    None
):
    """Ten injected minutes of outage: valid SVIDs served while valid, expired never, newcomers UNAVAILABLE, and
    the due rotations of both workloads in one batch on return."""
    rng = drill_rng("issuer-outage")
    outcomes: Counter[str] = Counter()
    async with agent_world(x509_ttl=_SVID_TTL) as world:
        await world.add_entry(STEADY_ID, f"unix:gid:{STEADY_GID}")
        await world.add_entry(NEWCOMER_ID, f"unix:gid:{NEWCOMER_GID}")
        async with _patient(world) as agent:
            mine = await asyncio.to_thread(_fetch_mine, agent)
            assert isinstance(mine, tuple), mine
            assert (await _fetch_as(agent, STEADY_GID)).startswith(f"ok {STEADY_ID}")
            await world.stop_issuer()
            outage_start = world.clock()
            while world.clock() - outage_start < _OUTAGE:
                world.clock.advance(timedelta(seconds=rng.uniform(2, 20)))
                await agent.svid_cache.run_due()
                got = await asyncio.to_thread(_fetch_mine, agent)
                if isinstance(got, str):
                    assert "UNAVAILABLE" in got.upper(), got
                    outcomes["unavailable"] += 1
                    continue
                _serial, not_after = got
                assert not_after > world.clock(), f"an expired SVID was served at {world.clock()}"
                outcomes["served"] += 1
            newcomer = await _fetch_as(agent, NEWCOMER_GID)
            assert newcomer.startswith("fail"), newcomer
            assert "UNAVAILABLE" in newcomer.upper(), newcomer
            # The agent's own log says what each batch it sent was answered for: captured from here on.
            with structlog.testing.capture_logs() as events:
                await world.start_issuer()
                agent.svid_cache.wake()
                await eventually(
                    lambda: _fresh(agent, world),
                    what="a fresh SVID served after the issuer returned",
                    within=30,
                )
            answered = [e["size"] for e in events if e["event"] == "X509-SVID batch answered"]
            assert answered == [2], f"batches sent after the outage, by size: {answered}"
            issued_after = await world.server.issuer.ca.store.journal(spiffe_id=None, limit=100)
            rows = [
                e
                for e in issued_after
                if e.issued_at >= outage_start + _OUTAGE
                and e.spiffe_id in {str(WORKLOAD_ID), str(STEADY_ID)}
            ]
            assert {e.spiffe_id for e in rows} == {str(WORKLOAD_ID), str(STEADY_ID)}, rows
            # One instant for all of them (the steady workload runs as uid 0 too, so it holds both IDs).
            assert len({e.issued_at for e in rows}) == 1, rows
    assert outcomes["served"] > 0, outcomes
    assert outcomes["unavailable"] > 0, outcomes
    print("issuer outage:", dict(outcomes))
    record_figures(
        "issuer_outage",
        outage_minutes=_OUTAGE.total_seconds() / 60,
        expired_svids_served=0,
        fetches_served=outcomes["served"],
        fetches_unavailable=outcomes["unavailable"],
        batches_on_return=1,
    )


async def _fresh(agent: NodeAgent, world: AgentWorld) -> bool:
    # The agent's backoff runs on its clock, which only the test moves: a second at a time, as time would pass.
    world.clock.advance(timedelta(seconds=1))
    await agent.svid_cache.run_due()
    got = await asyncio.to_thread(_fetch_mine, agent)
    return isinstance(got, tuple) and got[1] > world.clock()


def _fetch_bundle_and_svid(endpoint: str) -> tuple[str, str]:
    """The X.509 bundles' trust domains and this workload's SPIFFE ID, or each refusal's text."""
    with WorkloadApiClient(socket_path=endpoint, default_timeout=10) as client:
        try:
            domains = ",".join(
                sorted(b.trust_domain.name for b in client.fetch_x509_bundles().bundles)
            )
        except PySpiffeError as err:
            domains = str(err)
        try:
            return domains, str(client.fetch_x509_svid().spiffe_id)
        except PySpiffeError as err:
            return domains, str(err)


async def _start_agent(world: AgentWorld, config: Path) -> asyncio.subprocess.Process:
    """``sigil-agent run`` as a process; returns once it prints its Workload API endpoint."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sigil.node_agent.cli",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("SIGIL_")},
    )
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the agent did not open its Workload API within 30 s") from None
    assert first.decode().startswith("sigil-agent: Workload API on"), first
    return process


async def test_an_agent_killed_during_the_outage_serves_what_it_kept_and_catches_up() -> None:
    """``sigil-agent`` killed with SIGKILL while the issuer is away starts again without it and answers UNAVAILABLE
    (retry), not a refusal: it keeps no workload SVID on disk, and like SPIRE's agent it serves bundles only to a
    caller it knows an identity of. Once the issuer returns it serves again, on its stored agent SVID."""
    async with agent_world() as world:
        socket_path = world.directory / "drill.sock"
        config = world.directory / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "trust_domain": "example.org",
                    "data_dir": str(world.directory / "state"),
                    "agent": {
                        "socket_path": str(socket_path),
                        "issuer_url": world.url,
                        "trust_bundle_path": str(world.bundle_path),
                        "attestation": {"method": "join_token", "join_token": world.join_token},
                        "rotation": {"backoff_initial": "1s", "backoff_max": "1s"},
                        "log_level": "warning",
                    },
                }
            )
        )
        endpoint = f"unix://{socket_path}"
        agent = await _start_agent(world, config)
        try:
            before = await asyncio.to_thread(_fetch_bundle_and_svid, endpoint)
            assert before == ("example.org", str(WORKLOAD_ID)), before
            await world.stop_issuer()
            agent.kill()
            await agent.wait()
            agent = await _start_agent(world, config)
            during = await asyncio.to_thread(_fetch_bundle_and_svid, endpoint)
            assert all("UNAVAILABLE" in answer.upper() for answer in during), during
            await world.start_issuer()

            async def served() -> bool:
                return (await asyncio.to_thread(_fetch_bundle_and_svid, endpoint))[1] == str(
                    WORKLOAD_ID
                )

            await eventually(served, what="the SVID served once the issuer is back", within=30)
            assert len(await world.attested_agents()) == 1
        finally:
            if agent.returncode is None:
                agent.kill()
            await agent.wait()
    record_figures("agent_restart_during_outage", restarts_tried=1, restarts_survived=1)
