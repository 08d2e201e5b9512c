"""Initial tables: the directory (people, group_members), requests and the evidence ledger.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("email_lower", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("manager_id", sa.String(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_people"),
    )
    op.create_index("ix_people_email_lower", "people", ["email_lower"])
    op.create_index("ix_people_manager_id", "people", ["manager_id"])

    op.create_table(
        "group_members",
        sa.Column("person_id", sa.String(), nullable=False),
        sa.Column("group_name", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name="fk_group_members_person_id_people", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("person_id", "group_name", name="pk_group_members"),
    )
    op.create_index("ix_group_members_group_name", "group_members", ["group_name"])

    op.create_table(
        "requests",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("requester_id", sa.String(), nullable=False),
        sa.Column("requester_email", sa.String(), nullable=False),
        sa.Column("resource", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("connection", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("open_slot", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("view_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
    )
    op.create_index("uq_requests_open_slot", "requests", ["open_slot"], unique=True)
    op.create_index("ix_requests_requester_created", "requests", ["requester_id", "created_at"])
    op.create_index("ix_requests_requester_connection", "requests", ["requester_id", "connection"])
    op.create_index("ix_requests_status_created", "requests", ["status", "created_at"])
    op.create_index("ix_requests_created_at", "requests", ["created_at"])

    op.create_table(
        "ledger",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ledger"),
    )
    op.create_index("uq_ledger_idempotency_key", "ledger", ["idempotency_key"], unique=True)
    op.create_index("ix_ledger_subject_seq", "ledger", ["subject", "seq"])
    op.create_index("ix_ledger_kind_seq", "ledger", ["kind", "seq"])


def downgrade() -> None:
    op.drop_table("ledger")
    op.drop_table("requests")
    op.drop_table("group_members")
    op.drop_table("people")
