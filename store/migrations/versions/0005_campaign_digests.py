"""The message each reviewer was sent for a campaign stage in a channel (a Slack digest's channel and ts), so
a retried notice updates it instead of posting again and later decisions update it in place.

Revision ID: 0005_campaign_digests
Revises: 0004_campaign_evidence
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_campaign_digests"
down_revision: str | None = "0004_campaign_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_digests",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("conversation", sa.String(), nullable=False),
        sa.Column("message_ts", sa.String(), nullable=False),
        sa.Column("shown", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_digests_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "stage", "reviewer_id", "channel", name="pk_campaign_digests"),
    )


def downgrade() -> None:
    op.drop_table("campaign_digests")
