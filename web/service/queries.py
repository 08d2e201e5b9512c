"""Reading requests: one request's live view, and lists of stored requests.

The store holds every request (it is reserved before the workflow starts), so an id the store does not
know is :class:`~web.service.errors.NotFound` without asking Temporal. Reading never changes anything.
"""

from __future__ import annotations

from domain.requests import RequestStatus, RequestView
from web.service.core import ServiceCore
from web.service.errors import BadInput


class Queries(ServiceCore):
    """``show`` and ``list``."""

    async def show(self, request_id: str) -> RequestView:
        """The live view from the workflow, or the stored one when the workflow cannot answer."""
        stored = await self._stored(request_id)
        return await self._latest(self._handle(request_id), stored)

    async def list(
        self,
        *,
        requester_email: str | None = None,
        statuses: list[str] | None = None,
        limit: int = 50,
    ) -> list[RequestView]:
        """Stored requests, newest first, optionally of one requester and in some statuses."""
        if not 1 <= limit <= 500:
            raise BadInput(f"limit {limit} is out of range; give 1 to 500")
        parsed: list[RequestStatus] | None = None
        if statuses:
            parsed = []
            for raw in statuses:
                for part in raw.split(","):
                    if not part.strip():
                        continue
                    try:
                        parsed.append(RequestStatus(part.strip().upper()))
                    except ValueError:
                        known = ", ".join(s.value for s in RequestStatus)
                        raise BadInput(
                            f"status {part.strip()!r} is not known; statuses are: {known}"
                        ) from None
        requester_id: str | None = None
        if requester_email:
            person = await self._store_call(self._store.find_person_by_email, requester_email)
            if person is None:
                return []
            requester_id = person.id
        return await self._store_call(
            self._store.list_requests, requester_id=requester_id, statuses=parsed, limit=limit
        )
