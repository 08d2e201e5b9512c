"""Campaign items escalated in a stage: whose they were and whom the escalation reached (the reviewer's
manager at that moment, or the campaign's owner), who may then decide them too.

Revision ID: 0006_campaign_escalations
Revises: 0005_campaign_digests
Create Date: 2026-12-06 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_campaign_escalations"
down_revision: str | None = "0005_campaign_digests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_escalations",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("reviewer_id", sa.String(), nullable=False),
        sa.Column("escalated_to_id", sa.String(), nullable=False),
        sa.Column("escalated_to_email", sa.String(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_escalations_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "stage", "item_id", name="pk_campaign_escalations"),
    )
    op.create_index(
        "ix_campaign_escalations_to",
        "campaign_escalations",
        ["campaign_id", "stage", "escalated_to_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_escalations_to", table_name="campaign_escalations")
    op.drop_table("campaign_escalations")
