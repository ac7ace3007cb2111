"""Database failures turned into Sigil's error at the datastore's edge, so nothing above sees a driver's exception.

SQLAlchemy wraps what the DBAPI driver raises (``OperationalError`` for a lost connection, ``ProgrammingError`` for
a missing table, https://docs.sqlalchemy.org/en/20/core/exceptions.html) and a refused connection may come up as
a plain ``OSError`` before SQLAlchemy sees it. Every store over the CA's database, the issuer's tables included,
runs its statements inside :func:`translated`, and the issuer's HTTP edge answers the one error it raises as a 503
``datastore_unavailable`` problem instead of a bare 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sigil.ca.errors import DatastoreUnavailableError

__all__ = ["connected", "transaction", "translated"]


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Raise :class:`DatastoreUnavailableError` (naming ``operation``) for a database failure inside the block."""
    try:
        yield
    except (SQLAlchemyError, OSError) as err:
        raise DatastoreUnavailableError(operation, f"{type(err).__name__}: {err}") from err


@asynccontextmanager
async def connected(engine: AsyncEngine, operation: str) -> AsyncIterator[AsyncConnection]:
    """A connection of ``engine`` for reads, database failures translated as :func:`translated` does."""
    with translated(operation):
        async with engine.connect() as connection:
            yield connection


@asynccontextmanager
async def transaction(engine: AsyncEngine, operation: str) -> AsyncIterator[AsyncConnection]:
    """A connection of ``engine`` in a transaction that commits on success, failures translated."""
    with translated(operation):
        async with engine.begin() as connection:
            yield connection
