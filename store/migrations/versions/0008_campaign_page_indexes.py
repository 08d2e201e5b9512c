"""Campaign item and escalation indexes end with the item id, so a page of a reviewer's items (or of an
outcome's, a subject's, a person's escalated items) read in id order after a cursor is one range of its
index. Without the id SQLite chose the primary key to get the order and walked every item of the campaign
for each page: about a second a page at 100,000 items, while reviewers opened their pages and again while
each was told the outcome. A reviewer's items of every stage (what telling the outcome reads) get an index
of their own: with the stage before the id, they are not one range.

Revision ID: 0008_campaign_page_indexes
Revises: 0007_campaign_triggers
Create Date: 2026-12-07 20:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_campaign_page_indexes"
down_revision: str | None = "0007_campaign_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ITEMS_BEFORE = {
    "ix_campaign_items_reviewer": ["campaign_id", "reviewer_id", "stage"],
    "ix_campaign_items_outcome": ["campaign_id", "outcome"],
    "ix_campaign_items_subject": ["campaign_id", "subject_id"],
}
ITEMS_AFTER = {
    "ix_campaign_items_reviewer": ["campaign_id", "reviewer_id", "stage", "id"],
    "ix_campaign_items_outcome": ["campaign_id", "outcome", "id"],
    "ix_campaign_items_subject": ["campaign_id", "subject_id", "id"],
}
ESCALATIONS_BEFORE = ["campaign_id", "stage", "escalated_to_id"]


def upgrade() -> None:
    for name, columns in ITEMS_AFTER.items():
        op.drop_index(name, table_name="campaign_items")
        op.create_index(name, "campaign_items", columns)
    # a reviewer's items of every stage (what telling each reviewer the outcome reads)
    op.create_index(
        "ix_campaign_items_reviewer_all_stages", "campaign_items", ["campaign_id", "reviewer_id", "id"]
    )
    op.drop_index("ix_campaign_escalations_to", table_name="campaign_escalations")
    op.create_index("ix_campaign_escalations_to", "campaign_escalations", [*ESCALATIONS_BEFORE, "item_id"])


def downgrade() -> None:
    op.drop_index("ix_campaign_escalations_to", table_name="campaign_escalations")
    op.create_index("ix_campaign_escalations_to", "campaign_escalations", ESCALATIONS_BEFORE)
    op.drop_index("ix_campaign_items_reviewer_all_stages", table_name="campaign_items")
    for name, columns in ITEMS_BEFORE.items():
        op.drop_index(name, table_name="campaign_items")
        op.create_index(name, "campaign_items", columns)
