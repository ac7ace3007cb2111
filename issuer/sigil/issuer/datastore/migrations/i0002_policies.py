"""The issuer's policy tables: policies applied through the admin API, and the one row that numbers the set.

``policy_state`` holds the revision every replica reports for a given content digest, and a generation that moves
with every admin change so that the other replicas reload the admin policies within a poll.

Revision ID: i0002
Revises: i0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "i0002"
down_revision = "i0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_policies",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("namespace", sa.String(253), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    state = op.create_table(
        "policy_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("admin_generation", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(
        state,
        [
            {
                "id": 1,
                "revision": 0,
                "digest": "",
                "admin_generation": 0,
                "updated_at": datetime.now(UTC),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("policy_state")
    op.drop_table("admin_policies")
