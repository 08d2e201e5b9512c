"""The evidence ledger: chaining, idempotency, concurrency, and tampering caught naming the first bad entry.

Every test runs on SQLite and on PostgreSQL (see tests/db.py). Tampering is done the way the threat model
describes it: raw SQL against the table by someone who does not hold the ledger key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from store import GENESIS_HASH, LedgerEntry, Store
from store.ledger import entry_hash, format_at
from store.schema import ledger as ledger_table
from tests.db import TEST_LEDGER_KEY

pytest_plugins = ["tests.db"]

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


def append(store: Store, i: int, **kw: Any) -> LedgerEntry:
    return store.append_ledger(
        kind=kw.pop("kind", "request.approved"),
        subject=kw.pop("subject", f"req-{i % 3}"),
        actor=kw.pop("actor", "dana@example.com"),
        channel=kw.pop("channel", "slack"),
        data=kw.pop("data", {"i": i, "reason": "looks fine"}),
        at=kw.pop("at", T0 + timedelta(seconds=i)),
        **kw,
    )


def fill(store: Store, n: int = 10) -> list[LedgerEntry]:
    return [append(store, i) for i in range(1, n + 1)]


def sql(store: Store, statement: str, **params: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def anchor_lines(store: Store) -> list[tuple[int, str]]:
    assert store.anchor_path is not None
    out = []
    for line in store.anchor_path.read_text().splitlines():
        seq, digest = line.split(" ")
        out.append((int(seq), digest))
    return out


def assert_bad(store: Store, first_bad: int | None, *fragments: str) -> None:
    result = store.verify_ledger()
    assert not result.ok
    assert result.first_bad_seq == first_bad, result.problem
    assert result.problem is not None
    for fragment in fragments:
        assert fragment in result.problem, result.problem


# --- appending -------------------------------------------------------------------------------------


def test_append_chains_entries_and_verifies(store: Store) -> None:
    entries = fill(store, 3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    assert entries[0].at == T0 + timedelta(seconds=1) and entries[0].at.tzinfo is UTC
    assert store.ledger_entries() == entries
    result = store.verify_ledger()
    assert result.ok and result.problem is None and result.first_bad_seq is None
    assert (result.entries, result.head_seq, result.head_hash) == (3, 3, entries[2].hash)
    assert result.anchored_seq == 3
    head = store.ledger_head()
    assert (head.seq, head.hash) == (3, entries[2].hash)
    assert anchor_lines(store) == [(e.seq, e.hash) for e in entries]


def test_empty_ledger_verifies_and_has_the_genesis_head(store: Store) -> None:
    result = store.verify_ledger()
    assert result.ok and result.entries == 0 and result.head_seq == 0 and result.head_hash == GENESIS_HASH
    head = store.ledger_head()
    assert (head.seq, head.hash) == (0, GENESIS_HASH)


def test_hash_is_hmac_of_the_canonical_json_of_the_entry(store: Store) -> None:
    entry = append(
        store, 1, data={"z": 1, "a": {"y": [1, 2.5, None], "b": "ünïcødé ✓"}}, idempotency_key="k1"
    )
    payload = {
        "seq": entry.seq,
        "at": "2025-03-01T09:00:01.123456Z",
        "kind": entry.kind,
        "subject": entry.subject,
        "actor": entry.actor,
        "channel": entry.channel,
        "data": entry.data,
        "idempotency_key": "k1",
        "prev_hash": GENESIS_HASH,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    assert entry.hash == hmac.new(TEST_LEDGER_KEY, canonical, hashlib.sha256).hexdigest()
    assert store.entry_hash(entry) == entry.hash


def test_round_trip_through_the_database_is_byte_identical(make_store: Callable[..., Store]) -> None:
    writer = make_store()
    paris = timezone(timedelta(hours=1))
    at = datetime(2025, 6, 30, 23, 59, 59, 999999, tzinfo=paris)
    data = {
        "b": [3, 1, 2],
        "a": {"nested": True, "when": T0, "float": 0.1, "big": 2**53 + 1},
        "text": 'quote " backslash \\ tab \t emoji 🎉',
    }
    written = writer.append_ledger(kind="k", subject="s", actor="a", channel="cli", data=data, at=at)
    assert written.at == at and format_at(written.at) == "2025-06-30T22:59:59.999999Z"
    assert written.data["a"]["when"] == "2025-03-01T09:00:00.123456Z"
    reader = make_store()  # a different engine and connection
    (read,) = reader.ledger_entries()
    assert read == written
    assert reader.verify_ledger().ok


def test_bad_input_appends_nothing(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        append(store, 1, at=datetime(2025, 1, 1, 12, 0))
    with pytest.raises(ValueError):
        append(store, 2, data={"x": float("nan")})
    with pytest.raises(TypeError, match="cannot be recorded"):
        append(store, 3, data={"x": object()})
    assert store.ledger_entries() == []
    assert append(store, 4).seq == 1


def test_idempotency_key_returns_the_existing_entry(store: Store) -> None:
    first = append(store, 1, idempotency_key="wf-r1/step-3")
    append(store, 2)
    again = append(store, 3, idempotency_key="wf-r1/step-3", data={"different": True})
    assert again == first
    assert [e.seq for e in store.ledger_entries()] == [1, 2]
    assert len(anchor_lines(store)) == 2
    assert store.verify_ledger().ok


def test_ledger_entries_filters(store: Store) -> None:
    entries = fill(store, 9)  # subjects cycle req-1, req-2, req-0
    assert store.ledger_entries(subject="req-1") == [entries[0], entries[3], entries[6]]
    assert store.ledger_entries(after_seq=7) == entries[7:]
    assert store.ledger_entries(subject="req-2", after_seq=2, limit=1) == [entries[4]]
    assert store.ledger_entries(limit=0) == []
    assert store.ledger_entries(subject="nobody") == []


def _hammer(stores: list[Store], threads_per_store: int, per_thread: int, keyed: bool = False) -> list[int]:
    barrier = threading.Barrier(len(stores) * threads_per_store)
    seqs: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(s: Store, worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                key = f"dup-{i}" if keyed else None
                entry = s.append_ledger(
                    kind="t", subject=f"w{worker}", actor="a", channel="c", data={"i": i}, idempotency_key=key
                )
                with lock:
                    seqs.append(entry.seq)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(s, n * threads_per_store + t))
        for n, s in enumerate(stores)
        for t in range(threads_per_store)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    return seqs


def _assert_intact(store: Store, n: int) -> None:
    result = store.verify_ledger()
    assert result.ok, result.problem
    assert result.entries == n and result.head_seq == n
    assert [e.seq for e in store.ledger_entries()] == list(range(1, n + 1))
    lines = anchor_lines(store)
    assert len(lines) == n
    assert [seq for seq, _ in lines] == list(range(1, n + 1))  # anchor lines stay in order
    assert lines[-1] == (n, result.head_hash)


def test_concurrent_appends_from_threads_keep_the_chain_intact(store: Store) -> None:
    seqs = _hammer([store], threads_per_store=4, per_thread=15)
    assert sorted(seqs) == list(range(1, 61))
    _assert_intact(store, 60)


def test_concurrent_appends_from_two_stores_on_one_database(make_store: Callable[..., Store]) -> None:
    stores = [make_store(), make_store()]
    seqs = _hammer(stores, threads_per_store=2, per_thread=15)
    assert sorted(seqs) == list(range(1, 61))
    _assert_intact(stores[0], 60)


def test_concurrent_appends_with_the_same_idempotency_keys_append_once(store: Store) -> None:
    seqs = _hammer([store], threads_per_store=4, per_thread=10, keyed=True)
    assert sorted(set(seqs)) == list(range(1, 11))  # every thread got the one entry per key
    _assert_intact(store, 10)


_CHILD = """
import sys, time
from pathlib import Path
from store import Store
url, anchor, start, name = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
store = Store(url, ledger_key=b"test-ledger-key-0123456789abcdef", anchor_path=anchor)
time.sleep(max(0.0, start - time.time()))
store.migrate()
for i in range(25):
    store.append_ledger(kind="t", subject=name, actor="a", channel="c", data={"i": i})
