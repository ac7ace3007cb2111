"""The CA's first schema: authorities, bundle state, rotation lock, SVID journal.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authorities",
        sa.Column("authority_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tainted", sa.Boolean(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("public_key_der", sa.LargeBinary(), nullable=False),
        sa.Column("certificate_chain_der", sa.LargeBinary(), nullable=True),
        sa.Column("upstream_root_der", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("authority_id", name="pk_authorities"),
    )
    op.create_table(
        "bundle_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bundle_state"),
    )
    op.create_table(
        "rotation_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rotation_lock"),
    )
    op.create_table(
        "svid_journal",
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("spiffe_id", sa.String(2048), nullable=False),
        sa.Column("authority_id", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reissue_due", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authorities.authority_id"],
            name="fk_svid_journal_authority_id_authorities",
        ),
        sa.PrimaryKeyConstraint("serial", name="pk_svid_journal"),
    )
    op.create_index("ix_svid_journal_authority_id", "svid_journal", ["authority_id"])
    op.create_index("ix_svid_journal_spiffe_id", "svid_journal", ["spiffe_id"])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    bundle_state = sa.table(
        "bundle_state",
        sa.column("id", sa.Integer()),
        sa.column("sequence", sa.Integer()),
        sa.column("digest", sa.String()),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(bundle_state, [{"id": 1, "sequence": 0, "digest": "", "updated_at": epoch}])
    rotation_lock = sa.table(
        "rotation_lock",
        sa.column("id", sa.Integer()),
        sa.column("holder", sa.String()),
        sa.column("taken_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(rotation_lock, [{"id": 1, "holder": "", "taken_at": epoch}])


def downgrade() -> None:
    op.drop_index("ix_svid_journal_spiffe_id", "svid_journal")
    op.drop_index("ix_svid_journal_authority_id", "svid_journal")
    op.drop_table("svid_journal")
    op.drop_table("rotation_lock")
    op.drop_table("bundle_state")
    op.drop_table("authorities")
