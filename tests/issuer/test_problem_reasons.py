"""A client raises every refusal under the reason the server answered, also the CA's reasons without an error class.

Found by the disk drill (tests/reliability/test_disk.py): batches refused 503 ``datastore_unavailable`` on a full
disk reached the client as ``internal_error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer
from sqlalchemy import text

from sigil.ca.errors import KeyStoreError
from sigil.issuer.client import Refusal
from sigil.issuer.client.transport import error_from_problem
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.edge.problems import problem_body
from sigil.issuer.errors import IssuerError


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    async with running_issuer(issuer_settings(tmp_path / "data")) as running:
        yield running


async def test_a_datastore_refusal_reaches_the_client_as_datastore_unavailable(
    server: IssuerServer,
) -> None:
    """With the journal failing, the renewal's error says ``datastore_unavailable``, 503, transient."""
    async with attested_agent(server) as agent:
        async with server.issuer.ca.store.engine.begin() as connection:
            await connection.execute(text("DROP TABLE svid_journal"))
        with pytest.raises(IssuerError) as refused:
            await agent.renew()
    assert refused.value.reason == "datastore_unavailable"
    assert refused.value.status == 503
    refusal = Refusal.of(refused.value)
    assert refusal is not None
    assert refusal.transient


def test_an_unknown_reason_stays_a_plain_internal_error() -> None:
    """A reason outside the contract is not trusted as a name: it is an ``internal_error``."""
    error = error_from_problem({"reason": "made_up", "detail": "?", "status": 418})
    assert error.reason == "internal_error"
    assert error.detail == "?"


def test_a_key_store_failure_is_a_503_naming_the_file_and_the_system_error() -> None:
    """An authority key that cannot be written answers 503 ``key_store_unavailable`` with the file and the
    system's words (found by the disk drill: a full disk answered ``authority prepare`` with a bare 500)."""
    body = problem_body(
        KeyStoreError("/data/keys/x509-abc.pem", "cannot write (No space left on device)")
    )
    assert (body["status"], body["reason"]) == (503, "key_store_unavailable")
    assert (
        body["detail"] == "key file /data/keys/x509-abc.pem: cannot write (No space left on device)"
    )
    refusal = Refusal.of(error_from_problem(body))
    assert refusal is not None
    assert refusal.transient
