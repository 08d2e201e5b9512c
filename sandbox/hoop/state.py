"""The hoop stand-in's state: one JSON-ready dict behind one lock, written to ``state_file`` after every
mutation and loaded back by the constructor, so a restart forgets nothing.

:class:`HoopCore` is the base every resource mixin (connections, users, sessions, reviews, grants,
routing) builds on: the lock, the state, the clock (``now()``, from ``HttpStandIn``) and the look-ups all
of them need. HTTP handlers and the in-process helpers run on different threads, so every access to
``_state`` holds ``_lock`` (re-entrant: helpers call helpers). Calls and faults are not state: they are
never persisted.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox._server import HttpStandIn
from sandbox.hoop.clock import utcnow
from sandbox.hoop.events import EventLog

STATE_VERSION = 1


def empty_state() -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "seq": 0,
        "users": {},  # subject id -> user
        "identities": {},  # email -> user known to the IdP but never signed in to hoop
        "tokens": {},  # personal bearer token -> subject id
        "connections": {},  # name -> connection
        "sessions": {},  # id -> session
        "reviews": {},  # id -> review
        "rules": {},  # name -> access request rule
        "attributes": {},  # name -> attribute (links connections, access-control groups and rules)
        "access_control_enabled": True,  # the access_control plugin
        "keys": {"api_keys": {}, "ai_agents": {}},  # kind -> id -> API key or AI agent (identity_keys.py)
    }


class HoopCore(HttpStandIn, EventLog):
    """The state, its lock and persistence, the user look-ups every resource uses, and the event log
    (``events``: when grants were written and revoked and sessions killed, see ``sandbox.hoop.events``)."""

    def __init__(self, *, state_file: Path | None, clock: Callable[[], datetime] | None) -> None:
        self._lock = threading.RLock()
        self._clock = clock or utcnow
        self.state_file = Path(state_file) if state_file is not None else None
        self._server = None
        self._state = empty_state()
        if self.state_file is not None and self.state_file.exists():
            loaded = json.loads(self.state_file.read_text())
            if loaded.get("version") != STATE_VERSION:
                raise ValueError(f"{self.state_file}: unknown state version {loaded.get('version')!r}")
            self._state.update(loaded)

    def state_snapshot(self) -> dict[str, Any]:
        """A deep copy of the raw state, as persisted."""
        with self._lock:
            return copy.deepcopy(self._state)

    def _save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    def _next_seq(self) -> int:
        self._state["seq"] += 1
        return int(self._state["seq"])

    def _find_user(self, email_or_id: str) -> dict[str, Any] | None:
        users: dict[str, dict[str, Any]] = self._state["users"]
        if email_or_id in users:
            return users[email_or_id]
        # An index by email, so an organisation of 100,000 people is not scanned per request. A user's email
        # never changes once stored (users.py keeps it on update) and users are added through _indexed, so
        # the index is rebuilt only when it cannot be right: counts differ, or a hit no longer matches.
        index: dict[str, str] | None = getattr(self, "_subject_by_email", None)
        for _ in range(2):
            if index is None or len(index) != len(users):
                index = {user["email"]: subject for subject, user in users.items()}
                self._subject_by_email = index
            subject = index.get(email_or_id)
            if subject is None:
                return None
            user = users.get(subject)
            if user is not None and user["email"] == email_or_id:
                return user
            index = None  # moved under another subject behind the index's back: rebuild once
        return None

    def _indexed(self, user: dict[str, Any]) -> None:
        """Note a user just stored under ``self._state["users"]`` in the email index."""
        index: dict[str, str] | None = getattr(self, "_subject_by_email", None)
        if index is not None:
            index[user["email"]] = user["id"]

    def _require_user(self, email: str) -> dict[str, Any]:
        user = self._find_user(email)
        if user is None:
            raise KeyError(f"{email} has never signed in to hoop")
        return user
