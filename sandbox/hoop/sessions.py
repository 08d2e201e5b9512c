"""Sessions in the hoop stand-in: opening one as ``hoop connect`` does (access control, then a jit grant
or the review rules), listing and reading them, killing them, and ending them at their deadline.

- When a session opens (``connect``): the newest (by creation) APPROVED jit review for (user,
  connection) allows it while ``revoke_at > clock()``; otherwise one of the user's groups must be in the
  connection's access-control list (admins bypass). A session let through by a jit review is **not linked
  to it** (``review: null``) and ends by itself at connect time + the review's access duration (read as
  ``done`` from then on). Revoking blocks **new** sessions only: open ones stay open until killed.
- ``GET /sessions``: filters ``user`` (subject id) and ``connection`` (both SQL ``LIKE`` patterns, case-
  sensitive: ``_`` matches any one character, ``%`` any run, so callers must filter again exactly),
  ``type``, ``correlation_id``, ``review.status``, ``review.approver``, ``start_date``/``end_date`` (RFC
  3339), ``limit`` (default 100, > 100 → 422), ``offset`` (> 10000 → 422), ``count`` (capped|exact|none);
  newest first; ``{"data","has_next_page","total","total_is_capped"}``. Unknown query parameters are
  ignored, as in hoop: **there is no** ``status`` **filter** (hoop.md has callers keep the ``open`` rows
  themselves), so a client relying on one would break against the real gateway too. A non-admin caller
  lists only its own sessions.
- ``GET /sessions/{id}`` → the session with its ``review`` embedded (null when it has none) and its input
  as ``script: {"data": …}`` (the list leaves ``script`` out: ``api/session/parser.go`` blanks it, so a
  onetime review's command is read from the detail); ``end_date`` is null until the session is done.
- ``POST /sessions/{id}/kill`` → **204**, also for a session already ``done`` and for one living on
  another gateway process (``detach``: it stays ``open``); an unknown session, or another person's for a
  non-admin → 404. A kill that ends an open session is logged (``session.killed``, ``events``).
- Stand-in only: ``POST /api/_sandbox/connect {"user_email","connection"}`` → 201 ``{"session_id"}`` or
  403 ``{"message": <why>}`` (admin auth), so the demo can open a session as ``hoop connect`` would.

The stand-in runs no timers: deadlines are applied lazily, whenever sessions are read. This module never
creates or decides reviews (``reviews``, ``grants``).
"""

from __future__ import annotations

import functools
import heapq
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sandbox.hoop.api import (
    MAX_LIMIT,
    Caller,
    HoopAccessDenied,
    HTTPError,
    date_param,
    int_param,
    person_and_connection,
    refusal_as_403,
)
from sandbox.hoop.clock import parse_ts, ts
from sandbox.hoop.connections import Connections
from sandbox.hoop.events import SESSION_KILLED
from sandbox.hoop.reviews import Reviews

MAX_OFFSET = 10_000
COUNT_CAP = 10_000
ORG_ID = "9d0c3f4e-6b1a-4e52-9f0a-0d1a2b3c4d5e"


def sql_like(value: str, pattern: str) -> bool:
    """``value LIKE pattern`` as PostgreSQL (hoop's database) evaluates it: case-sensitive, ``%`` any run of
    characters, ``_`` exactly one, ``\\`` (the default escape) makes the next character literal."""
    return _like_regex(pattern).fullmatch(value) is not None


@functools.lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    """The LIKE pattern as a compiled regular expression, built once per pattern (a listing tests every
    session against the same one)."""
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), flags=re.DOTALL)


@dataclass
class SessionIndex:
    """Where to look instead of scanning every session: the stand-in serves benchmarks with thousands of open
    sessions, and every revocation lists them by person or by correlation id and applies deadlines. Only
    ever a superset of the matches (callers still apply every filter). Built from the state when first
    needed and kept up to date as sessions are added; ``count`` tells a stale index (sessions are never
    removed)."""

    count: int = 0
    by_user: dict[str, list[str]] = field(default_factory=dict)
    by_correlation: dict[str, list[str]] = field(default_factory=dict)
    deadlines: list[tuple[datetime, str]] = field(default_factory=list)  # a heap of open sessions' deadlines

    def add(self, session: dict[str, Any]) -> None:
        self.count += 1
        self.by_user.setdefault(session["user_id"], []).append(session["id"])
        if session.get("correlation_id"):
            self.by_correlation.setdefault(session["correlation_id"], []).append(session["id"])
        self.add_deadline(session)

    def add_deadline(self, session: dict[str, Any]) -> None:
        deadline = parse_ts(session.get("deadline"))
        if session["status"] == "open" and deadline is not None:
            heapq.heappush(self.deadlines, (deadline, session["id"]))