store.close()
"""


def test_two_processes_migrate_and_append_at_once(store_url: str, tmp_path: Path) -> None:
    """The worker and the web app start together on a fresh database and both write evidence."""
    anchor = tmp_path / "ledger.anchor"
    start = time.time() + 1.5  # both children are past their imports by then
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, store_url, str(anchor), str(start), name],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("worker", "web")
    ]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    store = Store(store_url, ledger_key=TEST_LEDGER_KEY, anchor_path=anchor)
    try:
        _assert_intact(store, 50)
        assert {e.subject for e in store.ledger_entries()} == {"worker", "web"}
    finally:
        store.close()


# --- tampering -------------------------------------------------------------------------------------


def test_edited_data_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "UPDATE ledger SET data = :d WHERE seq = 4", d='{"i":4,"reason":"looks bad"}')
    assert_bad(store, 4, "entry 4 was altered")


def test_whitespace_only_edit_of_data_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "UPDATE ledger SET data = :d WHERE seq = 2", d='{"i": 2, "reason": "looks fine"}')
    assert_bad(store, 2, "entry 2 was altered")


def test_edited_kind_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "UPDATE ledger SET kind = 'request.denied' WHERE seq = 6")
    assert_bad(store, 6, "entry 6 was altered")


def test_edited_time_actor_or_idempotency_key_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "UPDATE ledger SET at = '2025-03-01T09:00:09.123457Z' WHERE seq = 8")
    assert_bad(store, 8, "entry 8 was altered")
    sql(store, "UPDATE ledger SET actor = 'mallory@example.com' WHERE seq = 3")
    assert_bad(store, 3, "entry 3 was altered")


def test_hash_recomputed_with_a_wrong_key_is_caught(store: Store) -> None:
    entries = fill(store)
    forged_data = '{"i":5,"reason":"forged"}'
    e = entries[4]
    forged = entry_hash(
        b"attacker-key",
        seq=5,
        at=format_at(e.at),
        kind=e.kind,
        subject=e.subject,
        actor=e.actor,
        channel=e.channel,
        data=forged_data,
        idempotency_key=None,
        prev_hash=e.prev_hash,
    )
    sql(store, "UPDATE ledger SET data = :d, hash = :h WHERE seq = 5", d=forged_data, h=forged)
    sql(store, "UPDATE ledger SET prev_hash = :h WHERE seq = 6", h=forged)  # relink the next entry too
    assert_bad(store, 5, "entry 5 was altered")


def test_deleted_middle_entry_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "DELETE FROM ledger WHERE seq = 5")
    assert_bad(store, 5, "entry 5 is missing", "sequence jumps from 4 to 6")


def test_deleted_middle_entry_with_renumbering_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "DELETE FROM ledger WHERE seq = 5")
    for seq in range(6, 11):
        sql(store, "UPDATE ledger SET seq = :new WHERE seq = :old", new=seq - 1, old=seq)
    assert_bad(store, 5, "entry 5 was moved: it holds the contents written as entry 6")


def test_deleted_first_entry_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "DELETE FROM ledger WHERE seq = 1")
    assert_bad(store, 1, "entry 1 is missing")


def _swap(store: Store, a: int, b: int) -> None:
    sql(store, "UPDATE ledger SET seq = -1 WHERE seq = :a", a=a)
    sql(store, "UPDATE ledger SET seq = :a WHERE seq = :b", a=a, b=b)
    sql(store, "UPDATE ledger SET seq = :b WHERE seq = -1", b=b)


@pytest.mark.parametrize(("a", "b"), [(3, 7), (4, 5), (1, 2), (9, 10)])
def test_reordered_entries_are_caught(store: Store, a: int, b: int) -> None:
    fill(store)
    _swap(store, a, b)
    assert_bad(store, a, f"entry {a} was moved: it holds the contents written as entry {b}")


def test_relinked_entry_is_reported_as_not_following(store: Store) -> None:
    """Only the key holder could do this; the message still says which link broke."""
    entries = fill(store)
    e = entries[6]
    wrong_prev = entries[2].hash
    rehashed = entry_hash(
        TEST_LEDGER_KEY,
        seq=7,
        at=format_at(e.at),
        kind=e.kind,
        subject=e.subject,
        actor=e.actor,
        channel=e.channel,
        data=json.dumps(e.data, sort_keys=True, separators=(",", ":")),
        idempotency_key=None,
        prev_hash=wrong_prev,
    )
    sql(store, "UPDATE ledger SET prev_hash = :p, hash = :h WHERE seq = 7", p=wrong_prev, h=rehashed)
    sql(store, "UPDATE ledger SET prev_hash = :h WHERE seq = 8", h=rehashed)
    assert_bad(store, 7, "entry 7 does not follow entry 6: its prev_hash differs")


def test_first_of_several_problems_is_named(store: Store) -> None:
    fill(store)
    sql(store, "UPDATE ledger SET kind = 'x' WHERE seq = 8")
    sql(store, "DELETE FROM ledger WHERE seq = 6")
    sql(store, "UPDATE ledger SET data = '{}' WHERE seq = 3")
    assert_bad(store, 3, "entry 3 was altered")


def test_truncation_of_the_last_entry_is_caught_by_the_anchor(store: Store) -> None:
    fill(store)
    sql(store, "DELETE FROM ledger WHERE seq = 10")
    assert_bad(store, 10, "the ledger was truncated: the anchor records entry 10 but the table ends at 9")


def test_truncation_stays_caught_after_new_entries_are_appended(store: Store) -> None:
    """Removing the newest evidence and letting grantflow write on must not hide the removal: the new
    entries reuse the removed sequence numbers with other hashes, which the older anchor lines contradict."""
    fill(store, 5)
    sql(store, "DELETE FROM ledger WHERE seq >= 4")
    assert not store.verify_ledger().ok
    for i in range(3):
        append(store, 100 + i)
    result = store.verify_ledger()
    assert not result.ok and result.first_bad_seq == 4
    assert "two different hashes for entry 4" in (result.problem or "")


def test_truncation_of_several_entries_is_caught(store: Store) -> None:
    fill(store)
    sql(store, "DELETE FROM ledger WHERE seq >= 8")
    assert_bad(store, 8, "the anchor records entry 10 but the table ends at 7")
    sql(store, "DELETE FROM ledger")
    assert_bad(store, 1, "the anchor records entry 10 but the table is empty")


def test_rewritten_anchored_entry_is_caught(store: Store) -> None:
    """The whole tail rewritten with the key (e.g. the ledger replaced) still disagrees with the anchor."""
    fill(store)
    assert store.anchor_path is not None
    lines = store.anchor_path.read_text().splitlines(keepends=True)
    store.anchor_path.write_text("".join(lines[:-1]) + f"10 {'ab' * 32}\n")
    assert_bad(store, 10, "entry 10 does not match the anchor")
    with store.anchor_path.open("a") as fh:  # an anchor naming two hashes for one entry is itself evidence
        fh.write(f"10 {'cd' * 32}\n")
    assert_bad(store, 10, "two different hashes for entry 10")


def test_anchor_may_lag_the_table(store: Store) -> None:
    """A crash between commit and anchor write leaves the anchor one entry behind: not a problem."""
    fill(store)
    assert store.anchor_path is not None
    lines = store.anchor_path.read_text().splitlines(keepends=True)
    store.anchor_path.write_text("".join(lines[:-1]))
    result = store.verify_ledger()
    assert result.ok and result.anchored_seq == 9 and result.head_seq == 10
    append(store, 11)  # the next append brings the anchor up to date
    assert store.verify_ledger().anchored_seq == 11


def test_missing_anchor_file_is_a_clear_problem(store: Store) -> None:
    fill(store, 3)
    assert store.anchor_path is not None
    store.anchor_path.unlink()
    assert_bad(store, None, "anchor file", "is missing", "3 entries", "truncation")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("1 abc\n", "garbled: line 1"),
        ("not an anchor at all\n", "garbled: line 1"),
        ("", "is empty"),
        (f"1 {'a' * 64}\n2 {'b' * 64}", "garbled: line 2"),  # torn last write
        (b"\xff\xfe\n", "garbled"),
    ],
    ids=["short-hash", "prose", "empty", "torn", "binary"],
)
def test_garbled_anchor_is_a_clear_problem(store: Store, content: str | bytes, fragment: str) -> None:
    fill(store, 3)
    assert store.anchor_path is not None
    if isinstance(content, bytes):
        store.anchor_path.write_bytes(content)
    else:
        store.anchor_path.write_text(content)
    assert_bad(store, None, fragment)


def test_wrong_ledger_key_is_named_as_such(make_store: Callable[..., Store]) -> None:
    fill(make_store())
    other = make_store(ledger_key=b"some-other-key")
    result = other.verify_ledger()
    assert not result.ok and result.first_bad_seq == 1
    assert result.problem is not None and "ledger key" in result.problem


def test_ledger_replaced_with_a_chain_under_another_key_is_caught(make_store: Callable[..., Store]) -> None:
    """Someone without the key rebuilds a whole, self-consistent chain: nothing verifies."""
    fill(make_store(ledger_key=b"attacker-key", anchor_path=None))
    result = make_store().verify_ledger()
    assert not result.ok and result.first_bad_seq == 1
    assert result.problem is not None and "none of the 10 entries matches" in result.problem


def test_without_an_anchor_the_chain_is_still_checked(make_store: Callable[..., Store]) -> None:
    store = make_store(anchor_path=None)
    fill(store)
    result = store.verify_ledger()
    assert result.ok and result.anchored_seq is None
    sql(store, "UPDATE ledger SET channel = 'web' WHERE seq = 2")
    assert_bad(store, 2, "entry 2 was altered")


# --- scale -----------------------------------------------------------------------------------------


def test_verifying_a_large_ledger_is_fast(store: Store) -> None:
    n = 5000
    rows: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        row: dict[str, Any] = {
            "seq": seq,
            "at": format_at(T0 + timedelta(seconds=seq)),
            "kind": "request.approved",
            "subject": f"req-{seq % 50}",
            "actor": "dana@example.com",
            "channel": "slack",
            "data": json.dumps({"i": seq, "reason": "x" * 40}, sort_keys=True, separators=(",", ":")),
            "idempotency_key": f"k-{seq}",
            "prev_hash": prev,
        }
        row["hash"] = prev = entry_hash(TEST_LEDGER_KEY, **row)
        rows.append(row)
    with store.engine.begin() as conn:
        conn.execute(insert(ledger_table), rows)
    assert store.anchor_path is not None
    store.anchor_path.write_text(f"{n} {prev}\n")

    started = time.perf_counter()
    result = store.verify_ledger()
    elapsed = time.perf_counter() - started
    assert result.ok, result.problem
    assert (result.entries, result.head_seq, result.head_hash) == (n, n, prev)
    assert elapsed < 5.0, f"verifying {n} entries took {elapsed:.2f}s"

    entry = append(store, n + 1)  # appending continues the bulk-loaded chain
    assert entry.seq == n + 1 and entry.prev_hash == prev
    sql(store, "UPDATE ledger SET actor = 'mallory@example.com' WHERE seq = 4321")
    assert_bad(store, 4321, "entry 4321 was altered")
