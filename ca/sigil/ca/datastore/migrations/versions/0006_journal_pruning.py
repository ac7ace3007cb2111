"""Indexes that keep the SVID journal cheap as it turns over: by expiry (pruning) and by re-issue mark.

Expired rows are pruned every rotator tick (``CertificateAuthority.prune_journal``), which reads the journal by
``not_after``; every batch journaled first asks whether any unexpired row is still marked for re-issue, which reads
it by ``reissue_due``. Without these, both would scan the whole table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_svid_journal_not_after", "svid_journal", ["not_after"])
    op.create_index("ix_svid_journal_reissue_due", "svid_journal", ["reissue_due", "not_after"])


def downgrade() -> None:
    op.drop_index("ix_svid_journal_reissue_due", "svid_journal")
    op.drop_index("ix_svid_journal_not_after", "svid_journal")
