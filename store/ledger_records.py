"""The evidence ledger's table: append (serialised across processes, idempotent by key), read, verify.

The design — keyed hash chain, canonical JSON, anchors, idempotency conflicts — is explained and computed
in :mod:`store.ledger`; this module only moves rows in and out of the database around it. Appends hold
one lock for the whole transaction (SQLite's write lock; on PostgreSQL an advisory lock), and write the new
head to the anchor file (:mod:`store.anchor_file`) after the commit. It never rewrites or deletes an entry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, bindparam, insert, select
from sqlalchemy.engine import Connection, Row

import store.schema as schema
from store.anchor_file import HeldAnchor
from store.base import StoreBase
from store.group_commit import GroupCommit
from store.ledger import (
    GENESIS_HASH,
    AnchorReading,
    IdempotencyConflict,
    LedgerEntry,
    LedgerHead,
    LedgerVerification,
    StoredEntry,
    canonical_data,
    content_hash,
    entry_hash,
    format_at,
    read_anchor,
    verify_chain,
)

# PostgreSQL advisory lock key (64-bit) serialising ledger appends across processes (migrations: see
# store.migration).
_PG_LEDGER_LOCK = 0x6772_616E_746C_6764  # "grantlgd"

log = logging.getLogger("grantflow.store.ledger")

LedgerObserver = Callable[[LedgerEntry], None]
"""Called with each entry this process newly appended, after its commit (metrics, not evidence)."""

_VERIFY_PAGE = 2000

# The statements of an append, built once: constructing them per call cost more than the inserts they make.
_BY_KEY = select(schema.ledger).where(schema.ledger.c.idempotency_key == bindparam("key"))
_INSERT = insert(schema.ledger)


def _newest(column: Any) -> Any:
    return select(column).order_by(schema.ledger.c.seq.desc()).limit(1).scalar_subquery()


_BY_KEYS = select(schema.ledger).where(schema.ledger.c.idempotency_key.in_(bindparam("keys", expanding=True)))
_HEAD = select(
    _newest(schema.ledger.c.seq).label("head_seq"), _newest(schema.ledger.c.hash).label("head_hash")
)

# The head and whether the key was seen, in one round trip (the lock is held meanwhile): NULLs when the
# ledger is empty / the key is new or None.
_PROBE = select(
    _newest(schema.ledger.c.seq).label("head_seq"),
    _newest(schema.ledger.c.hash).label("head_hash"),
    select(schema.ledger.c.seq)
    .where(schema.ledger.c.idempotency_key == bindparam("key"))
    .scalar_subquery()
    .label("seen_seq"),
)


APPENDS_PER_BATCH = 256
"""Most appends committed in one transaction (:mod:`store.group_commit`); bounds the transaction and the
``IN`` list of its keys."""


class LedgerRecords(StoreBase):
    """The ledger part of :class:`store.Store`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._group_commit: GroupCommit[_Append] = GroupCommit(APPENDS_PER_BATCH)

    def observe_ledger(self, observer: LedgerObserver) -> None:
        """Call ``observer`` with every entry this store appends from now on, once, after its commit; an
        idempotent repeat (a key seen before) is not a new entry and is not passed. An observer that raises
        is logged and never fails the append: the entry is committed by then."""
        if observer not in self._ledger_observers:
            self._ledger_observers.append(observer)

    def append_ledger(
        self,
        *,
        kind: str,
        subject: str,
        actor: str,
        channel: str,
        data: dict[str, Any],
        idempotency_key: str | None = None,
        at: datetime | None = None,
        content_hash: str | None = None,
        with_record: Executable | None = None,
    ) -> LedgerEntry:
        """Append one entry (or, if ``idempotency_key`` was seen before, return that entry unchanged).

        ``content_hash`` (:func:`store.ledger.content_hash`, computed by the caller's workflow): when the key
        was seen before with other content, :class:`IdempotencyConflict` is raised instead of dropping the
        new content silently.

        Appends are serialised across processes; the new head is appended to the anchor file after the
        commit (while holding the anchor's file lock, taken before the commit, so anchor lines stay in seq
        order). Threads of this process appending at the same moment share a transaction
        (:mod:`store.group_commit`); each still gets its own entry, or its own error.

        ``with_record``: a statement writing the record this entry is evidence of (an item's outcome), run in
        the transaction that commits the entry, or finds it by its key: the record and its evidence are
        committed together, in one commit instead of two. It is not run when the append fails; when it
        fails, so does the batch it was in."""
        moment = at if at is not None else datetime.now(UTC)
        request = _Append(
            kind=kind,
            subject=subject,
            actor=actor,
            channel=channel,
            data=canonical_data(data),
            idempotency_key=idempotency_key,
            at_text=format_at(moment),
            content_hash=content_hash,
            with_record=with_record,
        )
        self._group_commit.submit(request, self._commit_appends)
        if request.error is not None:
            raise request.error
        assert request.stored is not None  # settled without an error: committed, or found by its key
        if not request.new:
            return request.stored.to_entry()
        stored = request.stored
        # stored.to_entry() would parse at_text back; it is ``moment`` to the microsecond (format_at).
        entry = LedgerEntry(
            seq=stored.seq,
            at=moment.astimezone(UTC),
            kind=kind,
            subject=subject,
            actor=actor,
            channel=channel,
            data=json.loads(stored.data),
            idempotency_key=idempotency_key,
            prev_hash=stored.prev_hash,
            hash=stored.hash,
        )
        for observer in self._ledger_observers:
            try:
                observer(entry)
            except Exception:
                log.exception(
                    "a ledger observer failed on entry %s (%s); the entry is recorded", entry.seq, kind
                )
        return entry

    def _commit_appends(self, batch: Sequence[_Append]) -> None:
        """Append ``batch`` in one transaction, in its order, chained after the head; a request whose key
        was seen before (in the ledger or earlier in the batch) gets that entry, or an
        :class:`IdempotencyConflict` of its own, without failing the others. The anchor file gets one line
        per new entry and one fsync, after the commit (its lock taken before the commit, so lines stay in
        seq order across processes)."""
        anchor: HeldAnchor | None = None
        new: list[StoredEntry] = []
        try:
            with self._write(lock=_PG_LEDGER_LOCK) as conn:
                head_seq, head_hash, seen = _head_and_seen(conn, batch)
                for request in batch:
                    key = request.idempotency_key
                    found = seen.get(key) if key is not None else None
                    if found is not None:
                        if request.content_hash is not None and request.content_hash != _content_hash_of(
                            found
                        ):
                            request.error = IdempotencyConflict(
                                f"ledger idempotency key {key!r} arrived again with different content: entry "
                                f"{found.seq} ({found.kind} about {found.subject}) already holds other "
                                f"content; the new {request.kind} event was not recorded"
                            )
                        else:
                            request.stored, request.new = found, False
                        continue
                    unsigned = StoredEntry(
                        seq=head_seq + 1,
                        at=request.at_text,
                        kind=request.kind,
                        subject=request.subject,
                        actor=request.actor,
                        channel=request.channel,
                        data=request.data,
                        idempotency_key=key,
                        prev_hash=head_hash,
                        hash="",
                    )
                    stored = dataclasses.replace(unsigned, hash=unsigned.computed_hash(self._key))
                    request.stored, request.new = stored, True
                    new.append(stored)
                    head_seq, head_hash = stored.seq, stored.hash
                    if key is not None:
                        seen[key] = stored
                for request in batch:
                    if request.with_record is not None and request.error is None:
                        conn.execute(request.with_record)
                if new:
                    # Flat dicts of the rows: dataclasses.asdict would deep-copy every field for nothing.
                    conn.execute(_INSERT, [{f.name: getattr(row, f.name) for f in _FIELDS} for row in new])
                    if self._anchor_file is not None:
                        anchor = self._anchor_file.lock()
            # committed
            if anchor is not None:
                anchor.write_heads([(row.seq, row.hash) for row in new])
        finally:
            if anchor is not None:
                anchor.release()

    def ledger_entries(
        self, *, subject: str | None = None, after_seq: int = 0, limit: int | None = None
    ) -> list[LedgerEntry]:
        """Entries in seq order, optionally only those about ``subject`` and after ``after_seq``."""
        led = schema.ledger
        query = select(led).where(led.c.seq > after_seq).order_by(led.c.seq)
        if subject is not None:
            query = query.where(led.c.subject == subject)
        if limit is not None:
            if limit <= 0:
                return []
            query = query.limit(limit)
        with self._read() as conn:
            return [_stored(row).to_entry() for row in conn.execute(query)]

    def ledger_entry_of_command(
        self, subject: str, command_id: str, *, after_seq: int = 0
    ) -> LedgerEntry | None:
        """The first entry about ``subject`` after ``after_seq`` whose data names ``command_id`` (under
        ``command_id``): how the edge learns a command's outcome from the store. One indexed range of a
        subject's newest entries, so it can be asked several times a second."""
        for entry in self.ledger_entries(subject=subject, after_seq=after_seq):
            if entry.data.get("command_id") == command_id:
                return entry
        return None

    def ledger_head(self) -> LedgerHead:
        """Sequence number and hash of the newest entry (0 and 64 zeros when the ledger is empty)."""
        led = schema.ledger
        with self._read() as conn:
            row = conn.execute(select(led.c.seq, led.c.hash).order_by(led.c.seq.desc()).limit(1)).first()
        if row is None:
            return LedgerHead(seq=0, hash=GENESIS_HASH)
        return LedgerHead(seq=int(row.seq), hash=row.hash)

    def verify_ledger(self) -> LedgerVerification:
        """Recompute every hash in seq order, check the links and the anchor; name the first bad entry."""
        # The anchor first: anything it records was committed before we read the table.
        anchor: AnchorReading | None
        if self._shared_anchor is not None:
            anchor = self._shared_anchor.read()
        else:
            anchor = read_anchor(self.anchor_path) if self.anchor_path is not None else None
        return verify_chain(
            self._iter_stored(),
            self._key,
            anchor=anchor,
            anchor_path=self.anchor_path if self._shared_anchor is None else None,
            positions_of=self._positions_of,
        )

    def _iter_stored(self) -> Iterator[StoredEntry]:
        led = schema.ledger
        after: int | None = None
        while True:
            query = select(led).order_by(led.c.seq).limit(_VERIFY_PAGE)
            if after is not None:
                query = query.where(led.c.seq > after)
            with self._read() as conn:
                page = [_stored(row) for row in conn.execute(query)]
            yield from page
            if len(page) < _VERIFY_PAGE:
                return
            after = page[-1].seq

    def _positions_of(self, row: StoredEntry) -> list[int]:
        """Where ``row`` was written, judging by its neighbours: after the entry whose hash is its
        prev_hash, before the entry whose prev_hash is its hash."""
        led = schema.ledger
        with self._read() as conn:
            before = conn.execute(select(led.c.seq).where(led.c.hash == row.prev_hash)).scalars().all()
            after = conn.execute(select(led.c.seq).where(led.c.prev_hash == row.hash)).scalars().all()
        return [int(s) + 1 for s in before] + [int(s) - 1 for s in after]

    def entry_hash(self, entry: LedgerEntry) -> str:
        """The hash ``entry`` should carry under this store's key (for checking exported evidence)."""
        return entry_hash(
            self._key,
            seq=entry.seq,
            at=format_at(entry.at),
            kind=entry.kind,
            subject=entry.subject,
            actor=entry.actor,
            channel=entry.channel,
            data=canonical_data(entry.data),
            idempotency_key=entry.idempotency_key,
            prev_hash=entry.prev_hash,
        )


