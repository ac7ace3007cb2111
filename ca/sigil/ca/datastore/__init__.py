"""The CA's datastore: authorities, the bundle sequence, and the journal of issued SVIDs.

SQLite (WAL) by default, PostgreSQL for several replicas; the schema is owned by Alembic migrations that are applied
when the store opens.
"""

from __future__ import annotations

from sigil.ca.datastore.store import Datastore, default_sqlite_url
from sigil.ca.datastore.transaction import JournalEntry

__all__ = ["Datastore", "JournalEntry", "default_sqlite_url"]
