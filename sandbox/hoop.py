"""A local hoop.dev gateway for tests and ``grantflow dev``: a real HTTP server answering the calls grantflow
makes, the way hoop 1.148 answers them (see ``../shared/notes/hoop.md`` and the OpenAPI spec).

    hoop = HoopStandIn(state_file=Path(".grantflow/hoop.json"), clock=clock)
    hoop.add_user("alice@corp", groups=["eng"])
    hoop.add_connection("pg-prod", access_groups=["dba"], reviewers=["dba-owners"])
    url = hoop.start()          # http://127.0.0.1:PORT ; the API is under {url}/api
    ...
    hoop.connect("alice@corp", "pg-prod")   # like `hoop connect`: refused without access or a grant
    hoop.stop()

Behaviour reproduced (where the running gateway and its spec differ, the gateway is followed):

- Auth: ``Authorization: Bearer <api key>`` or the legacy ``Api-Key: <key>`` header (both look up the
  same key table here; a key's groups come from ``api_keys``; group ``admin`` may do everything).
  Tokens minted by ``issue_user_token`` authenticate as a person (to exercise "the owner cannot approve
  their own"). Anything else: **401** ``{"message": "unauthorized"}``. Admin-only here: provision, users,
  plugins, access-request rules. A non-admin caller lists only its own sessions.
- ``POST /sessions/provision`` (API-key auth only; a person's token gets 403) → **202**
  ``{"session_id","user_email","has_review"}``. It creates a session (status ``ready``, verb ``connect``:
  a grant, not a running connection) and a ``jit`` review. With ``approved_reviewers`` omitted/null every
  reviewer group of the connection is approved at once by the key, so the review is ``APPROVED`` with
  ``revoke_at = now + access_duration_sec`` and ``access_duration`` in **nanoseconds**; ``has_review`` is
  true only when the review was left pending. Every call creates a new session and review (no
  deduplication); ``correlation_id`` is stored and only usable as a filter. Checks, in order: missing
  fields → 422; a user who never signed in → **400** ``user not found: <email>``; unknown connection →
  **404** ``connection not found`` (the spec declares no 404 for this route; chosen to match hoop's other
  connection lookups, listed as an assumption in the contract test); the session is then written, and
  only then is ``access_duration_sec > 48 h`` checked → **500**, leaving an orphan session without a
  review. ``access_duration_sec`` absent or 0 → the connection's ``jit_access_duration_sec`` or 30 min.
- ``GET /sessions``: filters ``user`` (subject id) and ``connection`` (both SQL ``LIKE`` patterns, case-
  sensitive: ``_`` matches any one character, ``%`` any run, so callers must filter again exactly), ``type``,
  ``correlation_id``,
  ``review.status``, ``review.approver``, ``start_date``/``end_date`` (RFC 3339), ``limit`` (default 100,
  > 100 → 422), ``offset`` (> 10000 → 422), ``count`` (capped|exact|none); newest first;
  ``{"data","has_next_page","total","total_is_capped"}``. Unknown query parameters are ignored, as in
  hoop: **there is no** ``status`` **filter** (hoop.md has callers keep the ``open`` rows themselves), so
  a client relying on one would break against the real gateway too.
- ``GET /sessions/{id}`` → the session with its ``review`` embedded (null when it has none) and its input
  as ``script: {"data": …}`` (the list leaves ``script`` out: ``api/session/parser.go`` blanks it, so a
  onetime review's command is read from the detail); ``end_date`` is null until the session is done.
  ``POST /sessions/{id}/kill`` → **204**, also for a session already
  ``done`` and for one living on another gateway process (``detach``: it stays ``open``); an unknown
  session, or another person's for a non-admin → 404.
- ``GET /reviews``, ``GET /reviews/{id}`` (review id or session id; any caller may read any review;
  unknown → **404** ``resource not found``). ``PUT /reviews/{id}`` ``{"status", "rejection_reason"?,
  "force_review"?}`` follows ``gateway/api/review/review.go`` ``DoReview``: an unknown review → **500**
  (its not-found error is not mapped), as are an unknown status and revoking a ``onetime`` review; only
  while PENDING or APPROVED, else **400** ``review is in wrong state`` (REVOKED needs APPROVED); the owner
  approving their own (unless admin) → **400** ``unable to self approve review``. Without
  ``force_review`` (``doIndividualReview``) every review group the caller belongs to is marked at once; a
  caller in none → **400** ``not eligible for review``, unless owner or admin, who may only deny (an
  admin's APPROVED marks nothing and leaves the review as it was); one REJECTED ends it; the review turns
  APPROVED only when the approved count **equals** ``min(len(groups), min_approvals)`` (the rule's
  ``min_approvals``, else the connection's ``min_review_approvals``; the spec's prose says all groups), so
  a caller in more groups than needed leaves it PENDING for good. With ``force_review`` (``doForcedReview``)
  a caller in the force-approval groups — the review's (copied from its access-request rule) when a rule
  made it, else the connection's ``force_approve_groups`` — decides it in one call (that group marked
  ``forced_review: true``, shown by the PUT answer and the sessions, not by ``GET /reviews``); else 400
  ``not eligible for review``. Whenever the review ends APPROVED — re-approving an APPROVED one included —
  ``revoke_at = now + access_duration``; REVOKED leaves ``revoke_at`` as it was (the review just stops
  counting as a grant). The review's session becomes ``ready`` (APPROVED) or ``done`` (REJECTED/REVOKED).
  Provisioned reviews (``createApprovedReview``) are APPROVED only when every group is, and a jit one gets
  ``revoke_at`` at creation even when left PENDING.
- When a session opens (``connect``): the newest (by creation) APPROVED jit review for (user,
  connection) allows it while ``revoke_at > clock()``; otherwise one of the user's groups must be in the
  connection's access-control list (admins bypass). A session let through by a jit review is **not linked
  to it** (``review: null``) and ends by itself at connect time + the review's access duration (read as
  ``done`` from then on). Revoking blocks **new** sessions only: open ones stay open until killed.
- ``GET /connections`` (an array; with ``page``/``page_size`` → ``{pages, data}``), ``GET
  /plugins/access_control`` (connections with at least one access group, ``config`` = those groups),
  ``GET /users``, ``GET``/``PUT /users/{emailOrID}`` (**PUT replaces the whole user**: name, slack_id and
  groups not sent are cleared; the email is never changed; ``status`` is stored as sent, so an omitted or
  unknown one is a 500 that writes nothing; the role follows the groups), ``GET /users/groups``, ``GET
  /access-requests/rules`` (``{pages, data}``).
- A user who is not ``active`` is refused at connect ("user is not active"); an ``inactive`` one cannot
  sign in either. Signing in (``sign_in``) sets an ``invited`` user active and, with an IdP groups claim,
  overwrites the groups (an admin keeps admin).
- Stand-in only: ``POST /api/_sandbox/connect {"user_email","connection"}`` → 201 ``{"session_id"}`` or
  403 ``{"message": <why>}`` (admin auth), so the demo can open a session as ``hoop connect`` would; ``POST
  /api/_sandbox/login {"user_email","idp_groups"?}`` → 200 the user, or 403 for an inactive one, as an
  OIDC login whose groups claim is ``idp_groups`` (omitted: groups kept); ``POST
  /api/_sandbox/reviews {"user_email","connection","type"?,"duration_sec"?,"command"?}`` → 201
  ``{"review_id","session_id","type","status"}`` (admin auth) leaves a review PENDING as that person, as
  ``hoop connect`` (``jit``, the default, for ``duration_sec``) or ``hoop exec`` (``onetime``, ``command``)
  on a connection that needs a review would (``create_pending_review``); a user who never signed in → 400,
  an unknown connection → 404, a bad type, duration or command → 422, each ``{"message": <why>}``.

Test hooks: an injectable ``clock`` (``ManualClock``); ``fail_next`` injects 5xx/429 (with
``Retry-After``) before or *after* the write; ``detach`` puts a session on "another gateway process" (a
kill answers 204 and it stays open); every call is recorded in ``calls``. All state is written
atomically to ``state_file`` after every mutation and loaded back by the constructor, so a restart
forgets nothing (calls and faults are not persisted). One lock guards all state: HTTP handlers and the
in-process helpers run on different threads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox._server import HttpStandIn

DEFAULT_API_KEY = "hpk_sandbox_admin_key"
MAX_ACCESS_DURATION_SEC = 48 * 3600
DEFAULT_ACCESS_DURATION_SEC = 30 * 60
NANOS = 1_000_000_000
MAX_LIMIT = 100
MAX_OFFSET = 10_000
COUNT_CAP = 10_000
ORG_ID = "9d0c3f4e-6b1a-4e52-9f0a-0d1a2b3c4d5e"
STATE_VERSION = 1
_ID_NAMESPACE = uuid.UUID("6f1d2a8e-3c4b-4e5f-8a9b-0c1d2e3f4a5b")

PENDING, APPROVED, REJECTED, REVOKED = "PENDING", "APPROVED", "REJECTED", "REVOKED"
ADMIN_GROUP, AUDITOR_GROUP = "admin", "auditor"  # storagev2/types/const.go defaults
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class HoopAccessDenied(PermissionError):
    """``connect`` refused: no standing access and no valid jit grant. ``str()`` says why."""


class Call(NamedTuple):
    """One HTTP exchange with the stand-in, as recorded for assertions."""

    method: str
    path: str  # as requested, including the /api prefix
    query: dict[str, str]
    json: Any  # the parsed request body, or None
    status: int
    response: Any = None  # the parsed response body, or None
    injected: bool = False  # the status came from ``fail_next``


class PendingReview(NamedTuple):
    session_id: str
    review_id: str


class ManualClock:
    """A clock for tests: stands still until moved. ``HoopStandIn(clock=ManualClock())``."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware datetime")
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, /, **kwargs: float) -> datetime:
        with self._lock:
            self._now += (delta or timedelta()) + timedelta(**kwargs)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


