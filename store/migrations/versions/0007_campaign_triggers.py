"""Campaign specs triggered by directory events (a mover), and each event that fired one: its campaign, the
person and the change, and whether the campaign's workflow has started yet (a failed start is retried).

Revision ID: 0007_campaign_triggers
Revises: 0006_campaign_escalations
Create Date: 2026-12-06 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_campaign_triggers"
down_revision: str | None = "0006_campaign_escalations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_triggers",
        sa.Column("trigger_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("spec_toml", sa.Text(), nullable=False),
        sa.Column("spec_sha256", sa.String(), nullable=False),
        sa.Column("registered_by", sa.String(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("trigger_id", name="pk_campaign_triggers"),
    )
    op.create_table(
        "campaign_trigger_firings",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("trigger_id", sa.String(), nullable=False),
        sa.Column("person_id", sa.String(), nullable=False),
        sa.Column("change_json", sa.Text(), nullable=False),
        sa.Column("spec_toml", sa.Text(), nullable=False),
        sa.Column("sync_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name="pk_campaign_trigger_firings"),
    )
    op.create_index("ix_campaign_trigger_firings_status", "campaign_trigger_firings", ["status"])


def downgrade() -> None:
    op.drop_index("ix_campaign_trigger_firings_status", table_name="campaign_trigger_firings")
    op.drop_table("campaign_trigger_firings")
    op.drop_table("campaign_triggers")
