"""Recertification campaigns: campaigns, their items, decisions, refused attempts and review tasks; the
people attributes campaigns filter on.

Revision ID: 0003_campaigns
Revises: 0002_directory_sync
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_campaigns"
down_revision: str | None = "0002_directory_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("department", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("employment_type", sa.String(), nullable=False, server_default=""))

    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("spec_toml", sa.Text(), nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("launched_at", _TS, nullable=False),
        sa.Column("deadline", _TS, nullable=True),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("stage_open", sa.Boolean(), nullable=False),
        sa.Column("stage_closes_at", _TS, nullable=True),
        sa.Column("nominal_time", _TS, nullable=True),
        sa.Column("workflow_id", sa.String(), nullable=False),
        sa.Column("population_hash", sa.String(64), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("provenance_json", sa.Text(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_index("ix_campaigns_launched_at", "campaigns", ["launched_at"])

    op.create_table(
        "campaign_items",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("subject_kind", sa.String(), nullable=False),
        sa.Column("subject_id", sa.String(), nullable=False),
        sa.Column("subject_name", sa.String(), nullable=False),
        sa.Column("access_group", sa.String(), nullable=True),
        sa.Column("item_json", sa.Text(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("reviewer_kind", sa.String(), nullable=True),
        sa.Column("reviewer_id", sa.String(), nullable=True),
        sa.Column("reviewer_name", sa.String(), nullable=True),
        sa.Column("assignment_json", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("verdict", sa.String(), nullable=True),
        sa.Column("revocation_json", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_items_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "id", name="pk_campaign_items"),
    )
    op.create_index("ix_campaign_items_reviewer", "campaign_items", ["campaign_id", "reviewer_id", "stage"])
    op.create_index("ix_campaign_items_outcome", "campaign_items", ["campaign_id", "outcome"])
    op.create_index("ix_campaign_items_subject", "campaign_items", ["campaign_id", "subject_id"])

    op.create_table(
        "campaign_decisions",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("decision_json", sa.Text(), nullable=False),
        sa.Column("decided_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_decisions_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_campaign_decisions"),
    )
    op.create_index("ix_campaign_decisions_item", "campaign_decisions", ["campaign_id", "item_id", "stage"])

    op.create_table(
        "campaign_refusals",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_refusals_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_campaign_refusals"),
    )
    op.create_index("ix_campaign_refusals_campaign", "campaign_refusals", ["campaign_id", "seq"])

    op.create_table(
        "review_tasks",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.String(), nullable=False),
        sa.Column("reviewer_kind", sa.String(), nullable=False),
        sa.Column("reviewer_name", sa.String(), nullable=False),
        sa.Column("notified_at", _TS, nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.Column("escalated_to", sa.String(), nullable=True),
        sa.Column("handles_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_review_tasks_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "stage", "reviewer_id", name="pk_review_tasks"),
    )


def downgrade() -> None:
    op.drop_table("review_tasks")
    op.drop_table("campaign_refusals")
    op.drop_table("campaign_decisions")
    op.drop_table("campaign_items")
    op.drop_table("campaigns")
    with op.batch_alter_table("people") as batch:
        batch.drop_column("employment_type")
        batch.drop_column("department")
