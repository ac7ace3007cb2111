"""The issuer's tables: registration entries, join tokens, attested agents.

A branch of its own (label ``issuer``) that depends on the CA's first revision, so ``alembic upgrade heads`` brings
both chains up in one run and the CA never needs to know the issuer exists
(https://alembic.sqlalchemy.org/en/latest/branches.html#branch-dependencies).

Revision ID: i0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i0001"
down_revision = None
branch_labels = ("issuer",)
depends_on = "0001"


def upgrade() -> None:
    op.create_table(
        "registration_entries",
        sa.Column("entry_id", sa.String(36), primary_key=True),
        sa.Column("spiffe_id", sa.String(2048), nullable=False),
        sa.Column("parent_id", sa.String(2048), nullable=False, index=True),
        sa.Column("selectors", sa.Text(), nullable=False),
        sa.Column("x509_svid_ttl", sa.Integer(), nullable=True),
        sa.Column("jwt_svid_ttl", sa.Integer(), nullable=True),
        sa.Column("dns_names", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "join_tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("agent_suffix", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "attested_agents",
        sa.Column("agent_id", sa.String(2048), primary_key=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attested_agents")
    op.drop_table("join_tokens")
    op.drop_table("registration_entries")
