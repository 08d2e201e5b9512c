"""Access requests as the store keeps them: the latest ``RequestView`` of each (decisions included), and the
one open request a person may have per connection.

The (requester, connection) *slot* is a unique column set while a request is not terminal, so two
concurrent submissions cannot both open a request: ``reserve_request`` raises ``SlotTaken`` naming the
holder. ``save_request`` never moves a request backwards (an older view, or a terminal one reopened, is
ignored). This module never decides a request's status: workflows do, and hand the store their views.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

import store.schema as schema
from domain.requests import TERMINAL_STATUSES, RequestStatus, RequestView
from store.base import StoreBase
from store.errors import SlotTaken, StoreError

log = logging.getLogger(__name__)

_NON_TERMINAL = sorted(s.value for s in RequestStatus if s not in TERMINAL_STATUSES)


def _slot(requester_id: str, connection: str) -> str:
    return f"{requester_id}|{connection}"


class RequestRecords(StoreBase):
    """The request part of :class:`store.Store`."""

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
            "created_at": schema.as_utc(view.created_at),
            "updated_at": schema.as_utc(view.updated_at),
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

    def open_requests(self) -> list[RequestView]:
        """Every request not yet terminal (PENDING, ACTIVE, REVOKING), oldest first."""
        r = schema.requests
        query = select(r.c.view_json).where(r.c.status.in_(_NON_TERMINAL)).order_by(r.c.created_at, r.c.id)
        with self._read() as conn:
            return [RequestView.model_validate_json(row.view_json) for row in conn.execute(query)]

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
