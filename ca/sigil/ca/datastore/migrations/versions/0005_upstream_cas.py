"""The upstream CAs an operator has introduced, so that every replica signs under the same one.

One row per upstream root: the directory its four files were read from (the key stays in those files, never in the
database) and where it is in an upstream rotation: ``prepared`` (its root is in the bundle, the authority under it
not yet signing), ``active``, ``old`` (superseded; what chains to it is due for re-issue) and ``retired`` (its root
has left the bundle).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_cas",
        sa.Column("root_sha256", sa.String(64), nullable=False),
        sa.Column("directory", sa.String(4096), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("root_der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("root_sha256", name="pk_upstream_cas"),
    )


def downgrade() -> None:
    op.drop_table("upstream_cas")
