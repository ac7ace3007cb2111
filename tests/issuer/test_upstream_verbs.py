"""``sigil-server upstream prepare|activate|retire|show`` against a running server with real node agents.

Real issuer under an operator's upstream CA, real node agents attested with join tokens and the unmodified py-spiffe
client fetching SVIDs, the verbs run as an operator runs them (through the admin socket), on SQLite and on the
PostgreSQL the suite starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from sigil_testing.ca import UpstreamFiles, write_upstream_ca
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.waiting import eventually
from spiffe import WorkloadApiClient
from spiffe.workloadapi.errors import FetchX509SvidError

from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.cli import main
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import AgentSettings, RotationSettings

ME = SpiffeId.parse(f"spiffe://example.org/local/uid-{os.getuid()}")
_ROTATION = RotationSettings(
    backoff_initial=timedelta(milliseconds=50), bundle_wait=timedelta(seconds=1)
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def old_upstream(short_tmp: Path) -> UpstreamFiles:
    return write_upstream_ca(short_tmp / "upstream-old")


@pytest.fixture
async def server(
    short_tmp: Path, database_url: str, old_upstream: UpstreamFiles
) -> AsyncIterator[IssuerServer]:
    settings = issuer_settings(
        short_tmp / "server",
        database_url=database_url,
        ca_options={"upstream_dir": old_upstream.directory},
        refresh_interval=timedelta(seconds=0.2),
        rotate_interval=timedelta(seconds=0.2),
    )
    async with running_issuer(settings) as running:
        yield running


def _cli(server: IssuerServer, *args: str) -> list[str]:
    return [
        *("--data-dir", str(server.settings.data_dir)),
        *("--admin-socket", str(server.admin_socket)),
        *args,
    ]


async def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _chain(endpoint: Path) -> list[x509.Certificate]:
    with WorkloadApiClient(socket_path=f"unix://{endpoint}", default_timeout=10) as client:
        return list(client.fetch_x509_svid().cert_chain)


def _roots(endpoint: Path) -> set[x509.Certificate]:
    with WorkloadApiClient(socket_path=f"unix://{endpoint}", default_timeout=10) as client:
        return {c for b in client.fetch_x509_bundles().bundles for c in b.x509_authorities}


async def _under(endpoint: Path, intermediate: x509.Certificate) -> bool:
    """True once the workload's SVID chains through ``intermediate`` (retried as a workload retries UNAVAILABLE)."""
    try:
        return intermediate in await asyncio.to_thread(_chain, endpoint)
    except FetchX509SvidError:
        return False


async def _agents(server: IssuerServer, base: Path) -> list[AgentSettings]:
    found = []
    for name in ("a", "b"):
        (base / name).mkdir()
        entries = {ME: [f"unix:uid:{os.getuid()}"]}
        found.append(await enrol_agent(server, base / name, entries, rotation=_ROTATION))
    return found


async def test_agents_follow_an_upstream_rotation_and_the_old_root_leaves_only_when_nothing_chains_to_it(
    server: IssuerServer,
    short_tmp: Path,
    old_upstream: UpstreamFiles,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Prepare puts both roots in every workload's bundle; activate re-issues every workload under the new
    intermediate at once; retire refuses while an SVID minted by hand still chains to the old root, then (forced)
    leaves only the new root in every workload's bundle."""
    new = write_upstream_ca(short_tmp / "upstream-new")
    settings = await _agents(server, short_tmp)
    by_hand = ["x509", "mint", "--spiffe-id", "spiffe://example.org/batch-job", "--ttl", "10m"]
    async with contextlib.AsyncExitStack() as running:
        for one in settings:
            await running.enter_async_context(NodeAgent(one))
            await eventually(
                functools.partial(_under, one.socket_path, old_upstream.intermediate),
                what="an SVID under the old upstream",
                within=20,
            )
        assert (await _run(capsys, *_cli(server, *by_hand)))[0] == 0

        code, out, err = await _run(
            capsys, *_cli(server, "upstream", "prepare", "--dir", str(new.directory))
        )
        assert code == 0, err
        assert "the new root is in the bundle" in out
        for one in settings:

            async def both(endpoint: Path = one.socket_path) -> bool:
                return await asyncio.to_thread(_roots, endpoint) == {old_upstream.root, new.root}

            await eventually(both, what="both roots in the workload's bundle", within=20)

        code, out, err = await _run(capsys, *_cli(server, "upstream", "activate"))
        assert code == 0, err
        assert "due for re-issue" in out
        for one in settings:
            await eventually(
                functools.partial(_under, one.socket_path, new.intermediate),
                what="the workload's SVID re-issued under the new upstream",
                within=20,
            )

        code, out, _ = await _run(capsys, *_cli(server, "upstream", "show"))
        assert code == 0
        shown = [line.split()[0] for line in out.splitlines() if " root " in line[:16]]
        assert shown == ["old", "active"]
        assert f"directory {new.directory}," in out

        async def only_by_hand_left() -> bool:
            code, _, err = await _run(capsys, *_cli(server, "upstream", "retire"))
            assert code == 1
            return "1 unexpired SVID(s)" in err and "no agent (minted by hand" in err

        # Each agent and the server replace theirs on the taint; the SVID minted by hand stays out.
        await eventually(only_by_hand_left, what="only the SVID minted by hand left", within=20)
        assert {old_upstream.root, new.root} <= set(server.issuer.ca.bundle().x509_authorities)

        code, out, err = await _run(capsys, *_cli(server, "upstream", "retire", "--force"))
        assert code == 0, err
        assert "it has left the bundle" in out
        assert "forced: 1 unexpired SVID(s)" in out
        for one in settings:

            async def only_new(endpoint: Path = one.socket_path) -> bool:
                return await asyncio.to_thread(_roots, endpoint) == {new.root}

            await eventually(only_new, what="only the new root in the workload's bundle", within=20)
            assert new.intermediate in await asyncio.to_thread(_chain, one.socket_path)


async def test_retire_and_activate_before_prepare_are_refused(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out of order, each verb says what to run first; prepare without --dir says it needs one."""
    code, _, err = await _run(capsys, *_cli(server, "upstream", "retire"))
    assert (code, "run `upstream activate` first" in err) == (1, True)
    code, _, err = await _run(capsys, *_cli(server, "upstream", "activate"))
    assert (code, "run `upstream prepare --dir DIR`" in err) == (1, True)
    code, _, err = await _run(capsys, *_cli(server, "upstream", "prepare"))
    assert (code, "needs the directory" in err) == (1, True)
    code, out, _ = await _run(capsys, *_cli(server, "upstream", "show"))
    assert (code, "no upstream rotation recorded" in out) == (0, True)
