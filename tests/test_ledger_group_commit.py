"""Ledger appends made at the same moment by threads of one process share a transaction, each keeping its own
outcome (store/group_commit.py). The batches are made deterministic here by holding the first append's
commit until the others have queued behind it.

The ledger tests run on SQLite and on PostgreSQL (tests/db.py)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Executable, update
from sqlalchemy.exc import IntegrityError

import store.schema as schema
from domain.campaign_state import ItemOutcome
from domain.campaigns import Assignment
from store import LedgerEntry, Store
from store.campaigns import outcome_update
from store.group_commit import GroupCommit
from store.ledger import IdempotencyConflict, content_hash
from tests.test_campaign_store import KEN, _campaign, _item

pytest_plugins = ["tests.db"]


def _append(
    store: Store, subject: str, key: str | None = None, with_record: Executable | None = None, **data: Any
) -> LedgerEntry:
    payload = data or {"subject": subject}
    return store.append_ledger(
        kind="t",
        subject=subject,
        actor="a",
        channel="c",
        data=payload,
        idempotency_key=key,
        content_hash=content_hash(kind="t", subject=subject, actor="a", channel="c", data=payload),
        with_record=with_record,
    )


class HeldFirstBatch:
    """Wraps the store's batch commit: records each batch's subjects and holds the first batch until
    ``release``, so that appends started meanwhile queue into the second batch."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[str]] = []
        self.holding = threading.Event()
        self._gate = threading.Event()
        original = store._commit_appends

        def commit(batch: Sequence[Any]) -> None:
            self.batches.append([request.subject for request in batch])
            if len(self.batches) == 1:
                self.holding.set()
                assert self._gate.wait(30), "the first batch was never released"
            original(batch)

        monkeypatch.setattr(store, "_commit_appends", commit)

    def release(self) -> None:
        self._gate.set()


@contextmanager
def appending(
    store: Store, work: Mapping[str, Callable[[], LedgerEntry]]
) -> Iterator[dict[str, LedgerEntry | BaseException]]:
    """Run each of ``work`` in a thread of its own; the outcomes (entry or error) are filled in on exit."""
    outcomes: dict[str, LedgerEntry | BaseException] = {}

    def run(name: str, call: Callable[[], LedgerEntry]) -> None:
        try:
            outcomes[name] = call()
        except BaseException as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=item) for item in work.items()]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        for thread in threads:
            thread.join(60)


def _wait_for_queue(store: Store, count: int) -> None:
    deadline = time.monotonic() + 30
    while store._group_commit.queued < count:
        assert time.monotonic() < deadline, f"only {store._group_commit.queued} of {count} appends queued"
        time.sleep(0.005)


def test_appends_arriving_during_a_commit_are_committed_together_in_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldFirstBatch(store, monkeypatch)
    with appending(store, {"first": lambda: _append(store, "first")}) as first:
        assert held.holding.wait(30)
        names = [f"w{i}" for i in range(6)]
        with appending(store, {n: functools.partial(_append, store, n) for n in names}) as rest:
            _wait_for_queue(store, len(names))
            held.release()
    assert len(held.batches) == 2, held.batches
    assert held.batches[0] == ["first"]
    second = held.batches[1]
    assert sorted(second) == names, "every append that queued meanwhile went into the second batch"
    outcome = first["first"]
    assert isinstance(outcome, LedgerEntry) and outcome.seq == 1
    # each thread got its own entry, chained in the batch's order
    seqs = {name: rest[name] for name in names}
    assert all(isinstance(entry, LedgerEntry) for entry in seqs.values()), seqs
    assert [seqs[name].seq for name in second] == list(range(2, 8))  # type: ignore[union-attr]
    assert [e.subject for e in store.ledger_entries()] == ["first", *second]
    verification = store.verify_ledger()
    assert verification.ok and verification.entries == 7, verification.problem
    assert store.anchor_path is not None
    lines = store.anchor_path.read_text().splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(1, 8)), (
        "one anchor line per entry, in order"
    )


def test_a_conflict_fails_only_its_own_append_in_a_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _append(store, "seen", key="k-seen", v=1)
    held = HeldFirstBatch(store, monkeypatch)
    with appending(store, {"lead": lambda: _append(store, "lead")}):
        assert held.holding.wait(30)
        work = {
            "before": lambda: _append(store, "before", key="k-before"),
            "conflict": lambda: _append(store, "conflict", key="k-seen", v=2),  # the key, other content
            "repeat": lambda: _append(store, "seen", key="k-seen", v=1),  # the key, same content
            "after": lambda: _append(store, "after"),
        }
        with appending(store, work) as outcomes:
            _wait_for_queue(store, len(work))
            held.release()
    assert isinstance(outcomes["conflict"], IdempotencyConflict)
    assert "k-seen" in str(outcomes["conflict"])
    repeat = outcomes["repeat"]
    assert isinstance(repeat, LedgerEntry) and repeat.seq == 1, "a repeat gets the entry its key holds"
    assert isinstance(outcomes["before"], LedgerEntry) and isinstance(outcomes["after"], LedgerEntry)
    assert sorted(e.subject for e in store.ledger_entries()) == ["after", "before", "lead", "seen"]
    assert store.verify_ledger().ok


