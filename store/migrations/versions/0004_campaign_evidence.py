"""The evidence bundle of each closed campaign (its files and signed manifest), as the worker wrote it.

Revision ID: 0004_campaign_evidence
Revises: 0003_campaigns
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_campaign_evidence"
down_revision: str | None = "0003_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_evidence",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("file_name", sa.String(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_evidence_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "file_name", name="pk_campaign_evidence"),
    )


def downgrade() -> None:
    op.drop_table("campaign_evidence")
