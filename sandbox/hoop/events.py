"""When the hoop stand-in wrote a grant, took it away and killed a session: an in-memory event log for
measuring how long grantflow takes to act (``python -m bench jit``).

Three events, each stamped with the stand-in's clock (``wall``, the clock ``revoke_at`` is computed with)
and ``time.monotonic()`` (``monotonic``, to compare with a measurement taken in the same process):

- ``grant.written``: a jit review turned APPROVED — provisioned (``POST /sessions/provision``) or decided
  (``PUT /reviews/{id}``);
- ``grant.revoked``: an APPROVED jit review turned REVOKED (``PUT /reviews/{id}``);
- ``session.killed``: a kill ended an open session (``POST /sessions/{id}/kill``; a kill of a session
  already done, or living on another gateway process, is no event).

hoop keeps no such log; the stand-in keeps it only in memory (never in ``state_file``), like ``calls``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import NamedTuple

GRANT_WRITTEN = "grant.written"
GRANT_REVOKED = "grant.revoked"
SESSION_KILLED = "session.killed"


class GatewayEvent(NamedTuple):
    kind: str
    user_email: str
    connection: str
    review_id: str | None
    session_id: str | None
    wall: datetime
    monotonic: float


class EventLog:
    """The log, appended by the handlers (under the state lock, ``wall`` from the stand-in's clock) and read
    with ``events``."""

    _event_log: list[GatewayEvent] | None = None

    def events(self, kind: str | None = None, *, start: int = 0) -> list[GatewayEvent]:
        """The events so far from the ``start``-th on, oldest first (of one ``kind`` when given)."""
        return [e for e in (self._event_log or [])[start:] if kind is None or e.kind == kind]

    def _record_event(
        self,
        kind: str,
        wall: datetime,
        *,
        user_email: str,
        connection: str,
        review_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        if self._event_log is None:
            self._event_log = []
        self._event_log.append(
            GatewayEvent(kind, user_email, connection, review_id, session_id, wall, time.monotonic())
        )
