"""Authority rows carry a seal under the key-encryption key (``ca.key_store: database``).

Rows that exist already get none here: a migration has no key. With the sealed key store, the first start after
this migration seals the rows it can prove are the CA's own (``CertificateAuthority.open``) and refuses the rest.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("authorities", sa.Column("seal", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("authorities") as batch:
        batch.drop_column("seal")
