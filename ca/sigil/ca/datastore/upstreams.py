"""The datastore's record of the upstream CAs an operator introduced, read and written inside a locked transaction.

Replicas must agree on which upstream signs new authorities, so the choice lives here rather than in each replica's
``ca.upstream_dir``: a row names the directory of the upstream's files (the key stays there) and its place in an
upstream rotation (:mod:`sigil.ca.upstream_rotation` takes the steps).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, insert, select, update

from sigil.ca.datastore.journal import Execute
from sigil.ca.datastore.models import UpstreamCaRow
from sigil.ca.datastore.transaction import utc

__all__ = [
    "UpstreamRecord",
    "UpstreamStatus",
    "delete_upstream_record",
    "put_upstream_record",
    "read_upstream_records",
    "root_fingerprint",
]


class UpstreamStatus(enum.StrEnum):
    """Where an upstream is in a rotation; only ``prepared`` and ``active`` ones sign new authorities."""

    PREPARED = "prepared"
    ACTIVE = "active"
    OLD = "old"
    RETIRED = "retired"


def root_fingerprint(root: x509.Certificate) -> str:
    """SHA-256 of the root's DER, hex: how an upstream is named (its root is what the bundle carries)."""
    return hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True, slots=True)
class UpstreamRecord:
    """One upstream CA as the datastore keeps it."""

    root: x509.Certificate
    directory: Path
    status: UpstreamStatus
    created_at: datetime | None = None

    @property
    def fingerprint(self) -> str:
        return root_fingerprint(self.root)

    def with_status(self, status: UpstreamStatus) -> UpstreamRecord:
        return UpstreamRecord(self.root, self.directory, status, self.created_at)


async def read_upstream_records(execute: Execute) -> list[UpstreamRecord]:
    """Every recorded upstream, oldest first (two recorded in one step are ordered by their place in a rotation)."""
    result = await execute(select(UpstreamCaRow))
    order = list(UpstreamStatus)[::-1]
    rows = sorted(
        result.scalars().all(),
        key=lambda row: (utc(row.created_at), order.index(UpstreamStatus(row.status))),
    )
    return [
        UpstreamRecord(
            x509.load_der_x509_certificate(row.root_der),
            Path(row.directory),
            UpstreamStatus(row.status),
            utc(row.created_at),
        )
        for row in rows
    ]


async def put_upstream_record(execute: Execute, record: UpstreamRecord, now: datetime) -> None:
    """Insert ``record``, or update the directory and status of the one with its root."""
    fingerprint = record.fingerprint
    found = await execute(
        select(UpstreamCaRow.root_sha256).where(UpstreamCaRow.root_sha256 == fingerprint)
    )
    if found.first() is None:
        await execute(
            insert(UpstreamCaRow).values(
                root_sha256=fingerprint,
                directory=str(record.directory),
                status=record.status.value,
                root_der=record.root.public_bytes(serialization.Encoding.DER),
                created_at=now,
                updated_at=now,
            )
        )
        return
    await execute(
        update(UpstreamCaRow)
        .where(UpstreamCaRow.root_sha256 == fingerprint)
        .values(directory=str(record.directory), status=record.status.value, updated_at=now)
    )


async def delete_upstream_record(execute: Execute, fingerprint: str) -> None:
    """Forget a prepared upstream that an operator replaced before activating it."""
    await execute(delete(UpstreamCaRow).where(UpstreamCaRow.root_sha256 == fingerprint))
