"""``authority revoke`` refuses to cut SVIDs still in use; ``authority show`` says which, where and until when.

Real issuer, real node agents attested with join tokens, the unmodified py-spiffe client fetching SVIDs, and the
``sigil-server`` verbs run as an operator runs them (through the running server's admin socket), on SQLite and on the
PostgreSQL the suite starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.waiting import eventually
from spiffe import WorkloadApiClient
from spiffe.workloadapi.errors import FetchX509SvidError

from sigil.ca.authority import AuthorityKind, AuthorityStatus
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
async def server(short_tmp: Path, database_url: str) -> AsyncIterator[IssuerServer]:
    settings = issuer_settings(
        short_tmp / "server",
        database_url=database_url,
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


def _fetch_serial(endpoint: Path) -> int:
    with WorkloadApiClient(socket_path=f"unix://{endpoint}", default_timeout=10) as client:
        return client.fetch_x509_svid().leaf.serial_number


async def _fetch(endpoint: Path) -> int:
    """A workload's first fetch, retried as a workload retries UNAVAILABLE (a restarted agent answers UNAVAILABLE
    until its first exchange with the issuer is done)."""

    async def once() -> int | None:
        try:
            return await asyncio.to_thread(_fetch_serial, endpoint)
        except FetchX509SvidError:
            return None

    return await eventually(once, what="an X509-SVID from the agent", within=20, interval=0.2)


def _anchors(endpoint: Path) -> int:
    with WorkloadApiClient(socket_path=f"unix://{endpoint}", default_timeout=10) as client:
        return sum(len(b.x509_authorities) for b in client.fetch_x509_bundles().bundles)


async def _agents(server: IssuerServer, base: Path) -> list[AgentSettings]:
    found = []
    for name in ("a", "b"):
        (base / name).mkdir()
        entries = {ME: [f"unix:uid:{os.getuid()}"]}
        found.append(await enrol_agent(server, base / name, entries, rotation=_ROTATION))
    return found


async def test_revoke_waits_for_every_agent_to_replace_what_the_tainted_authority_signed(
    server: IssuerServer, short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With both agents away after the taint, revoke refuses and names them with their counts and the last expiry;
    once they are back and have re-issued, only the SVID minted by hand remains, and a fresh mint replaces it too."""
    ca = server.issuer.ca
    settings = await _agents(server, short_tmp)
    by_hand = ["x509", "mint", "--spiffe-id", "spiffe://example.org/batch-job", "--ttl", "10m"]
    assert (await _run(capsys, *_cli(server, *by_hand)))[0] == 0
    old = ca.signer(AuthorityKind.X509).authority.authority_id
    async with contextlib.AsyncExitStack() as running:
        for one in settings:
            await running.enter_async_context(NodeAgent(one))
            await _fetch(one.socket_path)
        agent_ids = sorted(a.agent_id for a in await server.issuer.registry.agents())
        for verb in ("prepare", "activate"):
            assert (await _run(capsys, *_cli(server, "authority", verb)))[0] == 0
        # Each agent holds the new anchor before it goes away (else it could not reach the server again).
        for one in settings:

            async def both(endpoint: Path = one.socket_path) -> bool:
                return await asyncio.to_thread(_anchors, endpoint) == 2

            await eventually(both, what="the agent to hold both anchors", within=20)
    code, out, _ = await _run(capsys, *_cli(server, "authority", "taint", "--id", old))
    assert code == 0, out
    server_id = str(server.issuer.serving.spiffe_id)

    async def server_renewed() -> bool:
        return server_id not in (await ca.outstanding(old)).holders

    await eventually(server_renewed, what="the server to renew its own SVID", within=20)

    code, _, err = await _run(capsys, *_cli(server, "authority", "revoke", "--id", old))
    assert code == 1
    assert "not revoked" in err
    assert "--force" in err
    for agent_id in agent_ids:
        assert agent_id in err
    assert "no agent (minted by hand or agentless)" in err
    left = await ca.outstanding(old)
    assert set(left.holders) >= {*agent_ids, ""}
    registry = server.issuer.metrics.registry
    labels = {"kind": "x509", "authority_id": old}
    await eventually(
        lambda: registry.get_sample_value("sigil_authority_unreplaced_svids", labels) == left.count,
        what="the unreplaced-SVID gauge to show the count",
    )
    assert left.last_expiry is not None
    assert f"{left.last_expiry:%Y-%m-%dT%H:%M:%SZ}" in err
    code, out, _ = await _run(capsys, *_cli(server, "authority", "show", "--id", old))
    assert code == 0
    assert f"not yet replaced: {left.count}" in out
    assert all(agent_id in out for agent_id in agent_ids)
    assert any(a.authority_id == old and a.status is AuthorityStatus.OLD for a in ca.authorities())

    # The agents come back and the workloads ask again (as a Workload API stream reconnects); each agent reads the
    # taint on its bundle long poll and renews its own SVID at once.
    async with contextlib.AsyncExitStack() as running:
        for one in settings:
            await running.enter_async_context(NodeAgent(one))
            await _fetch(one.socket_path)

        async def replaced() -> bool:
            return not set(agent_ids) & set((await ca.outstanding(old)).holders)

        await eventually(replaced, what="both agents to replace their SVIDs", within=20)
    left = await ca.outstanding(old)
    assert set(left.holders) == {""}, left.describe()
    assert (await _run(capsys, *_cli(server, "authority", "revoke", "--id", old)))[0] == 1

    assert (await _run(capsys, *_cli(server, *by_hand)))[0] == 0
    code, out, err = await _run(capsys, *_cli(server, "authority", "revoke", "--id", old))
    assert code == 0, err
    assert "revoked" in out
    assert old not in {a.authority_id for a in ca.authorities() if a.in_bundle(ca.now())}


async def test_force_revokes_and_reports_what_it_cut(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``revoke --force`` revokes at once and says how many unreplaced SVIDs stopped verifying."""
    ca = server.issuer.ca
    mint = ["x509", "mint", "--spiffe-id", "spiffe://example.org/batch-job"]
    assert (await _run(capsys, *_cli(server, *mint)))[0] == 0
    old = ca.signer(AuthorityKind.X509).authority.authority_id
    for verb in ("prepare", "activate", "taint"):
        assert (await _run(capsys, *_cli(server, "authority", verb)))[0] == 0
    code, out, err = await _run(
        capsys, *_cli(server, "authority", "revoke", "--force", "--id", old)
    )
    assert code == 0, err
    assert "forced: " in out
    assert "no agent (minted by hand or agentless) (1)" in out
    assert "no longer verify" in out
    revoked = [a for a in ca.authorities() if a.authority_id == old]
    assert revoked[0].status is AuthorityStatus.REVOKED


async def test_show_needs_an_existing_authority(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``authority show`` without --id, or with an unknown one, is refused with what was wrong."""
    code, _, err = await _run(capsys, *_cli(server, "authority", "show"))
    assert code == 2
    assert "needs --id" in err
    code, _, err = await _run(capsys, *_cli(server, "authority", "show", "--id", "nope"))
    assert code == 1
    assert "nope" in err
