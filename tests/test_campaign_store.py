"""Campaign records on SQLite and PostgreSQL: idempotent launches and item writes, decisions only while
their stage is open, review tasks per reviewer, pages and progress."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.campaign_decisions import ItemDecision
from domain.campaign_report import RefusedAttempt, Revocation
from domain.campaign_state import CampaignRecord, CampaignStatus, ItemOutcome
from domain.campaigns import (
    AccessVia,
    Assignment,
    CampaignItem,
    ItemAccess,
    Reviewer,
    Source,
    Subject,
    SubjectKind,
)
from domain.identity import Actor, PersonRef
from store.campaigns import CampaignConflict, CampaignRecords, Settled, spec_hash
from tests.db import TEST_LEDGER_KEY

pytest_plugins = ["tests.db"]

T0 = datetime(2027, 1, 4, 9, tzinfo=UTC)
KEN = Reviewer(kind="person", id="u-2", name="ken@example.com")
DANA = Reviewer(kind="person", id="u-5", name="dana@example.com")
SPEC = 'name = "q1"\n'


@pytest.fixture
def records(store_url: str, tmp_path: Path) -> Iterator[CampaignRecords]:
    store = CampaignRecords(store_url, ledger_key=TEST_LEDGER_KEY, anchor_path=tmp_path / "anchor")
    store.migrate()
    yield store
    store.close()


def _campaign(campaign_id: str = "cmp-1", spec: str = SPEC) -> CampaignRecord:
    return CampaignRecord(
        id=campaign_id,
        name="Q1",
        owner="grace@example.com",
        spec_toml=spec,
        spec_sha256=spec_hash(spec),
        status=CampaignStatus.SNAPSHOTTING,
        launched_at=T0,
        workflow_id=f"campaign-{campaign_id}",
        updated_at=T0,
    )


def _item(n: int) -> CampaignItem:
    return CampaignItem.of(
        Subject(kind=SubjectKind.PERSON, id=f"u-{100 + n}", name=f"p{n}@example.com"),
        ItemAccess(via=AccessVia.GROUP, group="db-owners", sources=(Source.HOOP,), connections=("pg",)),
    )


def _open(records: CampaignRecords, n: int = 5) -> list[CampaignItem]:
    records.create_campaign(_campaign())
    items = [_item(k) for k in range(n)]
    batch = [
        (item, Assignment(stage=0, reviewer=KEN if k % 2 == 0 else DANA, via="manager"))
        for k, item in enumerate(items)
    ]
    assert records.add_items("cmp-1", batch) == n
    records.update_campaign("cmp-1", T0, status=CampaignStatus.OPEN, stage=0, stage_open=True, item_count=n)
    return items


def _decision(item: CampaignItem, verdict: str = "keep", *, stage: int = 0, minutes: int = 1) -> ItemDecision:
    return ItemDecision(
        item_id=item.id,
        stage=stage,
        verdict=verdict,
        actor=Actor(person=PersonRef(id=KEN.id, email=KEN.name), channel="web"),
        decided_at=T0 + timedelta(minutes=minutes),
    )


def test_a_retried_launch_and_retried_item_batches_write_nothing_twice(records: CampaignRecords) -> None:
    items = _open(records, 3)
    assert records.create_campaign(_campaign()).status is CampaignStatus.OPEN  # the stored one comes back
    with pytest.raises(CampaignConflict, match="another spec"):
        records.create_campaign(_campaign(spec='name = "other"\n'))
    again = [(item, Assignment(stage=0, reviewer=KEN, via="manager")) for item in [*items, _item(9)]]
    assert records.add_items("cmp-1", again) == 1
    assert len(records.items("cmp-1")) == 4
    assert records.items("cmp-1", reviewer_id=DANA.id)[0].assignment.reviewer == DANA  # not overwritten


def test_pages_filter_by_reviewer_stage_and_outcome(records: CampaignRecords) -> None:
    _open(records, 7)
    first = records.items("cmp-1", limit=3)
    rest = records.items("cmp-1", after=first[-1].id)
    assert len(first) == 3 and len(rest) == 4
    assert [i.id for i in first + rest] == sorted(i.id for i in first + rest)
    assert {
        i.assignment.reviewer.name
        for i in records.items("cmp-1", reviewer_id=KEN.id)
        if i.assignment.reviewer
    } == {KEN.name}
    assert len(records.items("cmp-1", reviewer_id=KEN.id)) == 4
    assert records.items("cmp-1", outcome=ItemOutcome.KEPT) == []
    stored = records.item("cmp-1", first[0].id)
    assert stored is not None and stored.outcome is ItemOutcome.OPEN and stored.stage == 0


def test_decisions_are_recorded_only_while_their_stage_is_open(records: CampaignRecords) -> None:
    items = _open(records, 3)
    assert records.record_decisions("cmp-1", [_decision(items[0]), _decision(items[1], "revoke")]) == 2
    # Changed before the stage closes: the newer decision is the item's verdict, both are kept.
    records.record_decisions("cmp-1", [_decision(items[0], "revoke", minutes=2)])
    assert records.item("cmp-1", items[0].id).verdict == "revoke"  # type: ignore[union-attr]
    assert [d.verdict for _, d in records.decisions("cmp-1", item_id=items[0].id)] == ["keep", "revoke"]
    # A batch with one bad decision records none of it.
    with pytest.raises(CampaignConflict, match=r"stage 2 of campaign cmp-1 is not open \(stage 1 is\)"):
        records.record_decisions("cmp-1", [_decision(items[2]), _decision(items[2], stage=1)])
    assert records.item("cmp-1", items[2].id).verdict is None  # type: ignore[union-attr]
    with pytest.raises(CampaignConflict, match="has no item it-nope"):
        records.record_decisions("cmp-1", [_decision(items[0]).model_copy(update={"item_id": "it-nope"})])
    records.update_campaign("cmp-1", T0, stage_open=False)
    with pytest.raises(CampaignConflict, match="stage 1 of campaign cmp-1 is closed"):
        records.record_decisions("cmp-1", [_decision(items[2])])
    default = _decision(items[2]).model_copy(update={"actor": None, "default": True})
    assert records.record_decisions("cmp-1", [default]) == 1  # the deadline's default, after the close
    records.update_campaign("cmp-1", T0, status=CampaignStatus.CLOSED)
    with pytest.raises(CampaignConflict, match="is CLOSED: decisions are closed"):
        records.record_decisions("cmp-1", [_decision(items[1])])
    with pytest.raises(CampaignConflict, match="already CLOSED"):
        records.update_campaign("cmp-1", T0, status=CampaignStatus.OPEN)


def test_review_tasks_reminders_and_progress(records: CampaignRecords) -> None:
    items = _open(records, 5)
    assert records.open_review_tasks("cmp-1", 0) == 2
    assert records.open_review_tasks("cmp-1", 0) == 0  # idempotent
    records.record_decisions("cmp-1", [_decision(items[1]), _decision(items[3], "revoke")])  # dana's two
    pending = records.reviewers_with_pending("cmp-1", 0)
    assert pending == [(KEN.id, "person", KEN.name, 3)]  # dana decided everything: no reminder for her
    records.mark_review_task("cmp-1", 0, KEN.id, reminders_sent=1, notified_at=T0)
    progress = records.progress("cmp-1", 0)
    assert (progress.total, progress.decided_in_stage, progress.pending_in_stage) == (5, 2, 3)
    assert progress.by_outcome == {"open": 5}
    assert [(r.reviewer, r.decided, r.pending) for r in progress.reviewers] == [
        (KEN.name, 0, 3),
        (DANA.name, 2, 0),
    ]


def test_a_page_settles_in_one_transaction_and_a_retried_settlement_writes_its_defaults_once(
    records: CampaignRecords,
) -> None:
    items = _open(records, 4)
    records.record_decisions("cmp-1", [_decision(items[0]), _decision(items[1], "revoke")])
    default = _decision(items[2], "revoke").model_copy(
        update={"actor": None, "default": True, "default_basis": "the campaign's default"}
    )
    settled = [
        Settled(items[0].id, ItemOutcome.KEPT),
        Settled(items[1].id, ItemOutcome.REVOKE),
        Settled(items[2].id, ItemOutcome.REVOKE, verdict="revoke"),
    ]
    records.settle_items("cmp-1", settled, [default])
    records.settle_items("cmp-1", settled, [default])  # the activity retried after its commit
    after = {i: records.item("cmp-1", i.id) for i in items}
    assert [(s.outcome, s.verdict) for s in after.values() if s is not None] == [
        (ItemOutcome.KEPT, "keep"),  # a reviewer's verdict stays when the settlement names none
        (ItemOutcome.REVOKE, "revoke"),
        (ItemOutcome.REVOKE, "revoke"),  # the default's
        (ItemOutcome.OPEN, None),  # not in the page
    ]
    defaults = [d for _, d in records.decisions("cmp-1") if d.default]
    assert [(d.item_id, d.verdict) for d in defaults] == [(items[2].id, "revoke")]


def test_reassign_outcomes_and_refusals(records: CampaignRecords) -> None:
    items = _open(records, 2)
    records.record_decisions("cmp-1", [_decision(items[0])])
    # Re-routed within the stage (its reviewer left): the decision made in it stands.
    records.reassign("cmp-1", items[0].id, Assignment(stage=0, reviewer=KEN, via="fallback"))
    assert records.item("cmp-1", items[0].id).verdict == "keep"  # type: ignore[union-attr]
    # On to the next stage: its reviewer has decided nothing yet.
    records.reassign("cmp-1", items[0].id, Assignment(stage=1, reviewer=DANA, via="resource_owner"))
    moved = records.item("cmp-1", items[0].id)
    assert moved is not None and (moved.stage, moved.assignment.reviewer) == (1, DANA)
    assert moved.verdict is None
    assert [d.verdict for _, d in records.decisions("cmp-1", item_id=items[0].id)] == ["keep"]
    revocation = Revocation(
        status="applied", systems=("hoop",), applied_at=T0, read_back="groups: engineering"
    )
    records.set_outcome("cmp-1", items[1].id, ItemOutcome.REVOKED, verdict="revoke", revocation=revocation)
    done = records.item("cmp-1", items[1].id)
    assert done is not None and done.outcome is ItemOutcome.REVOKED and done.revocation == revocation
    with pytest.raises(CampaignConflict, match="is not open"):
        records.reassign("cmp-1", items[1].id, Assignment(stage=1, reviewer=KEN, via="manager"))
    attempt = RefusedAttempt(
        item_id=items[0].id, actor="p0@example.com", channel="web", at=T0, reason="own access"
    )
    records.record_refusal("cmp-1", attempt)
    assert records.refusals("cmp-1") == [attempt]
    assert [c.id for c in records.list_campaigns()] == ["cmp-1"]