_FIELDS = dataclasses.fields(StoredEntry)


@dataclasses.dataclass(eq=False)
class _Append:
    """One append waiting for its batch (:mod:`store.group_commit`), then its outcome: ``stored`` (``new``
    when this append wrote it) or ``error``."""

    kind: str
    subject: str
    actor: str
    channel: str
    data: str
    idempotency_key: str | None
    at_text: str
    content_hash: str | None
    with_record: Executable | None = None
    stored: StoredEntry | None = None
    new: bool = False
    error: BaseException | None = None
    settled: bool = False

    def fail(self, error: BaseException) -> None:
        self.stored, self.new, self.error, self.settled = None, False, error, True


def _head_and_seen(conn: Connection, batch: Sequence[_Append]) -> tuple[int, str, dict[str, StoredEntry]]:
    """The head's seq and hash (0 and the genesis hash when empty), and the stored entries of the batch's
    idempotency keys seen before. An append alone makes one round trip (and one more when its key was
    seen), as before batching."""
    seen: dict[str, StoredEntry] = {}
    if len(batch) == 1:
        probe = conn.execute(_PROBE, {"key": batch[0].idempotency_key}).one()
        if probe.seen_seq is not None:
            existing = conn.execute(_BY_KEY, {"key": batch[0].idempotency_key}).first()
            if existing is not None:
                found = _stored(existing)
                seen[str(found.idempotency_key)] = found
        head = probe
    else:
        head = conn.execute(_HEAD).one()
        keys = {r.idempotency_key for r in batch if r.idempotency_key is not None}
        if keys:
            for row in conn.execute(_BY_KEYS, {"keys": list(keys)}):
                found = _stored(row)
                seen[str(found.idempotency_key)] = found
    if head.head_seq is None:
        return 0, GENESIS_HASH, seen
    return int(head.head_seq), str(head.head_hash), seen


def _content_hash_of(entry: StoredEntry) -> str:
    return content_hash(
        kind=entry.kind,
        subject=entry.subject,
        actor=entry.actor,
        channel=entry.channel,
        data=json.loads(entry.data),
    )


def _stored(row: Row[Any]) -> StoredEntry:
    return StoredEntry(
        seq=int(row.seq),
        at=row.at,
        kind=row.kind,
        subject=row.subject,
        actor=row.actor,
        channel=row.channel,
        data=row.data,
        idempotency_key=row.idempotency_key,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
