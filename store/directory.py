"""The directory as the store keeps it: people, group memberships, provider group ids and the identity
sync's own state (watermarks).

A sync is applied in one transaction — people, leavers, memberships and watermarks together — so a crash
never half-applies it. This module never talks to the identity provider and never decides who left:
``activities.identity_sync`` does; it only records the outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Table, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Row

import store.schema as schema
from domain.identity import Person
from store.base import StoreBase
from store.errors import StoreError

_GROUP_CHUNK = 500  # person ids per ``IN (…)`` when reading their groups


class DirectoryRecords(StoreBase):
    """The directory part of :class:`store.Store`."""

    def replace_directory(self, people: list[Person]) -> None:
        """Replace every person and group membership in one transaction."""
        seen: set[str] = set()
        person_rows: list[dict[str, Any]] = []
        member_rows: list[dict[str, Any]] = []
        for person in people:
            if person.id in seen:
                raise StoreError(f"the directory lists person id {person.id!r} more than once")
            seen.add(person.id)
            person_rows.append({"id": person.id, **_person_values(person)})
            for position, group in enumerate(dict.fromkeys(person.groups)):
                member_rows.append({"person_id": person.id, "group_name": group, "position": position})
        with self._write() as conn:
            conn.execute(delete(schema.group_members))
            conn.execute(delete(schema.people))
            if person_rows:
                conn.execute(insert(schema.people), person_rows)
            if member_rows:
                conn.execute(insert(schema.group_members), member_rows)

    def get_person(self, person_id: str) -> Person | None:
        p = schema.people
        with self._read() as conn:
            people = _people(conn, list(conn.execute(select(p).where(p.c.id == person_id))))
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
            people = _people(conn, list(conn.execute(query)))
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
            return _people(conn, list(conn.execute(query)))

    def list_people(self) -> list[Person]:
        """Everyone, active or not, ordered by email."""
        p = schema.people
        with self._read() as conn:
            return _people(conn, list(conn.execute(select(p).order_by(p.c.email_lower, p.c.id))))

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
        now = schema.as_utc(at or datetime.now(UTC))
        p, gm, dg, ds = schema.people, schema.group_members, schema.directory_groups, schema.directory_state
        person_rows: dict[str, dict[str, Any]] = {}
        for person in upserts:
            row = _person_values(person)
            if person.active:
                row |= {"left_at": None, "left_reason": None}
            person_rows[person.id] = row  # listed twice: the last one wins, as two upserts would
        with self._write() as conn:
            _upsert(conn, p, p.c.id, person_rows)
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
            _upsert(
                conn, dg, dg.c.name, {name: {"provider_id": pid} for name, pid in (group_ids or {}).items()}
            )
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


def _upsert(conn: Connection, table: Table, key: Column[Any], rows: dict[str, dict[str, Any]]) -> None:
    """Insert or update ``rows`` (key value → the other columns) in ``table``: one statement per kind of row,
    executed for all of them (a statement per row took about a millisecond each, seconds for a directory)."""
    if not rows:
        return
    keys = list(rows)
    existing: set[str] = set()
    for start in range(0, len(keys), _GROUP_CHUNK):
        chunk = keys[start : start + _GROUP_CHUNK]
        existing.update(conn.execute(select(key).where(key.in_(chunk))).scalars())
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    inserts: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for value, columns in rows.items():
        if value in existing:
            updates.setdefault(tuple(columns), []).append({"_key": value, **columns})
        else:
            inserts.setdefault(tuple(columns), []).append({key.name: value, **columns})
    for batch in updates.values():
        conn.execute(update(table).where(key == bindparam("_key")), batch)
    for batch in inserts.values():
        conn.execute(insert(table), batch)


def _person_values(person: Person) -> dict[str, Any]:
    """The columns of a ``people`` row but its id."""
    return {
        "email": person.email,
        "email_lower": person.email.lower(),
        "display_name": person.display_name,
        "manager_id": person.manager_id,
        "active": person.active,
        "department": person.department,
        "employment_type": person.employment_type,
    }


def _people(conn: Connection, rows: list[Row[Any]]) -> list[Person]:
    """``Person``\\ s from ``people`` rows, each with its groups in their stored order."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    groups: dict[str, list[str]] = {pid: [] for pid in ids}
    gm = schema.group_members
    for chunk_start in range(0, len(ids), _GROUP_CHUNK):
        chunk = ids[chunk_start : chunk_start + _GROUP_CHUNK]
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
            department=row.department,
            employment_type=row.employment_type,
        )
        for row in rows
    ]
