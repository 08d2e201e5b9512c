"""Errors raised by the SQL store."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation that cannot be done; the message says why."""


class SlotTaken(StoreError):
    """The requester already has an open (non-terminal) request for the same connection."""

    def __init__(
        self,
        existing_request_id: str,
        existing_status: str,
        *,
        requester: str = "",
        connection: str = "",
    ) -> None:
        self.existing_request_id = existing_request_id
        self.existing_status = str(existing_status)
        self.requester = requester
        self.connection = connection
        who = requester or "the requester"
        what = f" for {connection}" if connection else ""
        super().__init__(
            f"{who} already has an open request{what}: {existing_request_id} ({self.existing_status})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_slot_taken,
            (self.existing_request_id, self.existing_status, self.requester, self.connection),
        )


def _rebuild_slot_taken(request_id: str, status: str, requester: str, connection: str) -> SlotTaken:
    return SlotTaken(request_id, status, requester=requester, connection=connection)
