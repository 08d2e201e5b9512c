"""A page of campaign items is one range of an index on SQLite, whatever the campaign's size.

Reviewers' pages, digests and handovers read items a page at a time, in id order after a cursor. When an
index did not end with the item id, SQLite (which keeps no statistics until ``ANALYZE``) chose the primary
key to get the order and walked every item of the campaign for each page: about a second a page at 100,000
items (``python -m bench campaign --size 100000``, 2026-12-07). These tests read the plan SQLite chose for
the statements the store really sends. PostgreSQL plans from its own statistics and uses the same indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from domain.campaign_state import CampaignStatus, ItemOutcome
from domain.campaigns import PARTITIONS, Assignment
from domain.campaigns import partition as domain_partition
from domain.identity import PersonRef
from store import Store
from tests.db import TEST_LEDGER_KEY
from tests.test_campaign_store import DANA, KEN, T0, _campaign, _item

GRACE = PersonRef(id="u-9", email="grace@example.com")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """SQLite, one open campaign of 40 items over Ken and Dana, five of Ken's escalated to Grace."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", ledger_key=TEST_LEDGER_KEY, anchor_path=None)
    store.migrate()
    store.create_campaign(_campaign())
    items = [_item(n) for n in range(40)]
    assignments = [Assignment(stage=0, reviewer=KEN if n % 2 else DANA, via="manager") for n in range(40)]
    store.add_items("cmp-1", list(zip(items, assignments, strict=True)))
    store.update_campaign("cmp-1", T0, status=CampaignStatus.OPEN, stage=0, stage_open=True, item_count=40)
    kens = [item.id for n, item in enumerate(items) if n % 2]
    store.record_escalation("cmp-1", 0, KEN.id, GRACE, kens[:5], T0)
    yield store
    store.close()


def plans_of(store: Store, read: Callable[[], Any]) -> list[str]:
    """The plan SQLite chose for each SELECT ``read`` sent, one string per statement."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        assert read() is not None
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    assert sent, "the read sent no SELECT"
    with store.engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        return [
            " | ".join(row[3] for row in driver.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
            for sql, params in sent
        ]


def test_a_reviewers_page_is_a_range_of_the_reviewer_index(store: Store) -> None:
    [plan] = plans_of(
        store,
        lambda: store.items("cmp-1", reviewer_id=KEN.id, stage=0, outcome=ItemOutcome.OPEN, after="it-0"),
    )
    assert (
        "USING INDEX ix_campaign_items_reviewer (campaign_id=? AND reviewer_id=? AND stage=? AND id>?)"
        in plan
    )
    assert "TEMP B-TREE" not in plan  # the order comes from the index: no sort of the reviewer's items


def test_a_reviewers_items_of_every_stage_are_a_range_of_the_reviewer_index(store: Store) -> None:
    # what telling each reviewer the outcome reads
    [plan] = plans_of(store, lambda: store.items("cmp-1", reviewer_id=KEN.id, after="it-0"))
    assert (
        "USING INDEX ix_campaign_items_reviewer_all_stages (campaign_id=? AND reviewer_id=? AND id>?)" in plan
    )
    assert "TEMP B-TREE" not in plan


def test_an_outcomes_page_and_a_subjects_items_are_ranges_of_their_indexes(store: Store) -> None:
    [by_outcome] = plans_of(store, lambda: store.items("cmp-1", outcome=ItemOutcome.OPEN, after="it-0"))
    assert "USING INDEX ix_campaign_items_outcome (campaign_id=? AND outcome=? AND id>?)" in by_outcome
    assert "TEMP B-TREE" not in by_outcome
    [by_subject] = plans_of(store, lambda: store.items("cmp-1", subject_id="u-101", after=""))
    assert "USING INDEX ix_campaign_items_subject (campaign_id=? AND subject_id=? AND id>?)" in by_subject


def test_a_page_of_escalated_items_starts_from_the_escalations_not_from_every_item(store: Store) -> None:
    [plan] = plans_of(store, lambda: store.escalated_items("cmp-1", 0, GRACE.id, after=""))
    first = plan.split(" | ")[0]
    assert first.startswith("SEARCH campaign_escalations USING INDEX ix_campaign_escalations_to")
    assert "escalated_to_id=? AND item_id>?" in first
    assert "TEMP B-TREE" not in plan
    # and the page is what it was: Ken's five escalated items, in id order
    page = store.escalated_items("cmp-1", 0, GRACE.id, after="")
    assert [i.id for i in page] == sorted(i.id for i in page) and len(page) == 5


def test_a_partitions_page_is_a_range_of_ids_not_a_walk_of_the_partitions_before_it(store: Store) -> None:
    # What settling and applying a partition read. With LIKE 'it-a%' (no range: SQLite's LIKE ignores
    # case) the plan was "campaign_id=? AND id>?", every partition after the cursor; now the partition's
    # ids are bounded on both sides, through whichever index SQLite prefers.
    [plan] = plans_of(store, lambda: store.items("cmp-1", outcome=ItemOutcome.OPEN, partition="a"))
    assert plan.startswith("SEARCH campaign_items USING INDEX") and "id>? AND id<?)" in plan
    assert "TEMP B-TREE" not in plan
    every = store.items("cmp-1")
    for partition in PARTITIONS:
        page = store.items("cmp-1", outcome=ItemOutcome.OPEN, partition=partition)
        assert [i.id for i in page] == [i.id for i in every if domain_partition(i.id) == partition]
