"""The SQL store: directory, requests and the evidence ledger, on SQLite or PostgreSQL.

Synchronous SQLAlchemy Core; async callers use ``asyncio.to_thread``. A ``Store`` is safe to share between
threads, and several processes (worker, web app, several workers on PostgreSQL) may use one database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from domain.identity import Person
from domain.requests import TERMINAL_STATUSES, RequestStatus, RequestView
import store.schema as schema
from store.anchors import SharedAnchor
from store.engine import IMMEDIATE, make_engine
from store.errors import SlotTaken, StoreError
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
from store.migration import check_schema, upgrade_schema

log = logging.getLogger(__name__)

# PostgreSQL advisory lock key (64-bit) serialising ledger appends across processes (migrations: see
# store.migration).
_PG_LEDGER_LOCK = 0x6772_616E_746C_6764  # "grantlgd"

_VERIFY_PAGE = 2000
_NON_TERMINAL = sorted(s.value for s in RequestStatus if s not in TERMINAL_STATUSES)


def _slot(requester_id: str, connection: str) -> str:
    return f"{requester_id}|{connection}"


def _utc(value: datetime) -> datetime:
    return schema.as_utc(value)


class Store:
    """Records of grantflow. See the module docstring of :mod:`store.ledger` for the ledger's design."""

    def __init__(
        self,
        url: str,
        *,
        ledger_key: bytes | str,
        anchor_path: Path | None,
        shared_anchor: SharedAnchor | None = None,
    ) -> None:
        """``anchor_path``: the append-only file every append writes its head to (dev, tests).
        ``shared_anchor``: the one anchor of a deployment, written by the anchoring job; when set,
        verification reads it instead of the file."""
        key = ledger_key.encode("utf-8") if isinstance(ledger_key, str) else bytes(ledger_key)
        if not key:
            raise StoreError("the ledger key is empty; set GRANTFLOW_LEDGER_KEY")
        self._key = key
        self._anchor_path = Path(anchor_path).absolute() if anchor_path is not None else None
        self._shared_anchor = shared_anchor
        self._engine = make_engine(url)
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._anchor_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @property
    def anchor_path(self) -> Path | None:
        return self._anchor_path

    @property
    def shared_anchor(self) -> SharedAnchor | None:
        return self._shared_anchor

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic ``upgrade head``).

        Safe to call from several processes at once: the whole upgrade runs in one transaction that first
        takes the write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), so a second caller
        waits and then finds nothing to do."""
        upgrade_schema(self._engine)

    def check_schema(self) -> None:
        """Raise :class:`~store.migration.SchemaNotCurrent` unless the schema is at the newest revision
        (workers and web servers check at start; only ``grantflow migrate`` changes the schema)."""
        check_schema(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self, *, lock: int | None = None) -> Iterator[Connection]:
        """A write transaction: on SQLite it holds the database write lock from its first statement;
        on PostgreSQL ``lock`` names an advisory lock held until commit."""
        with self._engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(**{IMMEDIATE: True})
            with conn.begin():
                if lock is not None and not self._sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    # --- directory -------------------------------------------------------------------------------

    def replace_directory(self, people: list[Person]) -> None:
        """Replace every person and group membership in one transaction."""
        seen: set[str] = set()
        person_rows: list[dict[str, Any]] = []
        member_rows: list[dict[str, Any]] = []
        for person in people:
            if person.id in seen:
                raise StoreError(f"the directory lists person id {person.id!r} more than once")
            seen.add(person.id)
            person_rows.append(
                {
                    "id": person.id,
                    "email": person.email,
                    "email_lower": person.email.lower(),
                    "display_name": person.display_name,
                    "manager_id": person.manager_id,
                    "active": person.active,
                }
            )
            for position, group in enumerate(dict.fromkeys(person.groups)):
                member_rows.append({"person_id": person.id, "group_name": group, "position": position})
        with self._write() as conn:
            conn.execute(delete(schema.group_members))
            conn.execute(delete(schema.people))
            if person_rows:
                conn.execute(insert(schema.people), person_rows)
            if member_rows:
                conn.execute(insert(schema.group_members), member_rows)

    def _people(self, conn: Connection, rows: list[Row[Any]]) -> list[Person]:
        if not rows:
            return []
        ids = [row.id for row in rows]
        groups: dict[str, list[str]] = {pid: [] for pid in ids}
        gm = schema.group_members
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            for member in conn.execute(
                select(gm.c.person_id, gm.c.group_name)
                .where(gm.c.person_id.in_(chunk))
                .order_by(gm.c.person_id, gm.c.position)
            ):
                groups[member.person_id].append(member.group_name)
        return [
            Person(
                id=row.id,
                email=row.email,
                display_name=row.display_name,
                manager_id=row.manager_id,
                active=bool(row.active),
                groups=tuple(groups[row.id]),
            )
            for row in rows
        ]

    def get_person(self, person_id: str) -> Person | None:
        p = schema.people
        with self._read() as conn:
            rows = list(conn.execute(select(p).where(p.c.id == person_id)))
            people = self._people(conn, rows)
        return people[0] if people else None

    def find_person_by_email(self, email: str) -> Person | None:
        """Case-insensitive; if two people share an email, the active one (then the lowest id) wins."""
        p = schema.people
        query = (
            select(p)
            .where(p.c.email_lower == email.strip().lower())
            .order_by(p.c.active.desc(), p.c.id)
            .limit(1)
        )
        with self._read() as conn:
            people = self._people(conn, list(conn.execute(query)))
        return people[0] if people else None

    def group_members(self, group: str) -> list[Person]:
        """Active members of ``group``, ordered by email."""
        p, gm = schema.people, schema.group_members
        query = (
            select(p)
            .join(gm, gm.c.person_id == p.c.id)
            .where(gm.c.group_name == group, p.c.active.is_(True))
            .order_by(p.c.email_lower, p.c.id)
        )
        with self._read() as conn:
            return self._people(conn, list(conn.execute(query)))

    def list_people(self) -> list[Person]:
        """Everyone, active or not, ordered by email."""
        p = schema.people
        with self._read() as conn:
            return self._people(conn, list(conn.execute(select(p).order_by(p.c.email_lower, p.c.id))))

    def apply_directory_changes(
        self,
        *,
        upserts: list[Person],
        leavers: list[tuple[str, str]],
        memberships: dict[str, list[str]],
        group_ids: dict[str, str] | None = None,
        state: dict[str, str] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Apply one identity sync in a single transaction: all of it or nothing.

        ``upserts`` are people to insert or update (their ``groups`` are ignored); ``leavers`` are
        ``(person_id, reason)`` pairs marked inactive with ``left_at``; ``memberships`` replaces the member
        list of each named group; ``group_ids`` records provider ids of groups; ``state`` is sync
        bookkeeping (watermarks) written in the same transaction, so a crash never half-applies a sync."""
        now = _utc(at or datetime.now(UTC))
        p, gm, dg, ds = schema.people, schema.group_members, schema.directory_groups, schema.directory_state
        with self._write() as conn:
            for person in upserts:
                row = {
                    "email": person.email,
                    "email_lower": person.email.lower(),
                    "display_name": person.display_name,
                    "manager_id": person.manager_id,
                    "active": person.active,
                }
                if person.active:
                    row |= {"left_at": None, "left_reason": None}
                done = conn.execute(update(p).where(p.c.id == person.id).values(**row))
                if done.rowcount == 0:
                    conn.execute(insert(p).values(id=person.id, **row))
            for person_id, reason in leavers:
                conn.execute(
                    update(p).where(p.c.id == person_id).values(active=False, left_at=now, left_reason=reason)
                )
            for group, member_ids in memberships.items():
                conn.execute(delete(gm).where(gm.c.group_name == group))
                known = (
                    {r.id for r in conn.execute(select(p.c.id).where(p.c.id.in_(member_ids)))}
                    if member_ids
                    else set()
                )
                rows = [
                    {"person_id": pid, "group_name": group, "position": 0}
                    for pid in member_ids
                    if pid in known
                ]
                if rows:
                    conn.execute(insert(gm), rows)
            for name, provider_id in (group_ids or {}).items():
                done = conn.execute(update(dg).where(dg.c.name == name).values(provider_id=provider_id))
                if done.rowcount == 0:
                    conn.execute(insert(dg).values(name=name, provider_id=provider_id))
            for key, value in (state or {}).items():
                done = conn.execute(update(ds).where(ds.c.key == key).values(value=value))
                if done.rowcount == 0:
                    conn.execute(insert(ds).values(key=key, value=value))

    def directory_state(self, key: str) -> str | None:
        ds = schema.directory_state
        with self._read() as conn:
            return conn.execute(select(ds.c.value).where(ds.c.key == key)).scalar()

    def group_provider_id(self, name: str) -> str | None:
        dg = schema.directory_groups
        with self._read() as conn:
            return conn.execute(select(dg.c.provider_id).where(dg.c.name == name)).scalar()

    def open_requests(self) -> list[RequestView]:
        """Every request not yet terminal (PENDING, ACTIVE, REVOKING), oldest first."""
        r = schema.requests
        query = select(r.c.view_json).where(r.c.status.in_(_NON_TERMINAL)).order_by(r.c.created_at, r.c.id)
        with self._read() as conn:
            return [RequestView.model_validate_json(row.view_json) for row in conn.execute(query)]

    # --- requests --------------------------------------------------------------------------------

    @staticmethod
    def _request_row(view: RequestView) -> dict[str, Any]:
        return {
            "id": view.id,
            "requester_id": view.requester.id,
            "requester_email": view.requester.email,
            "resource": view.resource,
            "role": view.role,
            "connection": view.connection,
            "status": view.status.value,
            "open_slot": None if view.status.is_terminal else _slot(view.requester.id, view.connection),
            "created_at": _utc(view.created_at),
            "updated_at": _utc(view.updated_at),
            "view_json": view.model_dump_json(),
        }

    def _open_in_slot(self, requester_id: str, connection: str) -> tuple[str, str] | None:
        r = schema.requests
        with self._read() as conn:
            row = conn.execute(
                select(r.c.id, r.c.status).where(r.c.open_slot == _slot(requester_id, connection))
            ).first()
        return (row.id, row.status) if row is not None else None

    def reserve_request(self, view: RequestView) -> None:
        """Insert a new request, claiming its (requester, connection) slot while it is open.

        Raises :class:`SlotTaken` naming the open request if the slot is taken. Reserving the same request
        id again (a retry) is a no-op; reusing an id for a different person or connection is refused."""
        r = schema.requests
        row = self._request_row(view)
        for _ in range(3):
            try:
                with self._write() as conn:
                    existing = conn.execute(
                        select(r.c.requester_id, r.c.connection).where(r.c.id == view.id)
                    ).first()
                    if existing is not None:
                        if (existing.requester_id, existing.connection) != (
                            view.requester.id,
                            view.connection,
                        ):
                            raise StoreError(
                                f"request id {view.id} is already used by another person or connection"
                            )
                        return
                    conn.execute(insert(r), row)
                return
            except IntegrityError:
                pass  # someone else committed first: either this id or this slot
            if self.get_request(view.id) is not None:
                continue  # the same id was inserted concurrently: the check above decides
            holder = self._open_in_slot(view.requester.id, view.connection)
            if holder is not None:
                raise SlotTaken(
                    holder[0], holder[1], requester=view.requester.email, connection=view.connection
                )
            # The holder finished between our insert and our look-up: try again.
        raise StoreError(f"could not reserve request {view.id}: the slot kept changing; try again")

    def save_request(self, view: RequestView) -> bool:
        """Store ``view`` as the latest state of its request (inserting it if it is new).

        Ignored (returns False) when the stored view is newer (``updated_at``) or when it would move a
        terminal request back to a non-terminal status. A terminal status frees the slot."""
        r = schema.requests
        row = self._request_row(view)
        for _ in range(4):
            try:
                with self._write() as conn:
                    stored = conn.execute(
                        select(r.c.status, r.c.updated_at, r.c.open_slot)
                        .where(r.c.id == view.id)
                        .with_for_update()
                    ).first()
                    if stored is None:
                        conn.execute(insert(r), row)
                        return True
                    if RequestStatus(stored.status).is_terminal and not view.status.is_terminal:
                        log.info("request %s: ignoring %s view after %s", view.id, view.status, stored.status)
                        return False
                    if row["updated_at"] < stored.updated_at:
                        log.info("request %s: ignoring a view older than the stored one", view.id)
                        return False
                    values = {k: v for k, v in row.items() if k != "id"}
                    if not view.status.is_terminal:
                        values["open_slot"] = stored.open_slot  # the slot belongs to the reservation
                    conn.execute(update(r).where(r.c.id == view.id).values(**values))
                    return True
            except IntegrityError:
                pass  # the insert lost a race: for this id, or for the slot
            if self.get_request(view.id) is not None:
                continue  # inserted concurrently: go round again as an update
            holder = self._open_in_slot(view.requester.id, view.connection)
            if holder is not None and holder[0] != view.id:
                # Never reserved, and another request holds the slot: record the state anyway (the
                # store must not lose it) without claiming the slot.
                log.warning("request %s saved without its slot: %s holds it", view.id, holder[0])
                row["open_slot"] = None
        raise StoreError(f"could not save request {view.id}: it kept changing underneath; try again")

    def get_request(self, request_id: str) -> RequestView | None:
        r = schema.requests
        with self._read() as conn:
            data = conn.execute(select(r.c.view_json).where(r.c.id == request_id)).scalar_one_or_none()
        return RequestView.model_validate_json(data) if data is not None else None

    def list_requests(
        self,
        *,
        requester_id: str | None = None,
        statuses: list[RequestStatus] | None = None,
        limit: int = 100,
    ) -> list[RequestView]:
        """Newest first (by ``created_at``)."""
        if limit <= 0 or (statuses is not None and not statuses):
            return []
        r = schema.requests
        query = select(r.c.view_json).order_by(r.c.created_at.desc(), r.c.id.desc()).limit(limit)
        if requester_id is not None:
            query = query.where(r.c.requester_id == requester_id)
        if statuses is not None:
            query = query.where(r.c.status.in_([RequestStatus(s).value for s in statuses]))
        with self._read() as conn:
            return [RequestView.model_validate_json(v) for v in conn.execute(query).scalars()]

    def find_open_request(self, requester_id: str, connection: str) -> RequestView | None:
        """The requester's non-terminal request for ``connection``, if any."""
        r = schema.requests
        query = (
            select(r.c.view_json)
            .where(
                r.c.requester_id == requester_id,
                r.c.connection == connection,
                r.c.status.in_(_NON_TERMINAL),
            )
            .order_by(r.c.open_slot.is_(None), r.c.created_at.desc())
            .limit(1)
        )
        with self._read() as conn:
            data = conn.execute(query).scalar_one_or_none()
        return RequestView.model_validate_json(data) if data is not None else None

    # --- evidence ledger -------------------------------------------------------------------------

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
        at_text = format_at(at if at is not None else datetime.now(UTC))
        data_text = canonical_data(data)
        led = schema.ledger
        anchor: IO[str] | None = None
        try:
            with self._write(lock=_PG_LEDGER_LOCK) as conn:
                if idempotency_key is not None:
                    existing = conn.execute(
                        select(led).where(led.c.idempotency_key == idempotency_key)
                    ).first()
                    if existing is not None:
                        found = _stored(existing)
                        if content_hash is not None and content_hash != _content_hash_of(found):
                            raise IdempotencyConflict(
                                f"ledger idempotency key {idempotency_key!r} arrived again with different "
                                f"content: entry {found.seq} ({found.kind} about {found.subject}) already "
                                f"holds other content; the new {kind} event was not recorded"
                            )
                        return found.to_entry()
                head = conn.execute(select(led.c.seq, led.c.hash).order_by(led.c.seq.desc()).limit(1)).first()
                seq = head.seq + 1 if head is not None else 1
                prev_hash = head.hash if head is not None else GENESIS_HASH
                stored = StoredEntry(
                    seq=seq,
                    at=at_text,
                    kind=kind,
                    subject=subject,
                    actor=actor,
                    channel=channel,
                    data=data_text,
                    idempotency_key=idempotency_key,
                    prev_hash=prev_hash,
                    hash="",
                )
                digest = stored.computed_hash(self._key)
                conn.execute(
                    insert(led),
                    {
                        "seq": seq,
                        "at": at_text,
                        "kind": kind,
                        "subject": subject,
                        "actor": actor,
                        "channel": channel,
                        "data": data_text,
                        "idempotency_key": idempotency_key,
                        "prev_hash": prev_hash,
                        "hash": digest,
                    },
                )
                if self._anchor_path is not None:
                    anchor = self._lock_anchor(self._anchor_path)
            # committed
            if anchor is not None:
                self._write_anchor(anchor, seq, digest)
        finally:
            if anchor is not None:
                self._release_anchor(anchor)
        return dataclasses.replace(stored, hash=digest).to_entry()

    def _lock_anchor(self, path: Path) -> IO[str]:
        self._anchor_lock.acquire()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = path.open("a", encoding="ascii")
        except OSError as exc:
            self._anchor_lock.release()
            raise StoreError(f"cannot open the ledger anchor file {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except BaseException:
            fh.close()
            self._anchor_lock.release()
            raise
        return fh

    def _write_anchor(self, fh: IO[str], seq: int, digest: str) -> None:
        try:
            created = fh.tell() == 0
            fh.write(f"{seq} {digest}\n")
            fh.flush()
            os.fsync(fh.fileno())
            if created and self._anchor_path is not None:
                _fsync_dir(self._anchor_path.parent)
        except OSError as exc:
            # The entry is committed; the anchor lags until the next append writes the newer head.
            log.error("ledger entry %s committed but the anchor file could not be written: %s", seq, exc)

    def _release_anchor(self, fh: IO[str]) -> None:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()
            self._anchor_lock.release()

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
            anchor = read_anchor(self._anchor_path) if self._anchor_path is not None else None
        return verify_chain(
            self._iter_stored(),
            self._key,
            anchor=anchor,
            anchor_path=self._anchor_path if self._shared_anchor is None else None,
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


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