class Sessions(Connections, Reviews):
    """Opening, listing, reading, ending and killing sessions."""

    def _session_index(self) -> SessionIndex:
        sessions: dict[str, dict[str, Any]] = self._state["sessions"]
        index: SessionIndex | None = getattr(self, "_index", None)
        if index is None or index.count != len(sessions):
            index = SessionIndex()
            for session in sessions.values():
                index.add(session)
            self._index = index
        return index

    def connect(self, user_email: str, connection: str) -> str:
        """Open a session as ``hoop connect`` would; raises ``HoopAccessDenied`` saying why when refused."""
        with self._lock:
            session = self._connect_locked(user_email, connection)
            self._save()
            return str(session["id"])

    def detach(self, session_id: str) -> None:
        """The session lives on another gateway process (or its row is stale): a kill sent here answers
        204 and the session stays ``open`` (see ``_h_kill``). It still ends at its deadline or on
        ``disconnect``."""
        with self._lock:
            self._state["sessions"][session_id]["detached"] = True
            self._save()

    def disconnect(self, session_id: str) -> None:
        """The person ends their session (it becomes ``done``)."""
        with self._lock:
            session = self._state["sessions"][session_id]
            if session["status"] != "done":
                session["status"] = "done"
                session["end_date"] = ts(self.now())
                self._save()

    def sessions(
        self,
        *,
        user_email: str | None = None,
        connection: str | None = None,
        status: str | None = None,
        correlation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Sessions as the API renders them, newest first."""
        with self._lock:
            self._end_sessions_past_deadline()
            rows = [
                s
                for s in self._sorted_sessions()
                if (user_email is None or s["user_email"] == user_email)
                and (connection is None or s["connection"] == connection)
                and (status is None or s["status"] == status)
                and (correlation_id is None or s.get("correlation_id") == correlation_id)
            ]
            return [self._render_session(s) for s in rows]

    def session(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            self._end_sessions_past_deadline()
            return self._render_session(self._state["sessions"][session_id])

    def _new_session(
        self,
        user: dict[str, Any],
        conn: dict[str, Any],
        *,
        verb: str,
        status: str,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        session = {
            "id": str(uuid.uuid4()),
            "seq": self._next_seq(),
            "user_id": user["id"],
            "user_email": user["email"],
            "user_name": user["name"],
            "connection": conn["name"],
            "type": conn["type"],
            "subtype": conn["subtype"],
            "tags": dict(conn["tags"]),
            "verb": verb,
            "status": status,
            "start_date": ts(self.now()),
            "end_date": None,
            "correlation_id": correlation_id,
            "metadata": {},
            "review_id": None,
            "script": None,
        }
        index = self._session_index()
        self._state["sessions"][session["id"]] = session
        index.add(session)
        return session

    def _sorted_sessions(self, sessions: Iterable[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """``sessions`` (default: all), newest first."""
        return sorted(
            self._state["sessions"].values() if sessions is None else sessions,
            key=lambda s: (parse_ts(s["start_date"]), s["seq"]),
            reverse=True,
        )

    def _end_sessions_past_deadline(self) -> None:
        """Sessions whose jit deadline passed read as ``done``, ended at the deadline (applied lazily, when
        sessions are read: the stand-in runs no timers). transport/plugins/review/review.go: the stream's
        context times out; transport/plugins/audit/wal.go then marks the row done."""
        now = self.now()
        sessions = self._state["sessions"]
        deadlines = self._session_index().deadlines
        changed = False
        while deadlines and deadlines[0][0] <= now:
            deadline, session_id = heapq.heappop(deadlines)
            session = sessions.get(session_id)
            if session is not None and session["status"] == "open":
                session["status"] = "done"
                session["end_date"] = ts(deadline)
                changed = True
        if changed:
            self._save()

    def _connect_locked(self, user_email: str, connection: str) -> dict[str, Any]:
        user = self._find_user(user_email)
        if user is None:
            raise HoopAccessDenied(f"{user_email} has never signed in to hoop")
        # gateway/transport/interceptors/auth/auth.go StreamServerInterceptor: a user whose status is not
        # "active" (inactive, invited) is refused with "user is not active" before the connection is looked
        # up, whatever grants or groups they hold; open sessions are not touched (they must be killed).
        if user["status"] != "active":
            raise HoopAccessDenied(f"user is not active: {user_email} is {user['status']} in hoop")
        conn = self._state["connections"].get(connection)
        # models/connections.go getConnectionByNameOrID: a connection the person may not reach is looked up
        # as if it did not exist; an approved jit review does not open this gate.
        if conn is None or not self._reaches(user, conn):
            raise HoopAccessDenied("connection not found")
        # accessrequest.go / review.go: the newest APPROVED jit review of (user, connection) lets a connect
        # through while its revoke_at is ahead; otherwise the rule (or review plugin) decides.
        newest = self._newest_jit_review(user["id"], connection)
        revoke_at = parse_ts(newest["revoke_at"]) if newest is not None else None
        via_review = (
            newest["id"] if newest is not None and revoke_at is not None and revoke_at > self.now() else None
        )
        if via_review is None:
            required = self._review_required(user, conn)
            if required is not None:
                # hoop creates a PENDING review and answers "waiting approval"; the demo's connect refuses
                # (``create_pending_review`` / ``POST /api/_sandbox/reviews`` leave such a review).
                raise HoopAccessDenied(
                    f"{user_email} needs an approved review to connect to {connection} ({required})"
                    + (
                        f"; their last jit access ended at {newest['revoke_at']}"
                        if newest is not None
                        else ""
                    )
                )
        session = self._new_session(user, conn, verb="connect", status="open")
        if via_review is not None:
            # transport/plugins/review/review.go OnReceive: a connect let through by a jit review is a new
            # session with no link to it (listed with ``review: null``), whose stream ends when a context of
            # the review's AccessDurationSec, counted from the connect, times out: its own deadline.
            grant = self._state["reviews"][via_review]
            deadline = self.now() + timedelta(microseconds=grant["access_duration_ns"] // 1000)
            session["deadline"] = ts(deadline)
            self._session_index().add_deadline(session)
        return session

    def _visible(self, caller: Caller, session: dict[str, Any]) -> bool:
        return caller.admin or session["user_id"] == caller.id

    def _h_list_sessions(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        limit = int_param(query, "limit", MAX_LIMIT)
        offset = int_param(query, "offset", 0)
        if not 0 < limit <= MAX_LIMIT:
            raise HTTPError(422, f"limit must be between 1 and {MAX_LIMIT}")
        if not 0 <= offset <= MAX_OFFSET:
            raise HTTPError(422, f"offset must be between 0 and {MAX_OFFSET}")
        count = query.get("count", "capped")
        if count not in ("capped", "exact", "none"):
            raise HTTPError(422, "count must be one of capped, exact, none")
        start, end = date_param(query, "start_date"), date_param(query, "end_date")
        reviews = self._state["reviews"]
        self._end_sessions_past_deadline()

        def keep(s: dict[str, Any]) -> bool:
            review = reviews.get(s["review_id"]) if s["review_id"] else None
            started = parse_ts(s["start_date"])
            assert started is not None
            return (
                self._visible(caller, s)
                # models/session.go sessionListUserCondition / sessionListConnectionCondition: ``user`` (a
                # subject id) and ``connection`` are SQL LIKE patterns, so "pg_prod" also lists "pg-prod".
                and ("user" not in query or sql_like(s["user_id"], query["user"]))
                and ("connection" not in query or sql_like(s["connection"], query["connection"]))
                and ("type" not in query or s["type"] == query["type"])
                and ("correlation_id" not in query or s.get("correlation_id") == query["correlation_id"])
                and (
                    "review.status" not in query
                    or (review is not None and review["status"] == query["review.status"])
                )
                and (
                    "review.approver" not in query
                    or (
                        review is not None
                        and any(
                            (g["reviewed_by"] or {}).get("email") == query["review.approver"]
                            for g in review["groups"]
                        )
                    )
                )
                and (start is None or started >= start)
                and (end is None or started <= end)
            )

        rows = self._sorted_sessions([s for s in self._candidates(query) if keep(s)])
        page = rows[offset : offset + limit]
        total: int | None = len(rows)
        capped = False
        if count == "none":
            total = None
        elif count == "capped" and len(rows) > COUNT_CAP:
            total, capped = COUNT_CAP, True
        return 200, {
            "data": [self._render_session(s, listing=True) for s in page],
            "has_next_page": offset + len(page) < len(rows),
            "total": total,
            "total_is_capped": capped,
        }

    def _candidates(self, query: dict[str, str]) -> Iterable[dict[str, Any]]:
        """The sessions a listing must look at: those of one correlation id or one subject when the query
        names them exactly (a ``user`` pattern with no LIKE wildcard or escape), else all."""
        sessions: dict[str, dict[str, Any]] = self._state["sessions"]
        index = self._session_index()
        if "correlation_id" in query:
            ids = index.by_correlation.get(query["correlation_id"], [])
        elif "user" in query and not any(c in query["user"] for c in "%_\\"):
            ids = index.by_user.get(query["user"], [])
        else:
            return sessions.values()
        return [sessions[i] for i in ids]

    def _session_for(self, caller: Caller, session_id: str) -> dict[str, Any]:
        self._end_sessions_past_deadline()
        session = self._state["sessions"].get(session_id)
        if session is None:
            raise HTTPError(404, "session not found")
        if not self._visible(caller, session):
            raise HTTPError(403, "access denied")
        return session

    def _h_get_session(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        return 200, self._render_session(self._session_for(caller, params["session_id"]))

    def _h_kill(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # gateway/api/session/session.go Kill: an unknown session, or another person's for a non-admin, is
        # 404 "session not found"; anything else is handed to transport/system/session.go KillSession, which
        # answers 204 whether or not it found the session's stream in this gateway process.
        self._end_sessions_past_deadline()
        session = self._state["sessions"].get(params["session_id"])
        if session is None or not self._visible(caller, session):
            raise HTTPError(404, "session not found")
        if session["status"] == "done":
            # Nothing live to close: still 204 (hoop's audit plugin re-marks the row done in the background;
            # the stand-in leaves it as it was).
            return 204, None
        if session["status"] == "open" and session.get("detached"):
            # The stream lives in another gateway process (or the row is stale): KillSession finds nothing
            # here and answers 204, and the connection lives on. This process's audit plugin marks the row
            # done in a goroutine, best effort (transport/plugins/audit/wal.go closeSessionWAL): a read-back
            # right after the kill, or after that write failed, still shows the session ``open``. The
            # stand-in keeps it open, so callers must read back and retry.
            return 204, None
        now = self.now()
        session["status"] = "done"
        session["end_date"] = ts(now)
        session["killed"] = True
        self._record_event(
            SESSION_KILLED,
            now,
            user_email=session["user_email"],
            connection=session["connection"],
            session_id=session["id"],
        )
        self._save()
        return 204, None

    def _h_sandbox_connect(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        body, email, connection = person_and_connection(body)
        with refusal_as_403():
            session_id = self.connect(email, connection)
        return 201, {"session_id": session_id}

    def _render_session(self, session: dict[str, Any], *, listing: bool = False) -> dict[str, Any]:
        """A session as ``GET /sessions/{id}`` renders it, or (``listing``) as a row of ``GET /sessions``."""
        review = self._state["reviews"].get(session["review_id"]) if session["review_id"] else None
        body: dict[str, Any] = {
            "id": session["id"],
            "org_id": ORG_ID,
            "user": session["user_email"],
            "user_id": session["user_id"],
            "user_name": session["user_name"],
            "identity_type": "user",
            "type": session["type"],
            "connection": session["connection"],
            "connection_subtype": session["subtype"],
            "connection_tags": session["tags"],
            "role_name": session["connection"],
            "verb": session["verb"],
            "status": session["status"],
            "start_date": session["start_date"],
            "end_date": session["end_date"],
            "metadata": session["metadata"],
            "review": self._render_review_body(review) if review else None,
        }
        if session.get("correlation_id"):
            body["correlation_id"] = session["correlation_id"]
        if not listing:
            # gateway/api/session/session.go Get: the input is always loaded and rendered ("old behavior"),
            # {"data": ""} when the session has none. gateway/api/session/parser.go toOpenApiSessionList
            # blanks it in the list (hoop sends "script": null there; omitted here, as the spec types it
            # non-null): a onetime review's command is read from the detail only.
            body["script"] = {"data": session.get("script") or ""}
        return body
