"""Campaign records: the campaign, its items with their assignments, every decision and refused attempt, and
one review task per reviewer and stage.

Workflows carry ids and counts; the items live here and are read in pages (by reviewer, by outcome, by key
order), so a campaign of a million items never passes through Temporal's history. Two rules are enforced in
the database transaction itself rather than by callers: a decision is recorded only while its item's stage
is open (:meth:`CampaignRecords.record_decisions` checks and writes under one write lock), and items are
written by id, so a snapshot or a batch retried after a crash writes nothing twice. This module never
decides who may decide (``domain/campaign_decisions.py`` does) and never talks to a vendor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import Update, and_, bindparam, case, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

import store.schema as schema
from domain.campaign_decisions import ItemDecision
from domain.campaign_report import RefusedAttempt, Revocation
from domain.campaign_state import (
    CampaignProgress,
    CampaignRecord,
    CampaignStatus,
    ItemOutcome,
    ReviewerProgress,
)
from domain.campaigns import Assignment, CampaignItem
from store.base import StoreBase
from store.errors import StoreError

PAGE_LIMIT = 1000
"""The largest page any read returns: callers page with ``after``."""


class Settled(NamedTuple):
    """An item's outcome once its review ended (:meth:`CampaignRecords.settle_items`); ``verdict`` when the
    deadline's default decided it."""

    item_id: str
    outcome: ItemOutcome
    verdict: str | None = None


# One statement for a page of settled items (executemany); the bound names differ from the columns'.
_SETTLE = (
    update(schema.campaign_items)
    .where(
        schema.campaign_items.c.campaign_id == bindparam("b_campaign"),
        schema.campaign_items.c.id == bindparam("b_item"),
    )
    .values(
        outcome=bindparam("b_outcome"),
        verdict=func.coalesce(bindparam("b_verdict"), schema.campaign_items.c.verdict),
    )
)

EVIDENCE_BLOCK = 1 << 20
"""Bytes of an evidence file copied into SQLite at a time."""


class DigestHandle(BaseModel):
    """A reviewer's digest of one campaign stage in one channel: where it is (``conversation`` and
    ``message_ts`` in Slack) and a fingerprint of what it shows now."""

    campaign_id: str
    stage: int
    reviewer_id: str
    channel: str
    conversation: str
    message_ts: str
    shown: str = ""


class CampaignConflict(StoreError):
    """The campaign or item is not in a state that allows the change; the message says why."""


class StoredItem(CampaignItem):
    """An item with its current stage, assignment and outcome, as read back."""

    stage: int
    assignment: Assignment
    outcome: ItemOutcome
    verdict: str | None = None
    revocation: Revocation | None = None


def spec_hash(spec_toml: str) -> str:
    return hashlib.sha256(spec_toml.encode()).hexdigest()


def _campaign(row: Row[Any]) -> CampaignRecord:
    return CampaignRecord.model_validate(dict(row._mapping))


def _stored_item(row: Row[Any]) -> StoredItem:
    item = json.loads(row.item_json)
    return StoredItem.model_validate(
        {
            **item,
            "stage": row.stage,
            "assignment": json.loads(row.assignment_json),
            "outcome": row.outcome,
            "verdict": row.verdict,
            "revocation": json.loads(row.revocation_json) if row.revocation_json else None,
        }
    )


def _assignment_columns(assignment: Assignment) -> dict[str, Any]:
    reviewer = assignment.reviewer
    return {
        "stage": assignment.stage,
        "reviewer_kind": reviewer.kind if reviewer else None,
        "reviewer_id": reviewer.id if reviewer else None,
        "reviewer_name": reviewer.name if reviewer else None,
        "assignment_json": assignment.model_dump_json(),
    }


def _digest(row: Row[Any]) -> DigestHandle:
    return DigestHandle.model_validate({k: v for k, v in row._mapping.items() if k != "updated_at"})