@dataclass
class _Fault:
    prefix: str
    status: int
    retry_after: float | str | None
    remaining: int
    after_write: bool
    method: str | None


@dataclass(frozen=True)
class _Caller:
    kind: str  # "apikey" | "user"
    id: str
    name: str
    email: str
    groups: tuple[str, ...]
    slack_id: str = ""

    @property
    def admin(self) -> bool:
        return "admin" in self.groups

    def owner(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "slack_id": self.slack_id}


@dataclass
class _HTTPError(Exception):
    status: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _sql_like(value: str, pattern: str) -> bool:
    """``value LIKE pattern`` as PostgreSQL (hoop's database) evaluates it: case-sensitive, ``%`` any run of
    characters, ``_`` exactly one, ``\\`` (the default escape) makes the next character literal."""
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
    return re.fullmatch("".join(parts), value, flags=re.DOTALL) is not None


def _empty_state() -> dict[str, Any]:
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
    }


class HoopStandIn(HttpStandIn):
    """The hoop gateway, in process. See the module docstring for the behaviour and its sources."""

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        api_keys: dict[str, list[str]] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock or _utcnow
        self.state_file = Path(state_file) if state_file is not None else None
        keys = api_keys if api_keys is not None else {DEFAULT_API_KEY: ["admin"]}
        if not keys:
            raise ValueError("at least one API key is needed")
        self._api_keys: dict[str, _Caller] = {
            key: _Caller(
                kind="apikey",
                id=str(uuid.uuid5(_ID_NAMESPACE, key)),
                name=f"api-key-{n}",
                email="",
                groups=tuple(groups),
            )
            for n, (key, groups) in enumerate(keys.items(), start=1)
        }
        self.api_key = next(iter(keys))
        self.calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._server = None
        self._state = _empty_state()
        if self.state_file is not None and self.state_file.exists():
            loaded = json.loads(self.state_file.read_text())
            if loaded.get("version") != STATE_VERSION:
                raise ValueError(f"{self.state_file}: unknown state version {loaded.get('version')!r}")
            self._state.update(loaded)
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    # ------------------------------------------------------------------ seeding helpers

    def add_user(
        self,
        email: str,
        name: str = "",
        groups: Iterable[str] = (),
        status: str = "active",
        signed_in: bool = True,
        slack_id: str = "",
    ) -> str:
        """Add (or update, keeping its subject) a user; returns the subject id. ``signed_in=False`` keeps the
        person out of hoop (known only to the IdP) until ``sign_in``: hoop has no such user before a login."""
        if status not in ("active", "inactive", "invited"):
            raise ValueError(f"bad status {status!r}")
        with self._lock:
            user = self._find_user(email)
            record = {
                "email": email,
                "name": name,
                "status": status,
                "slack_id": slack_id,
                "groups": sorted(set(groups)),
            }
            if user is not None:
                user.update(record)
                self._save()
                return str(user["id"])
            identity = self._state["identities"].get(email)
            subject = identity["id"] if identity else str(uuid.uuid4())
            record["id"] = subject
            if signed_in:
                self._state["identities"].pop(email, None)
                self._state["users"][subject] = record
            else:
                self._state["identities"][email] = record
            self._save()
            return subject

    def sign_in(self, email: str, *, idp_groups: Iterable[str] | None = None) -> str:
        """The person logs in to hoop (OIDC). With ``idp_groups`` the IdP claim overwrites their groups, as
        hoop does at every login when a groups claim is configured. Returns the subject id; raises
        ``HoopAccessDenied`` for an inactive user, whose record is left as it was."""
        with self._lock:
            user = self._find_user(email)
            # gateway/api/login/oidc/login.go LoginCallback: an existing inactive user is refused (the login
            # ends in an error redirect) before anything is synced; an admin must set them active first.
            if user is not None and user["status"] == "inactive":
                raise HoopAccessDenied(f"user is inactive: {email} cannot sign in to hoop")
            if user is None:
                identity = self._state["identities"].pop(email, None)
                if identity is None:
                    identity = {
                        "id": str(uuid.uuid4()),
                        "email": email,
                        "name": "",
                        "status": "active",
                        "slack_id": "",
                        "groups": [],
                    }
                user = identity
                self._state["users"][user["id"]] = user
            elif idp_groups is not None and "admin" in user["groups"]:
                # login.go syncSingleTenantUser: an existing admin keeps the admin group over the claim.
                idp_groups = [*idp_groups, "admin"]
            # login.go syncSingleTenantUser: the user is written back as "active" (an invited user becomes
            # active) and, with a groups claim (MustSyncGroups), their groups become the claim, deduplicated.
            user["status"] = "active"
            if idp_groups is not None:
                user["groups"] = sorted(set(idp_groups))
            self._save()
            return str(user["id"])

    def issue_user_token(self, email: str) -> str:
        """A bearer token that authenticates as this (signed-in) person, like a hoop web session."""
        with self._lock:
            user = self._require_user(email)
            token = "usr_" + uuid.uuid4().hex
            self._state["tokens"][token] = user["id"]
            self._save()
            return token

    def add_connection(
        self,
        name: str,
        type: str = "database",
        subtype: str = "postgres",
        access_groups: Iterable[str] = (),
        reviewers: Iterable[str] = (),
        *,
        min_review_approvals: int | None = None,
        access_max_duration: int | None = None,
        jit_access_duration_sec: int | None = None,
        tags: dict[str, str] | None = None,
        force_approve_groups: Iterable[str] | None = None,
    ) -> str:
        """Add (or update) a connection; ``access_groups`` is its access-control list. Returns its id.
        ``force_approve_groups`` (hoop's field name, ``models/connections.go`` ``ForceApproveGroups``):
        members decide a review of this connection in one ``PUT /reviews`` with ``force_review``
        (``review.go`` ``doForcedReview``), unless the review came from an access-request rule (then the
        rule's ``force_approval_groups`` count)."""
        with self._lock:
            existing = self._state["connections"].get(name)
            conn = {
                "id": existing["id"] if existing else str(uuid.uuid4()),
                "name": name,
                "type": type,
                "subtype": subtype,
                "agent_id": existing["agent_id"] if existing else str(uuid.uuid4()),
                "access_groups": sorted(set(access_groups)),
                "reviewers": list(reviewers),
                "min_review_approvals": min_review_approvals,
                "access_max_duration": access_max_duration,
                "jit_access_duration_sec": jit_access_duration_sec,
                "tags": dict(tags or {}),
                "force_approve_groups": None if force_approve_groups is None else list(force_approve_groups),
            }
            self._state["connections"][name] = conn
            self._save()
            return str(conn["id"])

    def add_access_rule(
        self,
        name: str,
        *,
        access_type: str = "jit",
        connection_names: Sequence[str] = (),
        reviewers_groups: Sequence[str] = (),
        min_approvals: int | None = None,
        access_max_duration: int | None = None,
        description: str = "",
        approval_required_groups: Sequence[str] = (),
        skip_review_groups: Sequence[str] = (),
        force_approval_groups: Sequence[str] = (),
        attributes: Sequence[str] = (),
        all_groups_must_approve: bool = False,
    ) -> None:
        """Add (or replace) an access-request rule (``models/access_request_rules.go``): ``access_type`` jit,
        command or jit_command; it applies to ``connection_names`` and to the connections of its
        ``attributes``. Who is reviewed: see ``_review_required``."""
        if access_type not in ("jit", "command", "jit_command"):
            raise ValueError(f"bad access type {access_type!r}")
        with self._lock:
            now = _ts(self.now())
            existing = self._state["rules"].get(name)
            self._state["rules"][name] = {
                "id": existing["id"] if existing else str(uuid.uuid4()),
                "name": name,
                "description": description,
                "access_type": access_type,
                "connection_names": list(connection_names),
                "reviewers_groups": list(reviewers_groups),
                "approval_required_groups": list(approval_required_groups),
                "force_approval_groups": list(force_approval_groups),
                "skip_review_groups": list(skip_review_groups),
                "attributes": list(attributes),
                "all_groups_must_approve": all_groups_must_approve,
                "min_approvals": min_approvals,
                "access_max_duration": access_max_duration,
                "created_at": existing["created_at"] if existing else now,
                "updated_at": now,
            }
            self._save()

    def add_attribute(
        self,
        name: str,
        *,
        connection_names: Sequence[str] = (),
        access_control_group_names: Sequence[str] = (),
        access_request_rule_names: Sequence[str] = (),
        description: str = "",
    ) -> None:
        """Add (or replace) an attribute (``api/attributes/attributes.go``): members of its access-control
        groups reach its connections, and its access-request rules apply to them."""
        with self._lock:
            now = _ts(self.now())
            existing = self._state["attributes"].get(name)
            self._state["attributes"][name] = {
                "id": existing["id"] if existing else str(uuid.uuid4()),
                "name": name,
                "description": description,
                "connection_names": sorted(set(connection_names)),
                "access_control_group_names": sorted(set(access_control_group_names)),
                "access_request_rule_names": sorted(set(access_request_rule_names)),
                "created_at": existing["created_at"] if existing else now,
                "updated_at": now,
            }
            self._save()

    def set_access_control(self, enabled: bool) -> None:
        """Turn the ``access_control`` plugin on or off (off: everyone reaches every connection)."""
        with self._lock:
            self._state["access_control_enabled"] = enabled
            self._save()

    def create_pending_review(
        self,
        user_email: str,
        connection: str,
        *,
        type: str = "jit",
        groups: Sequence[str] | None = None,
        min_approvals: int | None = None,
        duration_sec: int = DEFAULT_ACCESS_DURATION_SEC,
        command: str | None = None,
        rule_name: str | None = None,
    ) -> PendingReview:
        """A review hoop holds as PENDING, as when a person asks for access in hoop itself (``jit``: a
        timed connection; ``onetime``: one command, ``command``). Without ``rule_name`` or ``groups``, the
        connection's access-request rule for that access (jit; command) is used when it has one, as hoop
        does.

        Without ``rule_name`` it is a review of the review plugin (``transport/plugins/review/review.go``):
        groups default to the connection's reviewers, it carries no ``min_approvals`` (approvals are counted
        against the connection's ``min_review_approvals`` when decided) and no force-approval groups (the
        connection's count). An explicit ``min_approvals`` is a seeding shortcut the stand-in counts instead.
        With ``rule_name`` it is a review of that access-request rule (``interceptors/accessrequest``
        ``createReview``): groups default to the rule's ``reviewers_groups``, ``min_approvals`` to the rule's
        (all groups with ``all_groups_must_approve``), and it carries the rule's ``force_approval_groups``."""
        if type not in ("jit", "onetime"):
            raise ValueError(f"bad review type {type!r}")
        with self._lock:
            user = self._require_user(user_email)
            conn = self._state["connections"].get(connection)
            if conn is None:
                raise KeyError(f"no connection {connection!r}")
            force_groups: list[str] | None = None
            if rule_name is None and groups is None:
                # interceptors/accessrequest OnReceive: a connection with an access-request rule for the
                # access (connect: jit; exec: command) gets the rule's review, not the review plugin's
                found = (
                    self._jit_rule_for(connection) if type == "jit" else self._command_rule_for(connection)
                )
                rule_name = found["name"] if found is not None else None
            if rule_name is not None:
                rule = self._state["rules"].get(rule_name)
                if rule is None:
                    raise KeyError(f"no access request rule {rule_name!r}")
                review_groups = list(groups) if groups is not None else list(rule["reviewers_groups"])
                if min_approvals is None:
                    min_approvals = (
                        len(review_groups) if rule.get("all_groups_must_approve") else rule["min_approvals"]
                    )
                force_groups = rule.get("force_approval_groups")
                force_groups = None if force_groups is None else list(force_groups)
            else:
                review_groups = list(groups) if groups is not None else list(conn["reviewers"])
            session = self._new_session(
                user, conn, verb="exec" if type == "onetime" else "connect", status="ready"
            )
            if command is not None:
                session["script"] = command
            review = self._new_review(
                session,
                type=type,
                groups=review_groups,
                min_approvals=min_approvals,
                duration_sec=duration_sec if type == "jit" else 0,
                rule_name=rule_name,
                force_approval_groups=force_groups,
            )
            self._save()
            return PendingReview(session["id"], review["id"])

    # ------------------------------------------------------------------ behaviour helpers

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
                session["end_date"] = _ts(self.now())
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

    def review(self, review_id: str) -> dict[str, Any]:
        with self._lock:
            return self._render_review(self._state["reviews"][review_id])

    def state_snapshot(self) -> dict[str, Any]:
        """A deep copy of the raw state, as persisted."""
        with self._lock:
            return copy.deepcopy(self._state)

    def user(self, email_or_id: str) -> dict[str, Any]:
        with self._lock:
            user = self._find_user(email_or_id)
            if user is None:
                raise KeyError(email_or_id)
            return self._render_user(user)

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        path_prefix: str,
        status: int = 503,
        retry_after: float | str | None = None,
        count: int = 1,
        after_write: bool = False,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` (with or without the
        ``/api`` prefix) with ``status`` and ``{"message": "injected failure"}``, plus ``Retry-After`` when
        given (seconds, or an HTTP-date string). ``after_write=True`` runs the request first and replaces its
        answer: the write happened but the caller sees a failure."""
        prefix = path_prefix if path_prefix.startswith("/api/") else "/api" + path_prefix
        with self._lock:
            self._faults.append(
                _Fault(prefix, status, retry_after, count, after_write, method.upper() if method else None)
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # ------------------------------------------------------------------ internals: state

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
        for user in users.values():
            if user["email"] == email_or_id:
                return user
        return None

    def _require_user(self, email: str) -> dict[str, Any]:
        user = self._find_user(email)
        if user is None:
            raise KeyError(f"{email} has never signed in to hoop")
        return user

    def _new_session(
        self, user: dict[str, Any], conn: dict[str, Any], *, verb: str, status: str
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
            "start_date": _ts(self.now()),
            "end_date": None,
            "correlation_id": None,
            "metadata": {},
            "review_id": None,
            "script": None,
        }
        self._state["sessions"][session["id"]] = session
        return session

    def _new_review(
        self,
        session: dict[str, Any],
        *,
        type: str,
        groups: list[str],
        min_approvals: int | None,
        duration_sec: int,
        rule_name: str | None = None,
        force_approval_groups: list[str] | None = None,
        approved_by: _Caller | None = None,
        approved_groups: set[str] | None = None,
    ) -> dict[str, Any]:
        """A review of ``session``: PENDING, or — with ``approved_by`` (provision) — approved as
        ``api/session/session.go`` ``createApprovedReview`` does it: a connection without reviewers gets the
        single group ``admin``; ``approved_groups`` None approves every group; the review is APPROVED only
        when every group is (``min_approvals`` plays no part); a jit review gets ``revoke_at = now +
        duration`` even when it is left PENDING."""
        now = self.now()
        if approved_by is not None and not groups:
            groups, approved_groups = ["admin"], {"admin"}
        review: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "seq": self._next_seq(),
            "session_id": session["id"],
            "owner_id": session["user_id"],
            "owner_email": session["user_email"],
            "connection": session["connection"],
            "type": type,
            "status": PENDING,
            "access_duration_ns": duration_sec * NANOS,
            "created_at": _ts(now),
            "revoke_at": None,
            "min_approvals": min_approvals,
            "rejection_reason": None,
            "rule_name": rule_name,
            # models/reviews.go Review.ForceApprovalGroups: copied from the access-request rule when a rule
            # made the review (accessrequest.go createReview), null otherwise
            "force_approval_groups": force_approval_groups,
            "groups": [self._review_group(g) for g in groups],
        }
        session["review_id"] = review["id"]
        self._state["reviews"][review["id"]] = review
        if approved_by is not None:
            for entry in review["groups"]:
                if approved_groups is None or entry["group"] in approved_groups:
                    entry.update(status=APPROVED, reviewed_by=approved_by.owner(), review_date=_ts(now))
            if all(entry["status"] == APPROVED for entry in review["groups"]):
                review["status"] = APPROVED
            if type == "jit":
                review["revoke_at"] = _ts(now + timedelta(seconds=duration_sec))
        return review

    @staticmethod
    def _review_group(group: str, **decided: Any) -> dict[str, Any]:
        """One entry of a review's ``review_groups_data`` (``models.ReviewGroups``), PENDING unless told."""
        entry: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "group": group,
            "status": PENDING,
            "reviewed_by": None,
            "review_date": None,
            "forced_review": False,
        }
        entry.update(decided)
        return entry

    def _command_rule_for(self, connection: str) -> dict[str, Any] | None:
        """``services.GetRuleForConnection`` for access type command (``jit_command`` counts too), by the
        rule's ``connection_names`` (attribute links are not followed here)."""
        return next(
            (
                r
                for r in self._state["rules"].values()
                if r["access_type"] in ("command", "jit_command") and connection in r["connection_names"]
            ),
            None,
        )

    def _approvals_needed(self, review: dict[str, Any]) -> int:
        """gateway/api/review/review.go doIndividualReview: every group, or fewer — the review's own
        ``min_approvals`` when an access-request rule made it, else the connection's (current)
        ``min_review_approvals``. A stored ``min_approvals`` on a plugin review is create_pending_review's
        seeding shortcut and counts the same way. 0 is taken literally (hoop does too)."""
        needed = len(review["groups"])
        limit = review["min_approvals"]
        if limit is None and review["rule_name"] is None:
            conn = self._state["connections"].get(review["connection"]) or {}
            limit = conn.get("min_review_approvals")
        return needed if limit is None else min(needed, limit)

    def _settle_approval(self, review: dict[str, Any]) -> None:
        """After an individual APPROVED decision (gateway/api/review/review.go doIndividualReview): the review
        turns APPROVED only when the approved groups number **exactly** ``_approvals_needed`` (``==``): a
        caller in more of the review's groups than needed overshoots, and the review stays PENDING for good
        (every later approval only adds to the count). An APPROVED review stays APPROVED."""
        approved = sum(1 for g in review["groups"] if g["status"] == APPROVED)
        if review["status"] == PENDING and approved == self._approvals_needed(review):
            review["status"] = APPROVED

    def _sorted_sessions(self) -> list[dict[str, Any]]:
        return sorted(
            self._state["sessions"].values(),
            key=lambda s: (_parse_ts(s["start_date"]), s["seq"]),
            reverse=True,
        )

    def _end_sessions_past_deadline(self) -> None:
        """Sessions whose jit deadline passed read as ``done``, ended at the deadline (applied lazily, when
        sessions are read: the stand-in runs no timers). transport/plugins/review/review.go: the stream's
        context times out; transport/plugins/audit/wal.go then marks the row done."""
        now = self.now()
        changed = False
        for session in self._state["sessions"].values():
            deadline = _parse_ts(session.get("deadline"))
            if session["status"] == "open" and deadline is not None and deadline <= now:
                session["status"] = "done"
                session["end_date"] = _ts(deadline)
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
        revoke_at = _parse_ts(newest["revoke_at"]) if newest is not None else None
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
            session["deadline"] = _ts(deadline)
        return session

    def _reaches(self, user: dict[str, Any], conn: dict[str, Any]) -> bool:
        """The access-control gate (``models/connections.go`` ``getConnectionByNameOrID``): plugin off →
        everyone; admin or auditor → always; else a group in the connection's list or linked to it through
        an attribute (``access_control_groups_attributes`` ⋈ ``connections_attributes``)."""
        groups = set(user["groups"])
        if not self._state.get("access_control_enabled", True) or groups & {ADMIN_GROUP, AUDITOR_GROUP}:
            return True
        if groups & set(conn["access_groups"]):
            return True
        return any(
            conn["name"] in attribute["connection_names"]
            and groups & set(attribute["access_control_group_names"])
            for attribute in self._state.get("attributes", {}).values()
        )

    def _newest_jit_review(self, user_id: str, connection: str) -> dict[str, Any] | None:
        """``models.GetApprovedReviewJit``: the newest APPROVED jit review of (user, connection)."""
        grants = [
            r
            for r in self._state["reviews"].values()
            if r["type"] == "jit"
            and r["status"] == APPROVED
            and r["owner_id"] == user_id
            and r["connection"] == connection
        ]
        return max(grants, key=lambda r: (_parse_ts(r["created_at"]), r["seq"]), default=None)

    def _jit_rule_for(self, connection: str) -> dict[str, Any] | None:
        """``services.GetRuleForConnection`` for access type jit: a rule reached through one of the
        connection's attributes first, then one naming the connection; ``jit_command`` rules count too
        (``expandAccessTypes``)."""
        rules = [r for r in self._state["rules"].values() if r["access_type"] in ("jit", "jit_command")]
        attributes = [
            a for a in self._state.get("attributes", {}).values() if connection in a["connection_names"]
        ]
        for rule in rules:
            if any(
                rule["name"] in a["access_request_rule_names"] or a["name"] in rule["attributes"]
                for a in attributes
            ):
                return rule
        return next((r for r in rules if connection in r["connection_names"]), None)

    def _review_required(self, user: dict[str, Any], conn: dict[str, Any]) -> str | None:
        """Why a ``hoop connect`` without a valid jit review needs one, or None when it goes through."""
        groups = set(user["groups"])
        rule = self._jit_rule_for(conn["name"])
        if rule is not None:
            # accessrequest.go OnReceive: approval_required_groups narrow who is reviewed; skip_review_groups
            # apply only when no approval-required groups are set.
            required, skip = rule["approval_required_groups"], rule["skip_review_groups"]
            if required and groups & set(required):
                return f"access request rule {rule['name']}"
            if not required and not (skip and groups & set(skip)):
                return f"access request rule {rule['name']}"
        # transport/plugins/review/review.go runs next unless the interceptor took the packet: a connection
        # with the review plugin's groups reviews everyone.
        if conn["reviewers"]:
            return "the review plugin"
        return None

    # ------------------------------------------------------------------ internals: rendering

    def _render_review_body(self, review: dict[str, Any], *, forced_flags: bool = True) -> dict[str, Any]:
        """A review as hoop renders it (``toOpenApiReview`` / ``topOpenApiReview``). ``forced_flags=False``
        for ``GET /reviews`` and ``GET /reviews/{id}``: their query (``models/reviews.go``
        ``GetReviewByIdOrSid``, ``ListReviews``) does not select ``forced_review``, so every group reads
        false there; the ``PUT`` answer and the sessions (``models/session.go``) show it."""
        force_groups = review.get("force_approval_groups")
        body: dict[str, Any] = {
            "id": review["id"],
            "type": review["type"],
            "status": review["status"],
            "access_duration": review["access_duration_ns"],
            "access_request_rule_name": review["rule_name"],
            "created_at": review["created_at"],
            # hoop sends null when the review carries none (a Go nil slice: plugin and provisioned reviews);
            # the stand-in sends [] there so the spec's non-null array holds. Read null and [] alike.
            "force_approval_groups": list(force_groups or []),
            "min_approvals": review["min_approvals"] or 0,
            "review_groups_data": [
                {
                    "id": g["id"],
                    "group": g["group"],
                    "status": g["status"],
                    "forced_review": bool(g.get("forced_review")) and forced_flags,
                    "reviewed_by": g["reviewed_by"],
                    "review_date": g["review_date"],
                }
                for g in review["groups"]
            ],
            "revoke_at": review["revoke_at"],
        }
        if review["rejection_reason"]:
            body["rejection_reason"] = review["rejection_reason"]
        return body

    def _render_review(self, review: dict[str, Any], *, forced_flags: bool = True) -> dict[str, Any]:
        return {
            **self._render_review_body(review, forced_flags=forced_flags),
            "session": review["session_id"],
        }

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

    @staticmethod
    def _render_user(user: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": user["id"],
            "email": user["email"],
            "name": user["name"],
            "status": user["status"],
            "role": "admin" if "admin" in user["groups"] else "standard",
            "slack_id": user["slack_id"],
            "groups": list(user["groups"]),
        }

    @staticmethod
    def _render_connection(conn: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": conn["id"],
            "name": conn["name"],
            "type": conn["type"],
            "subtype": conn["subtype"],
            "agent_id": conn["agent_id"],
            "status": "online",
            "access_mode_connect": "enabled",
            "access_mode_exec": "enabled",
            "access_mode_runbooks": "enabled",
            "access_schema": "enabled",
            "reviewers": list(conn["reviewers"]),
            "connection_tags": dict(conn["tags"]),
            "redact_enabled": False,
            "attributes": [],
            "effective_features": None,  # the list endpoint never resolves it (spec prose)
            # api/connections/connections.go: ForceApproveGroups (hoop sends null when unset; [] here, as the
            # spec types it non-null)
            "force_approve_groups": list(conn.get("force_approve_groups") or []),
        }
        for name in ("access_max_duration", "min_review_approvals", "jit_access_duration_sec"):
            if conn[name] is not None:
                body[name] = conn[name]
        return body

    @staticmethod
    def _render_rule(rule: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in rule.items() if v is not None}

    # ------------------------------------------------------------------ internals: HTTP

    def _build_app(self) -> Starlette:
        Handler = Callable[..., tuple[int, Any]]

        def route(path: str, handler: Handler, methods: list[str], **opts: bool) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self._dispatch(request, handler, **opts)

            return Route(path, endpoint, methods=methods)

        return Starlette(
            routes=[
                route("/api/sessions/provision", self._h_provision, ["POST"], admin=True, api_key_only=True),
                route("/api/sessions", self._h_list_sessions, ["GET"]),
                route("/api/sessions/{session_id}", self._h_get_session, ["GET"]),
                route("/api/sessions/{session_id}/kill", self._h_kill, ["POST"]),
                route("/api/reviews", self._h_list_reviews, ["GET"]),
                route("/api/reviews/{review_id}", self._h_get_review, ["GET"]),
                route("/api/reviews/{review_id}", self._h_put_review, ["PUT"]),
                route("/api/connections", self._h_list_connections, ["GET"]),
                route("/api/connections/{name_or_id}", self._h_get_connection, ["GET"]),
                route("/api/attributes", self._h_list_attributes, ["GET"], admin=True),
                route("/api/plugins/{name}", self._h_get_plugin, ["GET"], admin=True),
                route("/api/users", self._h_list_users, ["GET"], admin=True),
                route("/api/users/groups", self._h_list_groups, ["GET"], admin=True),
                route("/api/users/{email_or_id}", self._h_get_user, ["GET"], admin=True),
                route("/api/users/{email_or_id}", self._h_put_user, ["PUT"], admin=True),
                route("/api/access-requests/rules", self._h_list_rules, ["GET"], admin=True),
                route("/api/_sandbox/connect", self._h_sandbox_connect, ["POST"], admin=True),
                route("/api/_sandbox/login", self._h_sandbox_login, ["POST"], admin=True),
                route("/api/_sandbox/reviews", self._h_sandbox_review, ["POST"], admin=True),
                # like gin without HandleMethodNotAllowed: anything else is a JSON 404
                route("/{path:path}", self._h_not_found, _ALL_METHODS),
            ]
        )

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if path.startswith(fault.prefix) and (fault.method is None or fault.method == method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _authenticate(self, request: Request) -> _Caller:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
            if token in self._api_keys:
                return self._api_keys[token]
            subject = self._state["tokens"].get(token)
            user = self._state["users"].get(subject) if subject else None
            if user is not None and user["status"] == "active":
                return _Caller(
                    kind="user",
                    id=user["id"],
                    name=user["name"],
                    email=user["email"],
                    groups=tuple(user["groups"]),
                    slack_id=user["slack_id"],
                )
        elif request.headers.get("api-key", "").strip() in self._api_keys:
            return self._api_keys[request.headers["api-key"].strip()]
        raise _HTTPError(401, "unauthorized")

    async def _dispatch(
        self,
        request: Request,
        handler: Callable[..., tuple[int, Any]],
        *,
        admin: bool = False,
        api_key_only: bool = False,
    ) -> Response:
        method, path = request.method, request.url.path
        query = dict(request.query_params)
        raw = await request.body()
        body: Any = None
        body_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = f"invalid json body: {exc}"
        headers: dict[str, str] = {}
        with self._lock:
            fault = self._take_fault(method, path)
            status: int
            payload: Any
            if fault is not None and not fault.after_write:
                status, payload = fault.status, {"message": "injected failure"}
            else:
                try:
                    caller = self._authenticate(request)
                    if api_key_only and caller.kind != "apikey":
                        raise _HTTPError(403, "this route accepts only API key authentication")
                    if admin and not caller.admin:
                        raise _HTTPError(403, "access denied")
                    if body_error is not None:
                        raise _HTTPError(422, body_error)
                    status, payload = handler(caller, dict(request.path_params), query, body)
                except _HTTPError as exc:
                    status, payload = exc.status, {"message": exc.message, **exc.extra}
                if fault is not None:
                    status, payload = fault.status, {"message": "injected failure"}
            if fault is not None:
                headers["X-Sandbox-Fault"] = "injected"
                if fault.retry_after is not None:
                    ra = fault.retry_after
                    headers["Retry-After"] = str(int(ra)) if isinstance(ra, int | float) else ra
            self.calls.append(Call(method, path, query, body, status, payload, fault is not None))
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(payload, status_code=status, headers=headers)

    # ------------------------------------------------------------------ handlers (run under the lock)

    def _h_not_found(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        raise _HTTPError(404, "404 page not found")

    @staticmethod
    def _need_object(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _HTTPError(422, "the request body must be a JSON object")
        return body

    @staticmethod
    def _need_str(body: dict[str, Any], key: str) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise _HTTPError(422, f"missing or invalid attribute {key!r}")
        return value

    def _h_provision(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        body = self._need_object(body)
        email = self._need_str(body, "user_email")
        connection = self._need_str(body, "connection")
        duration = body.get("access_duration_sec", 0)
        if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
            raise _HTTPError(422, "access_duration_sec must be a non-negative integer")
        approved_reviewers = body.get("approved_reviewers")
        if approved_reviewers is not None and (
            not isinstance(approved_reviewers, list)
            or not all(isinstance(g, str) for g in approved_reviewers)
        ):
            raise _HTTPError(422, "approved_reviewers must be a list of group names")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _HTTPError(422, "metadata must be an object")
        correlation_id = body.get("correlation_id")
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise _HTTPError(422, "correlation_id must be a string")
        # api/session/session.go Provision: an unknown user is a 400 whose message names the *caller*
        # (``ctx.UserEmail``, a bug in hoop kept here so clients never rely on the text); a connection the
        # key cannot see (models.GetConnectionByNameOrID) is a 400 too.
        user = self._find_user(email)
        if user is None:
            raise _HTTPError(400, f"user {caller.email or caller.name} not found for exec")
        conn = self._state["connections"].get(connection)
        if conn is None or not self._reaches({"groups": list(caller.groups)}, conn):
            raise _HTTPError(400, f"connection {connection} not found")
        if duration == 0:
            duration = conn["jit_access_duration_sec"] or DEFAULT_ACCESS_DURATION_SEC
        session = self._new_session(user, conn, verb="connect", status="ready")
        session["correlation_id"] = correlation_id or None
        session["metadata"] = metadata
        if duration > MAX_ACCESS_DURATION_SEC:
            # hoop writes the session before it validates the review: the caller gets a 500 and an orphan
            self._save()
            raise _HTTPError(500, "failed creating review: access duration exceeds the maximum of 48h")
        # session.go createApprovedReview: the review's groups are the connection's reviewers, or "admin"
        # (approved at once) when it has none; approved_reviewers null approves every group.
        groups = list(conn["reviewers"]) or [ADMIN_GROUP]
        if not conn["reviewers"]:
            approved_reviewers = [ADMIN_GROUP]
        review = self._new_review(
            session,
            type="jit",
            groups=groups,
            min_approvals=conn["min_review_approvals"],
            duration_sec=duration,
            approved_by=caller,
            approved_groups=None if approved_reviewers is None else set(approved_reviewers),
        )
        self._save()
        return 202, {
            "session_id": session["id"],
            "user_email": email,
            "has_review": review["status"] == PENDING,
        }

    @staticmethod
    def _int_param(query: dict[str, str], name: str, default: int) -> int:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise _HTTPError(422, f"{name} must be an integer") from None

    @staticmethod
    def _date_param(query: dict[str, str], name: str) -> datetime | None:
        raw = query.get(name)
        if not raw:
            return None
        try:
            return _parse_ts(raw)
        except ValueError:
            raise _HTTPError(422, f"{name} must be an RFC 3339 date") from None

    def _visible(self, caller: _Caller, session: dict[str, Any]) -> bool:
        return caller.admin or session["user_id"] == caller.id

    def _h_list_sessions(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        limit = self._int_param(query, "limit", MAX_LIMIT)
        offset = self._int_param(query, "offset", 0)
        if not 0 < limit <= MAX_LIMIT:
            raise _HTTPError(422, f"limit must be between 1 and {MAX_LIMIT}")
        if not 0 <= offset <= MAX_OFFSET:
            raise _HTTPError(422, f"offset must be between 0 and {MAX_OFFSET}")
        count = query.get("count", "capped")
        if count not in ("capped", "exact", "none"):
            raise _HTTPError(422, "count must be one of capped, exact, none")
        start, end = self._date_param(query, "start_date"), self._date_param(query, "end_date")
        reviews = self._state["reviews"]
        self._end_sessions_past_deadline()

        def keep(s: dict[str, Any]) -> bool:
            review = reviews.get(s["review_id"]) if s["review_id"] else None
            started = _parse_ts(s["start_date"])
            assert started is not None
            return (
                self._visible(caller, s)
                # models/session.go sessionListUserCondition / sessionListConnectionCondition: ``user`` (a
                # subject id) and ``connection`` are SQL LIKE patterns, so "pg_prod" also lists "pg-prod".
                and ("user" not in query or _sql_like(s["user_id"], query["user"]))
                and ("connection" not in query or _sql_like(s["connection"], query["connection"]))
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

        rows = [s for s in self._sorted_sessions() if keep(s)]
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

    def _session_for(self, caller: _Caller, session_id: str) -> dict[str, Any]:
        self._end_sessions_past_deadline()
        session = self._state["sessions"].get(session_id)
        if session is None:
            raise _HTTPError(404, "session not found")
        if not self._visible(caller, session):
            raise _HTTPError(403, "access denied")
        return session

    def _h_get_session(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        return 200, self._render_session(self._session_for(caller, params["session_id"]))

    def _h_kill(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # gateway/api/session/session.go Kill: an unknown session, or another person's for a non-admin, is
        # 404 "session not found"; anything else is handed to transport/system/session.go KillSession, which
        # answers 204 whether or not it found the session's stream in this gateway process.
        self._end_sessions_past_deadline()
        session = self._state["sessions"].get(params["session_id"])
        if session is None or not (caller.admin or session["user_id"] == caller.id):
            raise _HTTPError(404, "session not found")
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
        session["status"] = "done"
        session["end_date"] = _ts(self.now())
        session["killed"] = True
        self._save()
        return 204, None

    def _review_for(self, id_or_session: str) -> dict[str, Any]:
        """models/reviews.go GetReviewByIdOrSid: by review id or by its session's id. Unknown: a 404
        ``resource not found`` here; ``_h_put_review`` turns it into hoop's unmapped 500."""
        reviews = self._state["reviews"]
        review = reviews.get(id_or_session)
        if review is None:
            review = next((r for r in reviews.values() if r["session_id"] == id_or_session), None)
        if review is None:
            raise _HTTPError(404, "resource not found")
        return review

    @staticmethod
    def _may_see_review(caller: _Caller, review: dict[str, Any]) -> bool:
        return (
            caller.admin
            or review["owner_id"] == caller.id
            or bool(set(caller.groups) & {g["group"] for g in review["groups"]})
        )

    def _h_list_reviews(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        reviews = sorted(self._state["reviews"].values(), key=lambda r: r["seq"], reverse=True)
        return 200, [
            self._render_review(r, forced_flags=False) for r in reviews if self._may_see_review(caller, r)
        ]

    def _h_get_review(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # gateway/api/review/review.go GetByIdOrSid: any signed-in role may read any review of the org (no
        # ownership or group check); unknown → 404 {"message": "resource not found"} (models.ErrNotFound).
        return 200, self._render_review(self._review_for(params["review_id"]), forced_flags=False)

    def _h_put_review(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        """gateway/api/review/review.go ReviewByIdOrSid → DoReview → doReview, rule by rule (see the module
        docstring). ``time_window`` is not modelled (ignored)."""
        # ReviewByIdOrSid: gin's ShouldBindJSON into openapi.ReviewRequest; a bad body is a 400.
        if not isinstance(body, dict):
            raise _HTTPError(
                400, "json: cannot unmarshal the body into Go value of type openapi.ReviewRequest"
            )
        if not body.get("status"):
            raise _HTTPError(
                400,
                "Key: 'ReviewRequest.Status' Error:Field validation for 'Status' failed on the "
                "'required' tag",
            )
        for key, kind in (("status", str), ("rejection_reason", str), ("force_review", bool)):
            if body.get(key) is not None and not isinstance(body[key], kind):
                raise _HTTPError(
                    400, f"json: cannot unmarshal {key} into Go struct field ReviewRequest.{key}"
                )
        status = str(body["status"]).upper()  # ReviewByIdOrSid upper-cases the status
        reason = body.get("rejection_reason") or ""
        force = bool(body.get("force_review"))

        def unmapped(message: str) -> _HTTPError:
            # ReviewByIdOrSid maps only ErrNotEligible, ErrSelfApproval, ErrWrongState (400) and ErrForbidden
            # (403); any other error, ErrNotFound included, is AbortWithErr 500 with this message.
            return _HTTPError(500, f"failed updating review status: {message}")

        # DoReview: GetReviewByIdOrSid → models.ErrNotFound becomes ErrNotFound, which is not mapped: 500.
        try:
            review = self._review_for(params["review_id"])
        except _HTTPError:
            raise unmapped("review not found") from None
        conn = self._state["connections"].get(review["connection"])
        if conn is None:
            raise unmapped("failed fetching connection for review, err=<nil>")
        # validateReviewStatusTransition
        if status not in (APPROVED, REJECTED, REVOKED):
            raise unmapped("unknown status")
        if review["status"] not in (PENDING, APPROVED):
            raise _HTTPError(400, "review is in wrong state")
        is_owner = caller.id == review["owner_id"]
        if status == APPROVED and is_owner and not caller.admin:
            raise _HTTPError(400, "unable to self approve review")
        if status == REVOKED:
            if review["status"] != APPROVED:
                raise _HTTPError(400, "review is in wrong state")
            if review["type"] != "jit":
                raise unmapped("review not found")  # ErrNotFound again: unmapped
        now = self.now()
        decided = {"status": status, "reviewed_by": caller.owner(), "review_date": _ts(now)}
        # GetReviewByIdOrSid does not select forced_review and UpdateReview saves every group back: any
        # decision clears the flags an earlier forced decision left.
        for entry in review["groups"]:
            entry["forced_review"] = False
        if force:
            self._forced_review(caller, review, conn, decided)
        else:
            self._individual_review(caller, review, decided)
        if review["status"] == REJECTED and reason:
            review["rejection_reason"] = reason
        if review["status"] == APPROVED:
            # doReview: every time the review ends up APPROVED — re-approving an APPROVED review included —
            # revoke_at = now + the full access duration (onetime: now + 0). REVOKED leaves it as it was.
            review["revoke_at"] = _ts(now + timedelta(microseconds=review["access_duration_ns"] // 1000))
        # models/reviews.go UpdateReview: the review's session becomes ready (APPROVED) or done (REJECTED,
        # REVOKED), the status column only.
        session = self._state["sessions"].get(review["session_id"])
        if session is not None:
            if review["status"] == APPROVED:
                session["status"] = "ready"
            elif review["status"] in (REJECTED, REVOKED):
                session["status"] = "done"
        self._save()
        return 200, self._render_review(review)

    def _forced_review(
        self, caller: _Caller, review: dict[str, Any], conn: dict[str, Any], decided: dict[str, Any]
    ) -> None:
        """review.go doForcedReview: the review's force-approval groups when an access-request rule made it
        (and it carries some, even an empty list), else the connection's ``force_approve_groups``. The first
        group shared with the caller (searched in the shorter list, utils.SlicesFindFirstIntersection) is
        marked — appended if the review lacks it — with ``forced_review: true``, and the review takes the
        decided status in this one call, whatever the other groups say. No shared group: 400."""
        if review["rule_name"] is not None and review.get("force_approval_groups") is not None:
            force_groups = list(review["force_approval_groups"])
        else:
            force_groups = list(conn.get("force_approve_groups") or [])
        mine = list(caller.groups)
        shorter, longer = (mine, force_groups) if len(mine) <= len(force_groups) else (force_groups, mine)
        found = next((g for g in shorter if g in longer), None)
        if found is None:
            raise _HTTPError(400, "not eligible for review")
        entry = next((g for g in review["groups"] if g["group"] == found), None)
        if entry is None:
            review["groups"].append(self._review_group(found, **decided, forced_review=True))
        else:
            entry.update(decided, forced_review=True)
        review["status"] = decided["status"]

    def _individual_review(self, caller: _Caller, review: dict[str, Any], decided: dict[str, Any]) -> None:
        """review.go doIndividualReview: every review group the caller belongs to is marked at once. A caller
        in none of them: 400 unless owner or admin, who may only deny (REJECTED/REVOKED, recorded under a
        group of theirs: ``admin``, else their first group); their APPROVED marks nothing. REJECTED/REVOKED
        decide at once; APPROVED settles by count (``_settle_approval``)."""
        status = decided["status"]
        eligible = [g for g in review["groups"] if g["group"] in caller.groups]
        for entry in eligible:
            entry.update(decided)
        if not eligible:
            if not (caller.id == review["owner_id"] or caller.admin):
                raise _HTTPError(400, "not eligible for review")
            if status in (REJECTED, REVOKED):
                group = "admin" if caller.admin else (caller.groups[0] if caller.groups else "")
                review["groups"].append(self._review_group(group, **decided))
        if status == APPROVED:
            self._settle_approval(review)
        else:
            review["status"] = status

    def _h_list_connections(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        conns = sorted(self._state["connections"].values(), key=lambda c: c["name"])
        for key in ("type", "subtype"):
            if query.get(key):
                conns = [c for c in conns if c[key] == query[key]]
        if query.get("search"):
            needle = query["search"].lower()
            conns = [c for c in conns if any(needle in c[k].lower() for k in ("name", "type", "subtype"))]
        if query.get("tag_selector"):
            for clause in query["tag_selector"].split(","):
                negate = "!=" in clause
                key, _, value = clause.partition("!=" if negate else "=")
                conns = [c for c in conns if (c["tags"].get(key.strip()) == value.strip()) != negate]
        rendered = [self._render_connection(c) for c in conns]
        if "page" not in query and "page_size" not in query:
            return 200, rendered
        page = self._int_param(query, "page", 1)
        size = self._int_param(query, "page_size", MAX_LIMIT)
        if page < 1 or not 1 <= size <= MAX_LIMIT:
            raise _HTTPError(422, f"page must be >= 1 and page_size between 1 and {MAX_LIMIT}")
        data = rendered[(page - 1) * size : page * size]
        return 200, {"pages": {"page": page, "size": size, "total": len(rendered)}, "data": data}

    def _h_get_connection(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        # api/connections GetConnection → models.GetConnectionByNameOrID: a connection outside the caller's
        # access control is "not found", exactly like one that does not exist.
        key = params["name_or_id"]
        conn = self._state["connections"].get(key) or next(
            (c for c in self._state["connections"].values() if c["id"] == key), None
        )
        caller_user = {"groups": list(caller.groups)}
        if conn is None or not self._reaches(caller_user, conn):
            raise _HTTPError(
                404, "not found"
            )  # api/connections/connections.go Get answers a bare "not found"
        return 200, self._render_connection(conn)

    def _h_list_attributes(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        # api/attributes/attributes.go List: paginated {pages, data}; page_size 1-100
        page = self._int_param(query, "page", 1)
        size = self._int_param(query, "page_size", 50)
        if page < 1 or not 1 <= size <= MAX_LIMIT:
            raise _HTTPError(422, f"page must be >= 1 and page_size between 1 and {MAX_LIMIT}")
        attributes = sorted(self._state["attributes"].values(), key=lambda a: a["name"])
        if query.get("search"):
            attributes = [a for a in attributes if query["search"].lower() in a["name"].lower()]
        data = [
            {
                k: a[k]
                for k in (
                    "id",
                    "name",
                    "description",
                    "connection_names",
                    "access_control_group_names",
                    "access_request_rule_names",
                    "created_at",
                )
            }
            | {"datamasking_rule_names": [], "guardrail_rule_names": []}
            for a in attributes[(page - 1) * size : page * size]
        ]
        return 200, {"pages": {"page": page, "size": size, "total": len(attributes)}, "data": data}

    def _h_get_plugin(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # api/plugins/plugin.go Get: a plugin the organisation has not enabled answers 404 "plugin not found"
        if params["name"] != "access_control" or not self._state["access_control_enabled"]:
            raise _HTTPError(404, "plugin not found")
        conns = sorted(self._state["connections"].values(), key=lambda c: c["name"])
        return 200, {
            "id": str(uuid.uuid5(_ID_NAMESPACE, "plugin:access_control")),
            "name": "access_control",
            "priority": 0,
            "connections": [
                {"id": c["id"], "name": c["name"], "config": list(c["access_groups"])}
                for c in conns
                if c["access_groups"]
            ],
        }

    def _h_list_users(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        users = sorted(self._state["users"].values(), key=lambda u: u["email"])
        return 200, [self._render_user(u) for u in users]

    def _h_list_groups(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        return 200, sorted({g for u in self._state["users"].values() for g in u["groups"]})

    def _h_get_user(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        user = self._find_user(params["email_or_id"])
        if user is None:  # gateway/api/user/user.go GetUserByEmailOrID
            raise _HTTPError(404, f"user {params['email_or_id']} not found")
        return 200, self._render_user(user)

    def _h_put_user(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # gateway/api/user/user.go Update: the user is looked up by email (a valid address) or subject.
        user = self._find_user(params["email_or_id"])
        if user is None:
            raise _HTTPError(404, f"user {params['email_or_id']} not found")
        # user.go Update binds openapi.User: a missing email (binding:"required") or a wrongly typed field
        # is a 400 from gin's ShouldBindJSON.
        if not isinstance(body, dict):
            raise _HTTPError(400, "invalid request body")
        self._bind_user_field(body, "email", required=True)
        for key in ("name", "status", "slack_id"):
            self._bind_user_field(body, key)
        groups = body.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise _HTTPError(400, "json: cannot unmarshal groups into Go struct field User.groups")
        # user.go Update: status is stored as sent; the `default:"active"` tag is documentation only, so an
        # omitted or unknown status reaches Postgres' enum_user_status and fails (migrations/000001_init,
        # 000023 add 'invited') with a 500 after nothing was written.
        status = body.get("status") or ""
        if status not in ("active", "reviewing", "inactive", "invited"):
            raise _HTTPError(500, "failed updating user and user groups")
        groups = list(groups)
        if caller.kind == "user" and caller.id == user["id"]:
            # user.go Update: nobody removes admin from themselves or deactivates themselves.
            if "admin" not in groups:
                groups.append("admin")
            if status != "active":
                raise _HTTPError(422, "cannot deactivate yourself")
        # user.go Update: a full replace of name, status, slack_id and the group list (groups are deleted
        # and inserted again: models/users.go UpdateUserAndUserGroups); whatever the body leaves out is
        # cleared. The email is never changed by PUT (existingUser.Email is kept); the role is derived
        # from the groups (toRole: admin when "admin" is among them).
        user.update(
            name=body.get("name") or "",
            slack_id=body.get("slack_id") or "",
            status=status,
            groups=sorted(set(groups)),
        )
        self._save()
        return 200, self._render_user(user)

    @staticmethod
    def _bind_user_field(body: dict[str, Any], key: str, *, required: bool = False) -> None:
        value = body.get(key)
        if value is None and not required:
            return
        if required and value in (None, ""):
            field = key.capitalize()
            raise _HTTPError(
                400, f"Key: 'User.{field}' Error:Field validation for '{field}' failed on the 'required' tag"
            )
        if not isinstance(value, str):
            raise _HTTPError(400, f"json: cannot unmarshal {key} into Go struct field User.{key}")

    def _h_list_rules(self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        rules = [self._render_rule(r) for r in sorted(self._state["rules"].values(), key=lambda r: r["name"])]
        page = self._int_param(query, "page", 1)
        size = self._int_param(query, "page_size", 0)
        if page < 1 or size < 0:
            raise _HTTPError(400, "invalid pagination parameters")
        data = rules if size == 0 else rules[(page - 1) * size : page * size]
        return 200, {"pages": {"page": page, "size": size, "total": len(rules)}, "data": data}

    def _h_sandbox_connect(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        body = self._need_object(body)
        email = self._need_str(body, "user_email")
        connection = self._need_str(body, "connection")
        try:
            session = self._connect_locked(email, connection)
        except HoopAccessDenied as exc:
            raise _HTTPError(403, str(exc)) from None
        self._save()
        return 201, {"session_id": session["id"]}

    def _h_sandbox_login(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        """Stand-in only: the person signs in to hoop with the IdP's ``idp_groups`` claim (``sign_in``)."""
        body = self._need_object(body)
        email = self._need_str(body, "user_email")
        idp_groups = body.get("idp_groups")
        if idp_groups is not None and (
            not isinstance(idp_groups, list) or not all(isinstance(g, str) for g in idp_groups)
        ):
            raise _HTTPError(422, "idp_groups must be a list of group names")
        try:
            self.sign_in(email, idp_groups=idp_groups)
        except HoopAccessDenied as exc:
            raise _HTTPError(403, str(exc)) from None
        return 200, self._render_user(self._require_user(email))

    def _h_sandbox_review(
        self, caller: _Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        body = self._need_object(body)
        email = self._need_str(body, "user_email")
        connection = self._need_str(body, "connection")
        kind = body.get("type", "jit")
        if kind not in ("jit", "onetime"):
            raise _HTTPError(422, f"type must be jit or onetime, not {kind!r}")
        command = body.get("command")
        if command is not None and (not isinstance(command, str) or not command.strip()):
            raise _HTTPError(422, "command must be a non-empty string")
        if kind == "onetime" and command is None:
            raise _HTTPError(422, "a onetime review needs the command to run")
        duration = body.get("duration_sec", DEFAULT_ACCESS_DURATION_SEC)
        if kind == "jit" and (
            isinstance(duration, bool)
            or not isinstance(duration, int)
            or not 0 < duration <= MAX_ACCESS_DURATION_SEC
        ):
            raise _HTTPError(
                422, f"duration_sec must be a whole number of seconds from 1 to {MAX_ACCESS_DURATION_SEC}"
            )
        if self._find_user(email) is None:
            raise _HTTPError(400, f"user not found: {email} has never signed in to hoop")
        if connection not in self._state["connections"]:
            raise _HTTPError(404, f"connection not found: {connection}")
        pending = self.create_pending_review(
            email, connection, type=kind, duration_sec=duration if kind == "jit" else 0, command=command
        )
        return 201, {
            "review_id": pending.review_id,
            "session_id": pending.session_id,
            "type": kind,
            "status": PENDING,
        }
