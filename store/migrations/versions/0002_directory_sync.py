"""Identity sync: when and why a person left, provider ids of groups, the sync watermark.

Revision ID: 0002_directory_sync
Revises: 0001_initial
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_directory_sync"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("left_reason", sa.String(), nullable=True))
    op.create_table(
        "directory_groups",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_directory_groups"),
    )
    op.create_table(
        "directory_state",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_directory_state"),
    )


def downgrade() -> None:
    op.drop_table("directory_state")
    op.drop_table("directory_groups")
    with op.batch_alter_table("people") as batch:
        batch.drop_column("left_reason")
        batch.drop_column("left_at")
