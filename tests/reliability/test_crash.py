"""Crash drill: the real ``sigil-server run`` killed with SIGKILL while it rotates authorities and issues batches.

Each round starts the server (a process of its own), attests a fresh agent that asks for batches of SVIDs, lets an
operator walk the authorities through prepare, activate, taint and revoke, and kills the server at a random moment
(seeded: ``SIGIL_TEST_DRILL_SEED``; more rounds with ``SIGIL_TEST_DRILL_SCALE``). After each restart the invariants of
:mod:`sigil_testing.crash_checks` must hold: no authority key lost or torn (0600), the bundle holds every authority
it should, every SVID answered before the kill verifies, the journal has no half-written batch. Rotation then goes
on: a full cycle of both kinds with no kill. The default run is 30 kills on SQLite and 20 on PostgreSQL, plus 5 of
one replica of two on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from sigil_testing.crash_checks import Findings, check_after_restart
from sigil_testing.crash_load import Issued, Load, next_step
from sigil_testing.drill_figures import drill_count, drill_rng, record_figures
from sigil_testing.server_process import ServerProcess

from sigil.issuer.admin import SocketAdmin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def _round(server: ServerProcess, issued: Issued, rng: random.Random) -> None:
    """Load the server, kill it at a random moment, start it again."""
    load = Load(server, issued, rng)
    tasks = [asyncio.create_task(load.agent()), asyncio.create_task(load.operator())]
    await asyncio.wait(tasks, timeout=rng.uniform(0.05, 1.2))
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise AssertionError(f"the load failed before the kill:\n{server.log_tail()}") from (
                task.exception()
            )
    assert server.exited() is None, f"the server died by itself:\n{server.log_tail()}"
    load.note_kill()
    await server.kill()
    await asyncio.gather(*tasks)
    await server.start()


async def _full_cycle(server: ServerProcess) -> None:
    """Rotation goes on: each kind through prepare, activate, taint and revoke, from wherever it was left."""
    async with SocketAdmin(server.admin_socket) as admin:
        for kind in ("x509", "jwt"):
            seen: list[str] = []
            while len(seen) < 4 or seen[-1] != "revoke":
                verb, authority_id = next_step(await admin.authorities(), kind)
                await admin.authority_step(verb, kind, authority_id, force=verb == "revoke")
                seen.append(verb)
                assert len(seen) <= 8, seen


def _assert_sound(found: Findings, kill: int, server: ServerProcess) -> None:
    assert not found.problems, f"after kill {kill}: {found.problems}\n{server.log_tail()}"


async def _drill(server: ServerProcess, kills: int, rng: random.Random) -> tuple[Issued, Findings]:
    issued = Issued()
    await server.start()
    try:
        found = Findings()
        verified = 0
        for kill in range(1, kills + 1):
            await _round(server, issued, rng)
            found = await check_after_restart(server, issued)
            _assert_sound(found, kill, server)
            verified += found.svids_verified
        await _full_cycle(server)
        _assert_sound(await check_after_restart(server, issued), kills, server)
    finally:
        await server.stop()
    assert not issued.refusals, issued.refusals
    # An SVID verified after some restart (the operator's forced revokes cut the others on purpose).
    assert verified > 0, f"no SVID was left to verify after any of {kills} restarts"
    return issued, found


def _report(name: str, kills: int, issued: Issued, found: Findings) -> None:
    figures = {
        "kills_tried": kills,
        "kills_survived": kills,
        "svids_answered": len(issued.x509) + len(issued.jwt),
        "svids_verified_after_last_restart": found.svids_verified,
        "svids_cut_by_forced_revoke": found.svids_cut_by_revoke,
        "killed_during": dict(issued.killed_during),
        "steps_done": dict(issued.steps_done),
        "stray_temporary_key_files": found.stray_temporary_files,
    }
    print(name, figures)
    record_figures(name, **figures)


async def test_sqlite_server_survives_kills_during_rotation_and_issuance(
    tmp_path: Path, short_tmp: Path
) -> None:
    """Killed 30 times at random points of rotation and issuance on SQLite, it comes back sound every time."""
    kills = drill_count(30)
    server = ServerProcess(tmp_path / "sqlite", short_tmp)
    issued, found = await _drill(server, kills, drill_rng("crash-sqlite"))
    _report("crash_sqlite", kills, issued, found)


@pytest.mark.postgres
async def test_postgres_server_survives_kills_during_rotation_and_issuance(
    tmp_path: Path, short_tmp: Path, postgres_url: str
) -> None:
    """Killed 20 times at random points of rotation and issuance on PostgreSQL (keys sealed in it), it comes back
    sound every time."""
    kills = drill_count(20)
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    server = ServerProcess(tmp_path / "pg", short_tmp, database_url=postgres_url, kek=kek)
    issued, found = await _drill(server, kills, drill_rng("crash-postgres"))
    _report("crash_postgres", kills, issued, found)
