"""Fixtures shared by every component's tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from sigil_testing.postgres import PostgresUnavailableError, running_postgres, temporary_database


@pytest.fixture(autouse=True)
def _no_sigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without SIGIL_* variables: settings must come from what the test itself gives.

    (A developer's shell, or make, may export SIGIL_DATA_DIR and friends; they beat config files by design.)
    """
    for name in list(os.environ):
        # SIGIL_TEST_* configure the test harness itself (e.g. the PostgreSQL admin DSN), not Sigil.
        if name.startswith("SIGIL_") and not name.startswith("SIGIL_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    """One throwaway PostgreSQL server for the whole session (or ``SIGIL_TEST_POSTGRES``), started on first use."""
    try:
        with running_postgres() as dsn:
            yield dsn
    except PostgresUnavailableError as err:
        pytest.fail(f"PostgreSQL is needed by this test and could not be started: {err}")


@pytest.fixture
async def postgres_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database on the session's PostgreSQL, dropped after the test."""
    async with temporary_database(postgres_admin_dsn) as url:
        yield url
