"""Database failures leave the datastore as Sigil's own error, naming what was being done."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from sigil.ca.datastore.failures import connected, translated
from sigil.ca.errors import DatastoreUnavailableError
from sigil.ca.service import CertificateAuthority


def test_translated_turns_a_driver_error_into_datastore_unavailable() -> None:
    """A SQLAlchemy error inside the block becomes DatastoreUnavailableError, chained to the original."""
    original = OperationalError("SELECT 1", {}, Exception("database is locked"))
    with pytest.raises(DatastoreUnavailableError) as caught, translated("reading entries"):
        raise original
    assert caught.value.operation == "reading entries"
    assert caught.value.__cause__ is original


def test_translated_lets_other_errors_through() -> None:
    """A bug in the block (not a database failure) is not disguised as one."""
    with pytest.raises(KeyError), translated("reading entries"):
        raise KeyError("bug")


async def test_a_statement_the_database_refuses_is_translated(ca: CertificateAuthority) -> None:
    """A statement on a missing table, through the shared connection helper, raises DatastoreUnavailableError."""
    with pytest.raises(DatastoreUnavailableError, match="probe"):
        async with connected(ca.store.engine, "probe") as connection:
            await connection.execute(text("SELECT * FROM no_such_table"))


async def test_the_ca_journal_reports_a_dropped_table_as_unavailable(
    ca: CertificateAuthority,
) -> None:
    """The CA's own journal read fails as DatastoreUnavailableError when its table is gone."""
    async with ca.store.engine.begin() as connection:
        await connection.execute(text("DROP TABLE svid_journal"))
    with pytest.raises(DatastoreUnavailableError, match="reading the journal"):
        await ca.store.journal()