class CampaignRecords(StoreBase):
    """The campaign part of :class:`store.Store`."""

    # ------------------------------------------------------------------ campaigns

    def create_campaign(self, record: CampaignRecord) -> CampaignRecord:
        """Insert a campaign; the same id again returns the stored one (a retried launch), unless its spec
        differs, which is a conflict."""
        c = schema.campaigns
        with self._write() as conn:
            existing = conn.execute(select(c).where(c.c.id == record.id)).first()
            if existing is not None:
                stored = _campaign(existing)
                if stored.spec_sha256 != record.spec_sha256:
                    raise CampaignConflict(f"campaign {record.id} exists with another spec")
                return stored
            conn.execute(insert(c).values(**record.model_dump()))
        return record

    def campaign(self, campaign_id: str) -> CampaignRecord | None:
        c = schema.campaigns
        with self._read() as conn:
            row = conn.execute(select(c).where(c.c.id == campaign_id)).first()
        return _campaign(row) if row is not None else None

    def list_campaigns(
        self, limit: int = 50, *, status: CampaignStatus | None = None
    ) -> list[CampaignRecord]:
        c = schema.campaigns
        query = select(c).order_by(c.c.launched_at.desc()).limit(min(limit, PAGE_LIMIT))
        if status is not None:
            query = query.where(c.c.status == status.value)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_campaign(r) for r in rows]

    def update_campaign(self, campaign_id: str, at: datetime, **changes: Any) -> CampaignRecord:
        """Change a campaign's columns (status, stage, deadline, population …). A terminal campaign stays
        as it is: changing it is a conflict."""
        c = schema.campaigns
        with self._write() as conn:
            row = conn.execute(select(c).where(c.c.id == campaign_id)).first()
            if row is None:
                raise CampaignConflict(f"campaign {campaign_id} does not exist")
            if CampaignStatus(row.status).is_terminal and changes.get("status", row.status) != row.status:
                raise CampaignConflict(f"campaign {campaign_id} is already {row.status}")
            values = {k: (v.value if isinstance(v, CampaignStatus) else v) for k, v in changes.items()}
            conn.execute(update(c).where(c.c.id == campaign_id).values(**values, updated_at=at))
            return _campaign(conn.execute(select(c).where(c.c.id == campaign_id)).one())

    # ------------------------------------------------------------------ items

    def add_items(self, campaign_id: str, items: Sequence[tuple[CampaignItem, Assignment]]) -> int:
        """Write a batch of items with their first assignment; items already written are left as they are.
        Returns how many were new."""
        if not items:
            return 0
        i = schema.campaign_items
        ids = [item.id for item, _ in items]
        with self._write() as conn:
            present = set(
                conn.execute(select(i.c.id).where(i.c.campaign_id == campaign_id, i.c.id.in_(ids))).scalars()
            )
            rows = [
                {
                    "campaign_id": campaign_id,
                    "id": item.id,
                    "subject_kind": item.subject.kind.value,
                    "subject_id": item.subject.id,
                    "subject_name": item.subject.name,
                    "access_group": item.access.group,
                    "item_json": item.model_dump_json(),
                    "outcome": ItemOutcome.OPEN.value,
                    **_assignment_columns(assignment),
                }
                for item, assignment in items
                if item.id not in present
            ]
            if rows:
                conn.execute(insert(i), rows)
        return len(rows)

    def items(
        self,
        campaign_id: str,
        *,
        after: str = "",
        limit: int = PAGE_LIMIT,
        reviewer_id: str | None = None,
        stage: int | None = None,
        outcome: ItemOutcome | None = None,
        subject_id: str | None = None,
        partition: str | None = None,
    ) -> list[StoredItem]:
        """A page of items in id order, filtered (``partition``: see ``domain.campaigns.partition``)."""
        i = schema.campaign_items
        query = select(i).where(i.c.campaign_id == campaign_id, i.c.id > after)
        if partition is not None:
            # A range of ids, not LIKE 'it-x%': SQLite cannot read a LIKE as a range (it ignores case), and
            # a partition's first page walked every partition before it.
            query = query.where(i.c.id >= f"it-{partition}", i.c.id < f"it-{chr(ord(partition) + 1)}")
        if reviewer_id is not None:
            query = query.where(i.c.reviewer_id == reviewer_id)
        if stage is not None:
            query = query.where(i.c.stage == stage)
        if outcome is not None:
            query = query.where(i.c.outcome == outcome.value)
        if subject_id is not None:
            query = query.where(i.c.subject_id == subject_id)
        with self._read() as conn:
            rows = conn.execute(query.order_by(i.c.id).limit(min(limit, PAGE_LIMIT))).all()
        return [_stored_item(r) for r in rows]

    def clear_items(self, campaign_id: str) -> None:
        """Remove a campaign's items before its snapshot is taken again (only while nothing refers to them:
        the campaign is still being snapshotted)."""
        c, i = schema.campaigns, schema.campaign_items
        with self._write() as conn:
            status = conn.execute(select(c.c.status).where(c.c.id == campaign_id)).scalar_one_or_none()
            if status != CampaignStatus.SNAPSHOTTING.value:
                raise CampaignConflict(f"campaign {campaign_id} is {status}: its items are kept")
            conn.execute(delete(i).where(i.c.campaign_id == campaign_id))

    def previous_campaign_launch(self, name: str, before: datetime) -> datetime | None:
        """When the last campaign of this name (the same scope, run again) was launched, if any."""
        c = schema.campaigns
        with self._read() as conn:
            launched: datetime | None = conn.execute(
                select(func.max(c.c.launched_at)).where(
                    c.c.name == name, c.c.launched_at < before, c.c.dry_run.is_(False)
                )
            ).scalar_one()
        return schema.as_utc(launched) if launched is not None else None

    def item(self, campaign_id: str, item_id: str) -> StoredItem | None:
        return self.items_by_id(campaign_id, [item_id]).get(item_id)

    def items_by_id(self, campaign_id: str, item_ids: Sequence[str]) -> dict[str, StoredItem]:
        """The named items that exist, by id, in one read (a bulk decision names up to a thousand)."""
        i = schema.campaign_items
        wanted = list(item_ids)[:PAGE_LIMIT]
        with self._read() as conn:
            rows = conn.execute(select(i).where(i.c.campaign_id == campaign_id, i.c.id.in_(wanted))).all()
        return {row.id: _stored_item(row) for row in rows}

    def reassign(self, campaign_id: str, item_id: str, assignment: Assignment) -> None:
        """Move an open item to another reviewer or stage (the next stage, a leaver's or mover's items).

        A move to another stage clears the item's verdict: a keep in stage 1 sends the item to stage 2's
        reviewer, who has decided nothing yet (the stage-1 decision stays in the decisions table). A move
        within the stage keeps a decision already made in it."""
        i = schema.campaign_items
        with self._write() as conn:
            changed = conn.execute(
                update(i)
                .where(
                    i.c.campaign_id == campaign_id, i.c.id == item_id, i.c.outcome == ItemOutcome.OPEN.value
                )
                .values(
                    **_assignment_columns(assignment),
                    verdict=case((i.c.stage != assignment.stage, None), else_=i.c.verdict),
                )
            ).rowcount
        if changed != 1:
            raise CampaignConflict(f"item {item_id} of campaign {campaign_id} is not open")

    def set_outcome(
        self,
        campaign_id: str,
        item_id: str,
        outcome: ItemOutcome,
        *,
        verdict: str | None = None,
        revocation: Revocation | None = None,
    ) -> None:
        statement = outcome_update(campaign_id, item_id, outcome, verdict=verdict, revocation=revocation)
        with self._write() as conn:
            conn.execute(statement)

    # ------------------------------------------------------------------ decisions

    def record_decisions(self, campaign_id: str, decisions: Sequence[ItemDecision]) -> int:
        """Record decisions, all or none: each item must be open in the decision's stage and that stage
        open for decisions (defaults are recorded by the workflow after the stage closed). Returns the
        count."""
        c, i, d = schema.campaigns, schema.campaign_items, schema.campaign_decisions
        with self._write() as conn:
            campaign = conn.execute(select(c).where(c.c.id == campaign_id)).first()
            if campaign is None:
                raise CampaignConflict(f"campaign {campaign_id} does not exist")
            for decision in decisions:
                self._check_decidable(conn, campaign, decision)
            if decisions:
                conn.execute(
                    insert(d),
                    [
                        {
                            "campaign_id": campaign_id,
                            "item_id": x.item_id,
                            "stage": x.stage,
                            "decision_json": x.model_dump_json(),
                            "decided_at": x.decided_at,
                        }
                        for x in decisions
                    ],
                )
                for decision in decisions:
                    conn.execute(
                        update(i)
                        .where(i.c.campaign_id == campaign_id, i.c.id == decision.item_id)
                        .values(verdict=decision.verdict)
                    )
        return len(decisions)

    @staticmethod
    def _check_decidable(conn: Connection, campaign: Row[Any], decision: ItemDecision) -> None:
        i = schema.campaign_items
        if CampaignStatus(campaign.status) is not CampaignStatus.OPEN:
            raise CampaignConflict(f"campaign {campaign.id} is {campaign.status}: decisions are closed")
        if decision.stage != campaign.stage:
            raise CampaignConflict(
                f"stage {decision.stage + 1} of campaign {campaign.id} is not open "
                f"(stage {campaign.stage + 1} is)"
            )
        if not campaign.stage_open and not decision.default:
            raise CampaignConflict(
                f"stage {decision.stage + 1} of campaign {campaign.id} is closed; "
                "decisions are no longer accepted"
            )
        row = conn.execute(
            select(i.c.stage, i.c.outcome).where(i.c.campaign_id == campaign.id, i.c.id == decision.item_id)
        ).first()
        if row is None:
            raise CampaignConflict(f"campaign {campaign.id} has no item {decision.item_id}")
        if row.outcome != ItemOutcome.OPEN.value or row.stage != decision.stage:
            raise CampaignConflict(f"item {decision.item_id} is not open in stage {decision.stage + 1}")

    def decisions(
        self, campaign_id: str, *, item_id: str | None = None, after_seq: int = 0
    ) -> list[tuple[int, ItemDecision]]:
        d = schema.campaign_decisions
        query = select(d.c.seq, d.c.decision_json).where(d.c.campaign_id == campaign_id, d.c.seq > after_seq)
        if item_id is not None:
            query = query.where(d.c.item_id == item_id)
        with self._read() as conn:
            rows = conn.execute(query.order_by(d.c.seq).limit(PAGE_LIMIT)).all()
        return [(r.seq, ItemDecision.model_validate_json(r.decision_json)) for r in rows]

    def decisions_of_items(self, campaign_id: str, item_ids: Sequence[str]) -> list[ItemDecision]:
        """Every decision about the named items (a page of them, at most :data:`PAGE_LIMIT`), in the order
        they were recorded."""
        d = schema.campaign_decisions
        wanted = list(item_ids)[:PAGE_LIMIT]
        with self._read() as conn:
            rows = conn.execute(
                select(d.c.decision_json)
                .where(d.c.campaign_id == campaign_id, d.c.item_id.in_(wanted))
                .order_by(d.c.seq)
            ).scalars()
            return [ItemDecision.model_validate_json(r) for r in rows]

    def decisions_by_time(self, campaign_id: str) -> Iterator[ItemDecision]:
        """Every decision of a campaign by when it was made (then item, stage, and the order recorded),
        read as the caller goes: the database sorts, and no more than a fetch's worth of rows is held here,
        however many decisions a campaign has. Consume it in one thread, promptly: it holds a read
        transaction until it is exhausted or closed."""
        d = schema.campaign_decisions
        query = (
            select(d.c.decision_json)
            .where(d.c.campaign_id == campaign_id)
            .order_by(d.c.decided_at, d.c.item_id, d.c.stage, d.c.seq)
        )
        with self._read() as conn:
            for row in conn.execution_options(stream_results=True, yield_per=PAGE_LIMIT).execute(query):
                yield ItemDecision.model_validate_json(row.decision_json)

    def stage_verdicts(self, campaign_id: str, stage: int, item_ids: Sequence[str]) -> dict[str, str]:
        """Item id → the verdict a reviewer gave it in ``stage`` (the last one counts), for the items decided
        in that stage; an item kept in an earlier stage is pending again in the next one."""
        d = schema.campaign_decisions
        ids = list(item_ids)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            with self._read() as conn:
                rows = conn.execute(
                    select(d.c.item_id, d.c.decision_json)
                    .where(
                        d.c.campaign_id == campaign_id,
                        d.c.stage == stage,
                        d.c.item_id.in_(ids[start : start + 500]),
                    )
                    .order_by(d.c.seq)
                ).all()
            for row in rows:
                decision = ItemDecision.model_validate_json(row.decision_json)
                if not decision.default:
                    found[row.item_id] = decision.verdict
        return found

    def settle_items(
        self, campaign_id: str, settled: Sequence[Settled], defaults: Sequence[ItemDecision] = ()
    ) -> None:
        """A page of items' outcomes after their last stage closed, and the deadline's decisions for items
        nobody decided, in one transaction: one commit a page instead of one or two an item. A default is
        written once: a settlement retried after a crash finds it."""
        with self._write() as conn:
            for decision in defaults:
                _record_default(conn, campaign_id, decision)
            if settled:
                conn.execute(
                    _SETTLE,
                    [
                        {
                            "b_campaign": campaign_id,
                            "b_item": s.item_id,
                            "b_outcome": s.outcome.value,
                            "b_verdict": s.verdict,
                        }
                        for s in settled
                    ],
                )

    def record_refusal(self, campaign_id: str, attempt: RefusedAttempt) -> None:
        with self._write() as conn:
            conn.execute(
                insert(schema.campaign_refusals).values(campaign_id=campaign_id, **attempt.model_dump())
            )

    def refusals(self, campaign_id: str) -> list[RefusedAttempt]:
        r = schema.campaign_refusals
        with self._read() as conn:
            rows = conn.execute(
                select(r.c.item_id, r.c.actor, r.c.channel, r.c.at, r.c.reason)
                .where(r.c.campaign_id == campaign_id)
                .order_by(r.c.seq)
            ).all()
        return [RefusedAttempt.model_validate(dict(row._mapping)) for row in rows]

    # ------------------------------------------------------------------ evidence

    def save_evidence(self, campaign_id: str, files: dict[str, bytes]) -> None:
        """The campaign's evidence bundle (its files and manifest), replacing an earlier one at once."""
        e = schema.campaign_evidence
        with self._write() as conn:
            conn.execute(delete(e).where(e.c.campaign_id == campaign_id))
            conn.execute(
                insert(e),
                [{"campaign_id": campaign_id, "file_name": n, "content": c} for n, c in files.items()],
            )

    def save_evidence_files(self, campaign_id: str, files: Mapping[str, Path]) -> None:
        """:meth:`save_evidence` from files on disk (name in the bundle → path), so a large bundle is never
        held whole in memory: on SQLite each file is copied in blocks, on PostgreSQL read one at a time."""
        e = schema.campaign_evidence
        with self._write() as conn:
            conn.execute(delete(e).where(e.c.campaign_id == campaign_id))
            for name, path in files.items():
                if not self._sqlite:
                    conn.execute(
                        insert(e).values(campaign_id=campaign_id, file_name=name, content=path.read_bytes())
                    )
                    continue
                # SQLite writes a blob in place (incremental blob I/O): reserve its size, then copy the
                # file in blocks, so not even one file of the bundle is held whole.
                row = conn.execute(
                    insert(e).values(
                        campaign_id=campaign_id, file_name=name, content=func.zeroblob(path.stat().st_size)
                    )
                ).lastrowid
                sqlite = conn.connection.driver_connection
                assert sqlite is not None
                with sqlite.blobopen(e.name, "content", row) as blob, path.open("rb") as source:
                    while block := source.read(EVIDENCE_BLOCK):
                        blob.write(block)

    def evidence(self, campaign_id: str) -> dict[str, bytes]:
        e = schema.campaign_evidence
        with self._read() as conn:
            rows = conn.execute(
                select(e.c.file_name, e.c.content)
                .where(e.c.campaign_id == campaign_id)
                .order_by(e.c.file_name)
            ).all()
        return {row.file_name: bytes(row.content) for row in rows}

    # ------------------------------------------------------------------ review tasks

    def open_review_tasks(self, campaign_id: str, stage: int) -> int:
        """One review task per reviewer holding open items in ``stage``; existing tasks are kept."""
        i, t = schema.campaign_items, schema.review_tasks
        with self._write() as conn:
            present = set(
                conn.execute(
                    select(t.c.reviewer_id).where(t.c.campaign_id == campaign_id, t.c.stage == stage)
                ).scalars()
            )
            reviewers = conn.execute(
                select(i.c.reviewer_id, i.c.reviewer_kind, i.c.reviewer_name)
                .where(
                    i.c.campaign_id == campaign_id,
                    i.c.stage == stage,
                    i.c.outcome == ItemOutcome.OPEN.value,
                    i.c.reviewer_id.is_not(None),
                )
                .distinct()
            ).all()
            rows = [
                {
                    "campaign_id": campaign_id,
                    "stage": stage,
                    "reviewer_id": r.reviewer_id,
                    "reviewer_kind": r.reviewer_kind,
                    "reviewer_name": r.reviewer_name,
                    "reminders_sent": 0,
                    "handles_json": "{}",
                }
                for r in reviewers
                if r.reviewer_id not in present
            ]
            if rows:
                conn.execute(insert(t), rows)
        return len(rows)

    def reviewers_with_pending(
        self, campaign_id: str, stage: int, *, after: str = "", limit: int = PAGE_LIMIT
    ) -> list[tuple[str, str, str, int]]:
        """(reviewer id, kind, name, pending count) of reviewers with undecided open items, by id."""
        i = schema.campaign_items
        pending = func.count(i.c.id)
        with self._read() as conn:
            rows = conn.execute(
                select(i.c.reviewer_id, i.c.reviewer_kind, i.c.reviewer_name, pending)
                .where(
                    i.c.campaign_id == campaign_id,
                    i.c.stage == stage,
                    i.c.outcome == ItemOutcome.OPEN.value,
                    i.c.verdict.is_(None),
                    i.c.reviewer_id > after,
                )
                .group_by(i.c.reviewer_id, i.c.reviewer_kind, i.c.reviewer_name)
                .order_by(i.c.reviewer_id)
                .limit(min(limit, PAGE_LIMIT))
            ).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def mark_review_task(self, campaign_id: str, stage: int, reviewer_id: str, **changes: Any) -> None:
        t = schema.review_tasks
        with self._write() as conn:
            conn.execute(
                update(t)
                .where(
                    and_(t.c.campaign_id == campaign_id, t.c.stage == stage, t.c.reviewer_id == reviewer_id)
                )
                .values(**changes)
            )

    # ------------------------------------------------------------------ digests

    def digest(self, campaign_id: str, stage: int, reviewer_id: str, channel: str) -> DigestHandle | None:
        """The digest a reviewer was sent for a stage in ``channel``, if one was."""
        found = self.digests(campaign_id, stage, [reviewer_id], channel)
        return found[0] if found else None

    def digests(
        self, campaign_id: str, stage: int, reviewer_ids: Sequence[str], channel: str
    ) -> list[DigestHandle]:
        """The digests sent for a stage in ``channel`` to any of ``reviewer_ids`` (people's ids)."""
        g = schema.campaign_digests
        wanted = list(reviewer_ids)[:PAGE_LIMIT]
        with self._read() as conn:
            rows = conn.execute(
                select(g)
                .where(
                    g.c.campaign_id == campaign_id,
                    g.c.stage == stage,
                    g.c.channel == channel,
                    g.c.reviewer_id.in_(wanted),
                )
                .order_by(g.c.reviewer_id)
            ).all()
        return [_digest(row) for row in rows]

    def digests_page(
        self, campaign_id: str, stage: int, channel: str, *, after: str = "", limit: int = PAGE_LIMIT
    ) -> list[DigestHandle]:
        """A page of a stage's digests in ``channel``, by reviewer id after ``after``."""
        g = schema.campaign_digests
        with self._read() as conn:
            rows = conn.execute(
                select(g)
                .where(
                    g.c.campaign_id == campaign_id,
                    g.c.stage == stage,
                    g.c.channel == channel,
                    g.c.reviewer_id > after,
                )
                .order_by(g.c.reviewer_id)
                .limit(min(limit, PAGE_LIMIT))
            ).all()
        return [_digest(row) for row in rows]

    def save_digest(self, handle: DigestHandle, at: datetime) -> None:
        """Keep a digest's place and what it shows (insert, or replace the reviewer's earlier record)."""
        g = schema.campaign_digests
        key = and_(
            g.c.campaign_id == handle.campaign_id,
            g.c.stage == handle.stage,
            g.c.reviewer_id == handle.reviewer_id,
            g.c.channel == handle.channel,
        )
        values = {"conversation": handle.conversation, "message_ts": handle.message_ts, "shown": handle.shown}
        with self._write() as conn:
            if conn.execute(update(g).where(key).values(**values, updated_at=at)).rowcount == 0:
                conn.execute(insert(g).values(**handle.model_dump(), updated_at=at))

    def count_digests(self, campaign_id: str, stage: int, channel: str) -> int:
        """How many reviewers were sent a message for ``stage`` in ``channel``."""
        g = schema.campaign_digests
        with self._read() as conn:
            count: int = conn.execute(
                select(func.count()).where(
                    g.c.campaign_id == campaign_id, g.c.stage == stage, g.c.channel == channel
                )
            ).scalar_one()
        return count

    # ------------------------------------------------------------------ outcomes

    def item_reviewers(
        self, campaign_id: str, *, after: str = "", limit: int = PAGE_LIMIT
    ) -> list[tuple[str, str, str]]:
        """(reviewer id, kind, name) of everyone holding items of the campaign now (the reviewer of the
        stage each item ended in), by id after ``after``."""
        i = schema.campaign_items
        with self._read() as conn:
            rows = conn.execute(
                select(i.c.reviewer_id, i.c.reviewer_kind, i.c.reviewer_name)
                .where(i.c.campaign_id == campaign_id, i.c.reviewer_id.is_not(None), i.c.reviewer_id > after)
                .group_by(i.c.reviewer_id, i.c.reviewer_kind, i.c.reviewer_name)
                .order_by(i.c.reviewer_id)
                .limit(min(limit, PAGE_LIMIT))
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def notified_reviewers(self, campaign_id: str, reviewer_ids: Sequence[str]) -> set[str]:
        """The reviewers among these who were sent a notice in some stage."""
        t = schema.review_tasks
        with self._read() as conn:
            return set(
                conn.execute(
                    select(t.c.reviewer_id).where(
                        t.c.campaign_id == campaign_id,
                        t.c.reviewer_id.in_(list(reviewer_ids)[:PAGE_LIMIT]),
                        t.c.notified_at.is_not(None),
                    )
                ).scalars()
            )

    def defaulted_among(self, campaign_id: str, item_ids: Sequence[str]) -> set[str]:
        """The items among these that the deadline's default decided."""
        d = schema.campaign_decisions
        ids = list(item_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            with self._read() as conn:
                found.update(
                    conn.execute(
                        select(d.c.item_id).where(
                            d.c.campaign_id == campaign_id,
                            d.c.item_id.in_(ids[start : start + 500]),
                            d.c.decision_json.like('%"default":true%'),
                        )
                    ).scalars()
                )
        return found

    def outcome_counts(self, campaign_id: str) -> dict[tuple[str, bool], int]:
        """(item outcome, decided by the default) → how many items, over the whole campaign (one query,
        whatever its size)."""
        i, d = schema.campaign_items, schema.campaign_decisions
        defaulted = i.c.id.in_(
            select(d.c.item_id).where(
                d.c.campaign_id == campaign_id, d.c.decision_json.like('%"default":true%')
            )
        )
        with self._read() as conn:
            rows = conn.execute(
                select(i.c.outcome, defaulted, func.count())
                .where(i.c.campaign_id == campaign_id)
                .group_by(i.c.outcome, defaulted)
            ).all()
        return {(str(r[0]), bool(r[1])): int(r[2]) for r in rows}

    # ------------------------------------------------------------------ progress

    def progress(self, campaign_id: str, stage: int, *, top_reviewers: int = 20) -> CampaignProgress:
        i, d = schema.campaign_items, schema.campaign_decisions
        with self._read() as conn:
            by_outcome = {
                row[0]: row[1]
                for row in conn.execute(
                    select(i.c.outcome, func.count())
                    .where(i.c.campaign_id == campaign_id)
                    .group_by(i.c.outcome)
                )
            }
            in_stage = and_(
                i.c.campaign_id == campaign_id, i.c.stage == stage, i.c.outcome == ItemOutcome.OPEN.value
            )
            decided = conn.execute(
                select(func.count()).where(in_stage, i.c.verdict.is_not(None))
            ).scalar_one()
            pending = conn.execute(select(func.count()).where(in_stage, i.c.verdict.is_(None))).scalar_one()
            defaulted = conn.execute(
                select(func.count()).where(
                    d.c.campaign_id == campaign_id, d.c.decision_json.like('%"default":true%')
                )
            ).scalar_one()
            reviewer_rows = conn.execute(
                select(
                    i.c.reviewer_name,
                    func.count(i.c.verdict),
                    func.count(i.c.id) - func.count(i.c.verdict),
                )
                .where(in_stage)
                .group_by(i.c.reviewer_name)
                .order_by((func.count(i.c.id) - func.count(i.c.verdict)).desc(), i.c.reviewer_name)
                .limit(top_reviewers)
            ).all()
        return CampaignProgress(
            total=sum(by_outcome.values()),
            by_outcome=by_outcome,
            decided_in_stage=decided,
            pending_in_stage=pending,
            defaulted=defaulted,
            reviewers=tuple(
                ReviewerProgress(reviewer=r[0] or "(nobody independent)", decided=r[1], pending=r[2])
                for r in reviewer_rows
            ),
        )


def outcome_update(
    campaign_id: str,
    item_id: str,
    outcome: ItemOutcome,
    *,
    verdict: str | None = None,
    revocation: Revocation | None = None,
) -> Update:
    """The statement setting an item's outcome: :meth:`CampaignRecords.set_outcome` runs it alone, a
    revocation runs it with the ledger entry that is its evidence (``append_ledger(with_record=...)``)."""
    i = schema.campaign_items
    values: dict[str, Any] = {"outcome": outcome.value}
    if verdict is not None:
        values["verdict"] = verdict
    if revocation is not None:
        values["revocation_json"] = revocation.model_dump_json()
    return update(i).where(i.c.campaign_id == campaign_id, i.c.id == item_id).values(**values)


def _record_default(conn: Connection, campaign_id: str, decision: ItemDecision) -> None:
    if not decision.default:
        raise ValueError("only the deadline's defaults are recorded after a stage closed")
    d = schema.campaign_decisions
    present = conn.execute(
        select(d.c.seq).where(
            d.c.campaign_id == campaign_id,
            d.c.item_id == decision.item_id,
            d.c.stage == decision.stage,
            d.c.decision_json.like('%"default":true%'),
        )
    ).first()
    if present is None:
        conn.execute(
            insert(d).values(
                campaign_id=campaign_id,
                item_id=decision.item_id,
                stage=decision.stage,
                decision_json=decision.model_dump_json(),
                decided_at=decision.decided_at,
            )
        )