def test_the_same_key_twice_in_one_batch_appends_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldFirstBatch(store, monkeypatch)
    with appending(store, {"lead": lambda: _append(store, "lead")}):
        assert held.holding.wait(30)
        work = {f"twin{i}": (lambda: _append(store, "twin", key="k-twin")) for i in range(3)}
        with appending(store, work) as outcomes:
            _wait_for_queue(store, len(work))
            held.release()
    entries = list(outcomes.values())
    assert all(isinstance(e, LedgerEntry) for e in entries), entries
    assert {e.seq for e in entries} == {2}  # type: ignore[union-attr]
    assert [e.subject for e in store.ledger_entries()] == ["lead", "twin"]


def test_a_batch_whose_transaction_fails_fails_every_append_in_it_and_commits_none(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldFirstBatch(store, monkeypatch)
    failing = {"on": False}
    original_write = store._write

    def write(**kw: Any) -> Any:
        if failing["on"] and len(held.batches) >= 2:  # the lead's batch commits; the next one fails
            raise RuntimeError("the database went away")
        return original_write(**kw)

    monkeypatch.setattr(store, "_write", write)
    with appending(store, {"lead": lambda: _append(store, "lead")}):
        assert held.holding.wait(30)
        work = {f"w{i}": functools.partial(_append, store, f"w{i}") for i in range(3)}
        with appending(store, work) as outcomes:
            _wait_for_queue(store, len(work))
            failing["on"] = True
            held.release()
    assert all(isinstance(o, RuntimeError) for o in outcomes.values()), outcomes
    assert [e.subject for e in store.ledger_entries()] == ["lead"]
    failing["on"] = False
    assert _append(store, "later").seq == 2, "the next append works and chains after the last commit"
    assert store.verify_ledger().ok


def test_a_record_written_with_its_entry_commits_with_it_and_never_without_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item's outcome written with the ledger entry that is its evidence (a campaign's revocation)."""
    store.create_campaign(_campaign())
    items = [_item(n) for n in range(4)]
    store.add_items("cmp-1", [(item, Assignment(stage=0, reviewer=KEN, via="manager")) for item in items])

    def revoked(n: int) -> Executable:
        return outcome_update("cmp-1", items[n].id, ItemOutcome.REVOKED)

    _append(store, "seen", key="k-seen", v=1)
    held = HeldFirstBatch(store, monkeypatch)
    with appending(store, {"lead": lambda: _append(store, "lead")}):
        assert held.holding.wait(30)
        work = {
            "new": lambda: _append(store, "new", key="k-new", with_record=revoked(0)),
            "repeat": lambda: _append(store, "seen", key="k-seen", with_record=revoked(1), v=1),
            "conflict": lambda: _append(store, "other", key="k-seen", with_record=revoked(2), v=2),
        }
        with appending(store, work) as outcomes:
            _wait_for_queue(store, len(work))
            held.release()
    assert len(held.batches) == 2 and sorted(held.batches[1]) == ["new", "other", "seen"]
    assert isinstance(outcomes["conflict"], IdempotencyConflict)

    def outcome(n: int) -> ItemOutcome:
        item = store.item("cmp-1", items[n].id)
        assert item is not None
        return item.outcome

    # the new entry's record and the repeat's (its retry finds the entry) are written; the conflict's not
    assert [outcome(n) for n in range(3)] == [ItemOutcome.REVOKED, ItemOutcome.REVOKED, ItemOutcome.OPEN]
    # a record that cannot be written fails its append, and the entry is not committed either
    i = schema.campaign_items
    broken = update(i).where(i.c.id == items[3].id).values(outcome=None)
    with pytest.raises(IntegrityError):
        _append(store, "broken", with_record=broken)
    assert "broken" not in [e.subject for e in store.ledger_entries()] and outcome(3) is ItemOutcome.OPEN
    assert store.verify_ledger().ok


def test_observers_see_each_new_entry_once_and_repeats_not_at_all(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    store.observe_ledger(lambda entry: seen.append(entry.seq))
    held = HeldFirstBatch(store, monkeypatch)
    with appending(store, {"lead": lambda: _append(store, "lead", key="k1")}):
        assert held.holding.wait(30)
        work = {
            "a": lambda: _append(store, "a"),
            "again": lambda: _append(store, "lead", key="k1"),
            "b": lambda: _append(store, "b"),
        }
        with appending(store, work):
            _wait_for_queue(store, len(work))
            held.release()
    assert sorted(seen) == [1, 2, 3]


class _Request:
    def __init__(self, name: str) -> None:
        self.name = name
        self.settled = False
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        self.error, self.settled = error, True


def test_a_leader_commits_at_most_a_batch_at_a_time_and_keeps_going_until_its_own_is_done() -> None:
    group: GroupCommit[_Request] = GroupCommit(max_batch=2)
    batches: list[list[str]] = []
    queued = [_Request(f"r{i}") for i in range(5)]
    with group._queue_lock:  # five requests already waiting, as if their threads had queued
        group._queue.extend(queued)
    last = _Request("last")
    group.submit(last, lambda batch: batches.append([r.name for r in batch]))
    assert batches == [["r0", "r1"], ["r2", "r3"], ["r4", "last"]]
    assert all(r.settled and r.error is None for r in [*queued, last])
    assert group.queued == 0


def test_an_interrupt_in_a_commit_fails_the_batch_and_reaches_the_leader() -> None:
    group: GroupCommit[_Request] = GroupCommit(max_batch=8)
    other = _Request("other")
    with group._queue_lock:
        group._queue.append(other)

    def interrupted(batch: Sequence[_Request]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        group.submit(_Request("lead"), interrupted)
    assert other.settled and isinstance(other.error, KeyboardInterrupt)
    with pytest.raises(ValueError, match="at least one"):
        GroupCommit(max_batch=0)
