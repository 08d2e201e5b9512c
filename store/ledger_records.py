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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Row

import store.schema as schema
from store.anchor_file import HeldAnchor
from store.base import StoreBase
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


class LedgerRecords(StoreBase):
    """The ledger part of :class:`store.Store`."""

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
    ) -> LedgerEntry:
        """Append one entry (or, if ``idempotency_key`` was seen before, return that entry unchanged).

        ``content_hash`` (:func:`store.ledger.content_hash`, computed by the caller's workflow): when the key
        was seen before with other content, :class:`IdempotencyConflict` is raised instead of dropping the
        new content silently.

        Appends are serialised across processes; the new head is appended to the anchor file after the
        commit (while holding the anchor's file lock, taken before the commit, so anchor lines stay in seq
        order)."""
        moment = at if at is not None else datetime.now(UTC)
        at_text = format_at(moment)
        data_text = canonical_data(data)
        anchor: HeldAnchor | None = None
        try:
            with self._write(lock=_PG_LEDGER_LOCK) as conn:
                probe = conn.execute(_PROBE, {"key": idempotency_key}).one()
                if idempotency_key is not None and probe.seen_seq is not None:
                    existing = conn.execute(_BY_KEY, {"key": idempotency_key}).first()
                    if existing is not None:
                        found = _stored(existing)
                        if content_hash is not None and content_hash != _content_hash_of(found):
                            raise IdempotencyConflict(
                                f"ledger idempotency key {idempotency_key!r} arrived again with different "
                                f"content: entry {found.seq} ({found.kind} about {found.subject}) already "
                                f"holds other content; the new {kind} event was not recorded"
                            )
                        return found.to_entry()
                empty = probe.head_seq is None
                unsigned = StoredEntry(
                    seq=1 if empty else int(probe.head_seq) + 1,
                    at=at_text,
                    kind=kind,
                    subject=subject,
                    actor=actor,
                    channel=channel,
                    data=data_text,
                    idempotency_key=idempotency_key,
                    prev_hash=GENESIS_HASH if empty else probe.head_hash,
                    hash="",
                )
                stored = dataclasses.replace(unsigned, hash=unsigned.computed_hash(self._key))
                # A flat dict of the row: dataclasses.asdict would deep-copy every field for nothing.
                conn.execute(_INSERT, {f.name: getattr(stored, f.name) for f in _FIELDS})
                if self._anchor_file is not None:
                    anchor = self._anchor_file.lock()
            # committed
            if anchor is not None:
                anchor.write(stored.seq, stored.hash)
        finally:
            if anchor is not None:
                anchor.release()
        # stored.to_entry() would parse at_text back; it is ``moment`` to the microsecond (format_at).
        entry = LedgerEntry(
            seq=stored.seq,
            at=moment.astimezone(UTC),
            kind=kind,
            subject=subject,
            actor=actor,
            channel=channel,
            data=json.loads(data_text),
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
