"""The SVID journal records who asked for each SVID and when a re-issue replaced it.

``holder`` is the agent that asked (or the server, for its own serving SVID); NULL for SVIDs minted by hand or for
agentless workloads, and for every row written before this revision. ``replaced_at`` is set when a fresh SVID of the
same kind and SPIFFE ID reaches the same holder after a taint marked the row for re-issue: ``authority revoke``
refuses while unexpired marked rows have none.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("svid_journal") as batch:
        batch.add_column(sa.Column("holder", sa.String(2048), nullable=True))
        batch.add_column(sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("svid_journal") as batch:
        batch.drop_column("replaced_at")
        batch.drop_column("holder")
