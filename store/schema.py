"""Tables of the SQL store, as SQLAlchemy Core metadata.

The migrations in ``store/migrations/versions`` create exactly these tables (a test compares them);
a change here needs a new migration.

Timestamps of requests are ``UTCDateTime``: aware UTC in Python, ``timestamptz`` on PostgreSQL and a
microsecond-precision UTC string on SQLite, so ordering and comparisons agree on both. The ledger's ``at``
is stored as the exact canonical text that enters its hash, so a round trip can never change a byte.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database does with time zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = as_utc(value)
        # SQLite's DATETIME storage drops the offset: hand it naive UTC so nothing is shifted.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return as_utc(value)


people = Table(
    "people",
    metadata,
    Column("id", String, primary_key=True),
    Column("email", String, nullable=False),
    Column("email_lower", String, nullable=False),
    Column("display_name", String, nullable=False, default=""),
    Column("manager_id", String, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    # Set by identity sync when the person left (deactivated or deleted at the provider): kept for audit.
    Column("left_at", UTCDateTime, nullable=True),
    Column("left_reason", String, nullable=True),
    # What campaigns filter people on (SCIM: the enterprise extension's department, and userType).
    Column("department", String, nullable=False, default=""),
    Column("employment_type", String, nullable=False, default=""),
    Index("ix_people_email_lower", "email_lower"),
    Index("ix_people_manager_id", "manager_id"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("person_id", String, ForeignKey("people.id", ondelete="CASCADE"), primary_key=True),
    Column("group_name", String, primary_key=True),
    Column("position", Integer, nullable=False, default=0),
    Index("ix_group_members_group_name", "group_name"),
)

# Groups as the provider knows them: the name is what policies use, the provider id what SCIM writes need.
directory_groups = Table(
    "directory_groups",
    metadata,
    Column("name", String, primary_key=True),
    Column("provider_id", String, nullable=True),
)

# Identity sync bookkeeping: the incremental watermark and the time of the last full sync.
directory_state = Table(
    "directory_state",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String, primary_key=True),
    Column("requester_id", String, nullable=False),
    Column("requester_email", String, nullable=False),
    Column("resource", String, nullable=False),
    Column("role", String, nullable=False),
    Column("connection", String, nullable=False),
    Column("status", String, nullable=False),
    # f"{requester_id}|{connection}" while the request is open, NULL once terminal: the UNIQUE index makes
    # "one open request per (person, connection)" hold across processes without application locks.
    Column("open_slot", String, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("view_json", Text, nullable=False),
    Index("uq_requests_open_slot", "open_slot", unique=True),
    Index("ix_requests_requester_created", "requester_id", "created_at"),
    Index("ix_requests_requester_connection", "requester_id", "connection"),
    Index("ix_requests_status_created", "status", "created_at"),
    Index("ix_requests_created_at", "created_at"),
)

ledger = Table(
    "ledger",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("kind", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("actor", String, nullable=False),
    Column("channel", String, nullable=False),
    Column("data", Text, nullable=False),
    Column("idempotency_key", String, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("uq_ledger_idempotency_key", "idempotency_key", unique=True),
    Index("ix_ledger_subject_seq", "subject", "seq"),
    Index("ix_ledger_kind_seq", "kind", "seq"),
)

# Recertification campaigns (see domain/campaigns.py). A campaign's spec is kept verbatim with its hash, so
# the evidence shows exactly what was launched; the stage and its closing time live here so that the edge can
# refuse a decision on a closed stage in the same transaction that would record it.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("owner", String, nullable=False),
    Column("spec_toml", Text, nullable=False),
    Column("spec_sha256", String(64), nullable=False),
    Column("status", String, nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("launched_at", UTCDateTime, nullable=False),
    Column("deadline", UTCDateTime, nullable=True),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("stage", Integer, nullable=False, default=0),
    Column("stage_open", Boolean, nullable=False, default=False),
    Column("stage_closes_at", UTCDateTime, nullable=True),
    Column("nominal_time", UTCDateTime, nullable=True),
    Column("workflow_id", String, nullable=False),
    Column("population_hash", String(64), nullable=True),
    Column("item_count", Integer, nullable=False, default=0),
    Column("provenance_json", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_campaigns_launched_at", "launched_at"),
)

# One row per item. ``reviewer_*`` is the assignment of the item's current stage; ``outcome`` moves from
# ``open`` to ``kept`` / ``revoke`` (decided or defaulted) and then ``revoked`` / ``failed`` once applied.
campaign_items = Table(
    "campaign_items",
    metadata,
    Column("campaign_id", String, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String, primary_key=True),
    Column("subject_kind", String, nullable=False),
    Column("subject_id", String, nullable=False),
    Column("subject_name", String, nullable=False),
    Column("access_group", String, nullable=True),
    Column("item_json", Text, nullable=False),
    Column("stage", Integer, nullable=False, default=0),
    Column("reviewer_kind", String, nullable=True),
    Column("reviewer_id", String, nullable=True),
    Column("reviewer_name", String, nullable=True),
    Column("assignment_json", Text, nullable=False),
    Column("outcome", String, nullable=False),
    Column("verdict", String, nullable=True),
    Column("revocation_json", Text, nullable=True),
    # Every read of items is a page in id order after a cursor: each index ends with the id, so a page is
    # one range of the index. Without it SQLite walks the whole campaign in primary-key order to find a
    # reviewer's few items (1 s a page at 100,000 items; migration 0008). A reviewer's items of every stage
    # (each reviewer told the outcome) have their own index: with the stage in between, they are not a range.
    Index("ix_campaign_items_reviewer", "campaign_id", "reviewer_id", "stage", "id"),
    Index("ix_campaign_items_reviewer_all_stages", "campaign_id", "reviewer_id", "id"),
    Index("ix_campaign_items_outcome", "campaign_id", "outcome", "id"),
    Index("ix_campaign_items_subject", "campaign_id", "subject_id", "id"),
)

# Every decision, changed ones and defaults included (the last one of a stage counts).
campaign_decisions = Table(
    "campaign_decisions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("item_id", String, nullable=False),
    Column("stage", Integer, nullable=False),
    Column("decision_json", Text, nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    Index("ix_campaign_decisions_item", "campaign_id", "item_id", "stage"),
)

# Decisions refused at the edge (the subject, someone else's item, a closed stage …), for the evidence.
campaign_refusals = Table(
    "campaign_refusals",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("item_id", String, nullable=False),
    Column("actor", String, nullable=False),
    Column("channel", String, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_campaign_refusals_campaign", "campaign_id", "seq"),
)

# One review task per reviewer and stage: what the reviewer was told and when, for reminders about pending
# items only, escalation and (later) digests updated in place.
review_tasks = Table(
    "review_tasks",
    metadata,
    Column("campaign_id", String, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("stage", Integer, primary_key=True),
    Column("reviewer_id", String, primary_key=True),
    Column("reviewer_kind", String, nullable=False),
    Column("reviewer_name", String, nullable=False),
    Column("notified_at", UTCDateTime, nullable=True),
    Column("reminders_sent", Integer, nullable=False, default=0),
    Column("escalated_to", String, nullable=True),
    Column("handles_json", Text, nullable=False, default="{}"),
)

# The message a reviewer was sent for a campaign stage in a channel (a Slack digest: its channel and ts, and a
# fingerprint of what it shows), so a retry updates it instead of posting again.
campaign_digests = Table(
    "campaign_digests",
    metadata,
    Column("campaign_id", String, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("stage", Integer, primary_key=True),
    Column("reviewer_id", String, primary_key=True),
    Column("channel", String, primary_key=True),
    Column("conversation", String, nullable=False),
    Column("message_ts", String, nullable=False),
    Column("shown", String, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Items escalated in a stage: the reviewer who had not decided them and the person the escalation reached
# (the reviewer's manager at that moment, or the campaign's owner), who may decide them as long as the item
# stays with that reviewer in that stage.
campaign_escalations = Table(
    "campaign_escalations",
    metadata,
    Column("campaign_id", String, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("stage", Integer, primary_key=True),
    Column("item_id", String, primary_key=True),
    Column("reviewer_id", String, nullable=False),
    Column("escalated_to_id", String, nullable=False),
    Column("escalated_to_email", String, nullable=False),
    Column("escalated_at", UTCDateTime, nullable=False),
    Index("ix_campaign_escalations_to", "campaign_id", "stage", "escalated_to_id", "item_id"),
)

# The evidence bundle of a closed campaign, written once by the worker (signed there) and served as is.
campaign_evidence = Table(
    "campaign_evidence",
    metadata,
    Column("campaign_id", String, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("file_name", String, primary_key=True),
    Column("content", LargeBinary, nullable=False),
)

# Campaign specs triggered by directory events (``[trigger]``), registered by name; each event that fires one
# is a row of ``campaign_trigger_firings``, keyed by the campaign it opens (one per spec, person and change),
# so a retried or repeated sync finds it and a start that failed is retried by the next sync.
campaign_triggers = Table(
    "campaign_triggers",
    metadata,
    Column("trigger_id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("event", String, nullable=False),
    Column("spec_toml", Text, nullable=False),
    Column("spec_sha256", String, nullable=False),
    Column("registered_by", String, nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
)

campaign_trigger_firings = Table(
    "campaign_trigger_firings",
    metadata,
    Column("campaign_id", String, primary_key=True),
    Column("trigger_id", String, nullable=False),
    Column("person_id", String, nullable=False),
    Column("change_json", Text, nullable=False),
    Column("spec_toml", Text, nullable=False),
    Column("sync_id", String, nullable=False),
    Column("status", String, nullable=False),  # pending, started
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("fired_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_campaign_trigger_firings_status", "status"),
)
