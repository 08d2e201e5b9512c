"""Sessions and users in hoop: list, read and kill sessions; read and write users and their groups.

- ``list_sessions`` pages through everything and filters ``status`` itself: hoop's list has no status
  filter. hoop's ``user``/``connection`` filters are SQL ``LIKE`` patterns, so rows are filtered again
  exactly (subject, email, connection name) before anyone acts on them.
- A session opened under a jit grant is **not linked** to the grant's review (``review: null``): the
  sessions a grant enabled are found by person, connection and time (``since``), not by review id.
- Killing a session answers 204 whether or not anything was live in that gateway process, so only reading
  the session back (``get_session``) tells it ended.
- hoop's ``PUT /users`` replaces the whole user: ``put_user`` sends every field, never a partial change.

This module never decides whose sessions to end: activities do.
"""

from __future__ import annotations

from datetime import UTC, datetime

from integrations.gateway import GatewayNotFoundError, GatewayRefusedError, GatewaySession, GatewayUser
from integrations.hoop.client import HoopClient, seg
from integrations.hoop.records import session_from_row, user_from_body


class HoopSessions(HoopClient):
    """The session and user calls of ``HoopGateway``."""

    # ------------------------------------------------------------------ sessions

    async def list_sessions(
        self,
        *,
        user: str | None = None,
        connection: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
    ) -> list[GatewaySession]:
        """All sessions matching, newest first. ``user`` is a subject id or an email; ``since``: started at
        or after it (hoop's ``start_date``); ``status`` (open, ready, done) is filtered here because hoop's
        list cannot.

        hoop's ``user`` and ``connection`` filters are SQL ``LIKE`` patterns (``pg_prod`` also lists
        ``pg-prod``), so every row is checked again here, exactly: the subject (and, when ``user`` is an
        email, the email too) and the connection name. A session listed here is one of this person's on
        this connection, never a look-alike's."""
        params: dict[str, str] = {}
        subject: str | None = None
        email: str | None = None
        if user:
            if "@" in user:
                try:
                    found = await self.get_user(user)
                except GatewayNotFoundError:
                    return []
                subject, email = found.id, found.email
            else:
                subject = user
            params["user"] = subject
        if connection:
            params["connection"] = connection
        if since is not None:
            # Whole seconds, rounded down: hoop parses RFC 3339 and compares at second precision, and a
            # bound earlier by under a second only lists more (filtered below).
            params["start_date"] = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        sessions = [session_from_row(row) for row in await self._session_rows(params)]
        return [
            s
            for s in sessions
            if (subject is None or s.user_subject == subject)
            and (email is None or s.user_email == email)
            and (not connection or s.connection == connection)
            and (since is None or s.start_date is None or s.start_date >= since)
            and (status is None or s.status == status)
        ]

    async def get_session(self, session_id: str) -> GatewaySession:
        """One session as hoop holds it now (``GatewayNotFoundError`` when it has none by that id)."""
        return session_from_row(await self._get_session(session_id))

    async def kill_session(self, session_id: str) -> None:
        """Ask hoop to kill a session; one already done counts as killed. hoop answers 204 also when the
        session lives on another gateway process and goes on: read it back (``get_session``)."""
        try:
            await self._request("POST", f"/sessions/{seg(session_id)}/kill", ok=(200, 202, 204))
        except GatewayRefusedError:
            if (await self._get_session(session_id)).get("status") != "done":
                raise

    # ------------------------------------------------------------------ users and groups

    async def find_user(self, email_or_id: str) -> GatewayUser | None:
        """The hoop user, or None when the person has never signed in to hoop."""
        try:
            return await self.get_user(email_or_id)
        except GatewayNotFoundError:
            return None

    async def list_users(self) -> list[GatewayUser]:
        return [user_from_body(u) for u in self._json(await self._request("GET", "/users"))]

    async def put_user(self, user: GatewayUser) -> GatewayUser:
        """Write the *whole* user: hoop's PUT replaces every field, clearing those not sent. Read the user,
        change it, and pass all of it here."""
        body = {
            "email": user.email,
            "name": user.name,
            "status": user.status,
            "slack_id": user.slack_id,
            "groups": list(user.groups),
        }
        key = user.id or user.email
        return user_from_body(self._json(await self._request("PUT", f"/users/{seg(key)}", json=body)))

    async def list_user_groups(self) -> list[str]:
        return [str(g) for g in self._json(await self._request("GET", "/users/groups"))]
