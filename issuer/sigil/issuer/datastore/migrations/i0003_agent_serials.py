"""Attested agents: the SVID just issued beside the current one, the node UID attested with, and the ban flag.

SPIRE keeps, per attested node, the serial of the agent SVID in use and the one it just issued, and retires the old
one once the new one is presented (``pkg/server/api/agent/v1`` RenewAgent, ``pkg/server/api/middleware``); Sigil
does the same in the shared table, so every replica refuses a superseded or cloned agent SVID.

Revision ID: i0003
Revises: i0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i0003"
down_revision = "i0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attested_agents") as batch:
        batch.add_column(sa.Column("new_serial", sa.String(64), nullable=True))
        batch.add_column(sa.Column("node_uid", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("banned", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("attested_agents") as batch:
        batch.drop_column("banned")
        batch.drop_column("node_uid")
        batch.drop_column("new_serial")
