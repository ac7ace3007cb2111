"""A database that fails under a running issuer: every request it breaks is answered as a problem, never a bare 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.issuer import attested_agent, client_for, issuer_settings, running_issuer
from sqlalchemy import text

from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import IssuerError


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    """An issuer on its embedded SQLite datastore, no Kubernetes."""
    async with running_issuer(issuer_settings(tmp_path / "data")) as running:
        yield running


async def _drop(server: IssuerServer, table: str) -> None:
    async with server.issuer.ca.store.engine.begin() as connection:
        await connection.execute(text(f"DROP TABLE {table}"))


async def test_a_mint_whose_journal_write_fails_is_a_503_problem(server: IssuerServer) -> None:
    """With the SVID journal gone, an agent's renewal is refused as 503 ``datastore_unavailable`` in
    problem+json, and the database's own words stay in the server's log."""
    async with attested_agent(server) as agent:
        await _drop(server, "svid_journal")
        with pytest.raises(IssuerError) as refused:
            await agent.renew()
    problem = refused.value.problem  # type: ignore[attr-defined]
    assert (problem["status"], problem["reason"]) == (503, "datastore_unavailable")
    assert problem["detail"] == "Datastore unavailable"


async def test_a_failing_issuer_table_is_a_503_problem(server: IssuerServer) -> None:
    """With the join-token table gone, attestation is refused as 503 ``datastore_unavailable``, not a bare 500."""
    await _drop(server, "join_tokens")
    async with client_for(server) as client:
        with pytest.raises(IssuerError) as refused:
            await client.attest_join_token("any-token")
    problem = refused.value.problem  # type: ignore[attr-defined]
    assert (problem["status"], problem["reason"]) == (503, "datastore_unavailable")
