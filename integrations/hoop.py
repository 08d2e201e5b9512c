"""``HoopGateway``: the ``Gateway`` protocol over hoop.dev's HTTP API (``<hoop>/api``), on ``httpx``.

A JIT grant in hoop is an APPROVED review of type ``jit`` tied to (user, connection); the gateway lets a
session open while the newest such review has ``revoke_at > now``. grantflow writes one with
``POST /sessions/provision`` and ends it with ``PUT /reviews/{id} {"status": "REVOKED"}`` (which blocks new
sessions only, so callers also kill open sessions with ``POST /sessions/{id}/kill``).

Invariants this module keeps:

- **Provisioning is idempotent by correlation id.** hoop never deduplicates: every provision creates a new
  session and review, and ``correlation_id`` is only a filter. So ``provision_grant`` first looks for
  ``GET /sessions?correlation_id=…`` and returns an APPROVED grant it finds; only then does it provision.
  After an uncertain failure (a 5xx after the write, a dropped reply) the next attempt finds the first
  grant instead of making a second one.
- **Never more than 48 h**: hoop checks the cap only *after* writing the session, answering 500 and leaving
  an orphan, so a longer duration raises ``ValueError`` before any call. Longer grants are renewed by
  provisioning again before the previous one ends.
- **hoop's clock decides**: ``revoke_at`` and ``review_id`` are read back from the gateway
  (``GET /sessions/{id}``), never computed here.
- Revoking an already REVOKED review and deciding a review that already has the wanted outcome count as
  success (hoop answers 400 for them; the state is read back). Killing a session answers 204 whether or
  not anything was live in that gateway process, so only reading the session back tells it ended.
- **Reviews that start in hoop** (a person ran ``hoop connect``/``exec`` and left a review PENDING):
  ``list_pending_reviews`` reads ``GET /sessions?review.status=PENDING`` (paged; ``GET /reviews`` is not) and
  takes who asked and the connection from the session, since the Review object has neither; a ``onetime``
  review's command is the session's ``script.data``, which only ``GET /sessions/{id}`` shows
  (``session_command``; the list blanks it). ``get_review`` reads one back, ``decide_review`` approves
  (``force_review``, never an APPROVED review again) or rejects it; a 5xx on a review is unknown until a
  read says otherwise.
- ``list_sessions`` pages through everything (``limit`` 100; hoop refuses ``offset`` > 10000, so a larger
  result raises instead of silently truncating) and filters ``status`` itself: hoop's list has no status
  filter. hoop's ``user``/``connection`` filters are SQL ``LIKE`` patterns, so rows are filtered again
  exactly (subject, email, connection name) before anyone acts on them.
- A session opened under a jit grant is **not linked** to the grant's review (``review: null``): the
  sessions a grant enabled are found by person, connection and time (``since``), not by review id.

Errors (``integrations.gateway``): 429, 5xx, 408, timeouts and dropped connections →
``GatewayTransientError`` (``retry_after`` from ``Retry-After``, seconds or HTTP-date); 400 →
``GatewayRefusedError`` with a message a person can act on; 401/403 → ``GatewayAuthError``; 404 →
``GatewayNotFoundError``; other 4xx → ``GatewayPermanentError``.

Where the running gateway differs from its OpenAPI spec (``../shared/specs/hoop-openapiv3.json``), this
client follows the gateway; ``tests/test_hoop_contract.py`` keeps the list (``KNOWN_DIFFERENCES``):

- ``POST /sessions/provision`` answers **202**, not 200 (both accepted here).
- ``approved_reviewers`` may be null/omitted (auto-approves every group); the spec types it as an array.
  This client omits it.
- API-key auth (``Authorization: Bearer <key>`` or ``Api-Key``) is absent from the spec's security schemes;
  it is the only auth ``/sessions/provision`` accepts.
- ``PUT /reviews`` approves once the approved groups number exactly ``min(len(groups), min_approvals)`` (the
  code), not "once all groups are APPROVED" (the prose); an unknown review is a 500, not a 404. grantflow
  approves with ``force_review`` (one call, by a force-approval group), so the count does not apply to it.
- ``GET /connections`` with ``page``/``page_size`` answers ``{pages, data}``; the spec declares a bare array.
- Fields the spec types as non-null arrive as ``null``: a session's ``end_date`` (running) and ``review``
  (none), a review's ``revoke_at`` (not approved) and ``access_request_rule_name``, a review group's
  ``reviewed_by``/``review_date`` (pending) and a listed connection's ``effective_features``; review groups
  report ``PENDING``, which their declared enum lacks. The spec describes ``revoke_at`` as "the time when
  this review was revoked"; it is the end of a jit grant's access.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from domain.access import ConnectionAccessRules, ReviewRule
from integrations.gateway import (
    GatewayAuthError,
    GatewayConnection,
    GatewayError,
    GatewayNotFoundError,
    GatewayPermanentError,
    GatewayRefusedError,
    GatewaySession,
    GatewayTransientError,
    GatewayUser,
    ProvisionedGrant,
)
from integrations.retry_after import parse_retry_after

MAX_GRANT_SECONDS = 48 * 3600
PAGE_SIZE = 100  # hoop's maximum ``limit``
MAX_OFFSET = 10_000  # hoop refuses larger offsets
DEFAULT_TIMEOUT = 10.0
_JIT_ACCESS_TYPES = ("jit", "jit_command")  # models/access_request_rules.go expandAccessTypes
_ENDED = ("REVOKED", "REJECTED")  # review statuses under which a jit review grants nothing


def _parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from hoop; null, empty and Go's zero time mean "none"."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    text = response.text.strip()
    return text[:300] if text else response.reason_phrase


class HoopReview(BaseModel):
    """A review as hoop holds it (``GET /reviews/{id}``). ``access_duration`` is converted from hoop's
    nanoseconds; ``revoke_at`` is set once a ``jit`` review is approved."""

    id: str
    type: str  # jit | onetime
    status: str  # PENDING | APPROVED | REJECTED | REVOKED
    session_id: str = ""
    access_duration: timedelta = timedelta(0)
    revoke_at: datetime | None = None
    rejection_reason: str | None = None
    groups: list[str] = []
    force_approval_groups: list[str] = []
    """Who may decide it in one call with ``force_review``: copied from the access-request rule that made
    it (empty for a review plugin's review, whose connection's ``force_approve_groups`` count instead)."""


class HoopPendingReview(BaseModel):
    """A review pending in hoop, with what the Review object lacks read from its session: who asked,
    for which connection, and (``onetime``) the command awaiting approval."""

    review_id: str
    type: str  # jit | onetime
    session_id: str
    user_email: str
    user_subject: str
    connection: str
    access_duration: timedelta = timedelta(0)
    """How long a ``jit`` review grants once approved (zero for ``onetime``)."""
    command: str | None = None
    """The session's ``script`` for ``onetime``: the command the person wants to run."""
    groups: list[str] = []
    created_at: datetime | None = None


class HoopGateway:
    """The ``Gateway`` protocol against hoop. Create one per worker, close it with ``aclose``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        auth_header: Literal["bearer", "api-key"] = "bearer",
    ) -> None:
        """``base_url``: hoop's URL, with or without the ``/api`` suffix. ``auth_header``: ``bearer`` for a
        named API key (``Authorization: Bearer hpk_…``), ``api-key`` for the legacy org key header."""
        root = base_url.rstrip("/")
        if not root.endswith("/api"):
            root += "/api"
        headers = {"Accept": "application/json", "User-Agent": "grantflow"}
        if auth_header == "bearer":
            headers["Authorization"] = f"Bearer {api_key}"
        else:
            headers["Api-Key"] = api_key
        self._client = httpx.AsyncClient(
            base_url=root, headers=headers, timeout=timeout, transport=transport, follow_redirects=False
        )

    async def __aenter__(self) -> HoopGateway:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ grants

    async def provision_grant(
        self, *, user_email: str, connection: str, duration_seconds: int, correlation_id: str
    ) -> ProvisionedGrant:
        """Grant ``user_email`` jit access to ``connection`` for ``duration_seconds`` (≤ 48 h), or return the
        APPROVED grant already made under ``correlation_id`` (hoop leaves expired grants APPROVED: such a
        grant's ``revoke_at`` is in the past). A REVOKED one is not reused: a new grant is made."""
        if duration_seconds <= 0:
            raise ValueError(f"a grant needs a positive duration, not {duration_seconds}s")
        if duration_seconds > MAX_GRANT_SECONDS:
            raise ValueError(
                f"hoop grants at most 48 h ({MAX_GRANT_SECONDS}s), asked for {duration_seconds}s: "
                "provision up to 48 h and renew before it ends"
            )
        if not correlation_id:
            raise ValueError("a correlation id is needed to provision idempotently")
        for grant in await self.find_grants(correlation_id=correlation_id):
            if (
                grant.status == "APPROVED"
                and grant.user_email == user_email
                and grant.connection == connection
            ):
                return grant
        body = {
            "user_email": user_email,
            "connection": connection,
            "access_duration_sec": duration_seconds,
            "correlation_id": correlation_id,
            "metadata": {"grantflow_correlation_id": correlation_id},
        }
        try:
            response = await self._request("POST", "/sessions/provision", json=body, ok=(200, 202))
        except GatewayRefusedError as exc:
            raise await self._explain_provision_refusal(exc, user_email, connection) from exc
        except GatewayNotFoundError as exc:
            raise GatewayNotFoundError(
                f"hoop cannot grant access to {connection}: {exc.message}", status=exc.status
            ) from exc
        session_id = self._json(response).get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise GatewayTransientError("hoop accepted the provision but returned no session_id")
        session = await self._get_session(session_id)
        created = self._grant_from_session(session)
        if created is None:
            raise GatewayPermanentError(f"hoop created session {session_id} without a jit review")
        return created

    async def find_grants(self, *, correlation_id: str) -> list[ProvisionedGrant]:
        """Every jit grant provisioned under ``correlation_id``, newest first (any review status)."""
        rows = await self._session_rows({"correlation_id": correlation_id})
        return [g for row in rows if (g := self._grant_from_session(row)) is not None]

    async def revoke_grant(self, review_id: str) -> ProvisionedGrant:
        """End a jit grant now (new sessions are refused; open ones must be killed separately). Revoking an
        already revoked grant succeeds, and so does revoking one rejected in hoop meanwhile (a rejected
        review grants nothing). Returns the grant as read back. hoop answers 500 for an unknown review
        (``api/review/review.go`` does not map its not-found error): a 5xx is unknown until the review is
        read back, so an unknown id ends as ``GatewayNotFoundError`` and a real outage stays transient."""
        try:
            review = self._json(
                await self._request("PUT", f"/reviews/{_seg(review_id)}", json={"status": "REVOKED"})
            )
        except GatewayTransientError:
            review = await self._get_review(review_id)  # 404 → GatewayNotFoundError
            if review.get("status") not in _ENDED:
                raise
        except GatewayRefusedError as exc:
            review = await self._get_review(review_id)
            if review.get("status") not in _ENDED:
                raise GatewayRefusedError(
                    f"hoop will not revoke review {review_id}: it is {review.get('status')} ({exc.message})",
                    status=exc.status,
                ) from exc
        session = await self._get_session(str(review.get("session", "")))
        grant = self._grant_from_session(session)
        if grant is None or grant.review_id != review_id:
            raise GatewayPermanentError(f"hoop review {review_id} is not the jit grant of its session")
        if grant.status not in _ENDED:
            raise GatewayTransientError(
                f"hoop still reports review {review_id} as {grant.status} after revoking"
            )
        return grant

    async def decide_review(self, review_id: str, *, approve: bool, reason: str = "") -> None:
        """Approve or reject a review hoop holds, as grantflow's API key, the way hoop counts
        (``api/review/review.go``); read the outcome back with ``get_review``.

        - The review is read first. One already APPROVED is never approved again: hoop would reset its
          ``revoke_at`` to now + the full duration. Asking for an outcome already reached succeeds; anything
          else hoop would refuse (approving a REJECTED, REVOKED or rejected-and-approved review) is a
          ``GatewayRefusedError`` without a write.
        - Approving sends ``force_review: true``: the key decides in one call as a member of the review's
          force-approval groups (the access-request rule's, else the connection's). grantflow has already run
          the policy; without force hoop counts the groups the key belongs to and approves only when that
          count *equals* the number needed, so a key in too many groups would leave the review PENDING for
          good. Rejecting needs no force: hoop lets an admin deny any review.
        - A 5xx (hoop answers 500 for an unknown review too) is unknown until a read says otherwise: the
          review is read back; the outcome reached is success, a 404 is ``GatewayNotFoundError``, else the
          transient error is raised and a retry reads first again (so no second approval)."""
        wanted = "APPROVED" if approve else "REJECTED"
        current = (await self._get_review(review_id)).get("status")
        if current == wanted:
            return
        if current != "PENDING" and (approve or current != "APPROVED"):
            raise GatewayRefusedError(
                f"hoop review {review_id} is {current} and can no longer be {wanted.lower()}", status=400
            )
        body: dict[str, Any] = {"status": wanted}
        if approve:
            body["force_review"] = True
        elif reason:
            body["rejection_reason"] = reason
        try:
            await self._request("PUT", f"/reviews/{_seg(review_id)}", json=body)
        except GatewayTransientError:
            if (await self._get_review(review_id)).get("status") == wanted:  # 404 → GatewayNotFoundError
                return
            raise
        except GatewayRefusedError as exc:
            current = (await self._get_review(review_id)).get("status")
            if current == wanted:
                return
            if approve and exc.message == "not eligible for review":
                raise GatewayRefusedError(
                    f"hoop will not let grantflow's API key force-approve review {review_id}: the key must "
                    "be in the review's force-approval groups (the access-request rule's "
                    "force_approval_groups, else the connection's force_approve_groups)",
                    status=exc.status,
                ) from exc
            raise GatewayRefusedError(
                f"hoop review {review_id} is {current} and can no longer be {wanted.lower()} ({exc.message})",
                status=exc.status,
            ) from exc
        except GatewayAuthError as exc:
            raise GatewayAuthError(
                f"grantflow's hoop API key may not decide review {review_id}: {exc.message}. Give the key "
                "admin and the force-approval groups of the connections and rules grantflow decides for.",
                status=exc.status,
            ) from exc

    async def get_review(self, review_id: str) -> HoopReview:
        """A review as hoop holds it now."""
        return self._review(await self._get_review(review_id))

    async def list_pending_reviews(self) -> list[HoopPendingReview]:
        """Every review PENDING in hoop, oldest first, one row per review
        (``GET /sessions?review.status=PENDING``, paged; ``GET /reviews`` is unpaginated). The list carries
        no ``onetime`` command (``api/session/parser.go`` blanks the script): ``command`` is None here; read
        it with ``session_command`` for the reviews you act on."""
        found: dict[str, HoopPendingReview] = {}
        for row in await self._session_rows({"review.status": "PENDING"}):
            review = row.get("review")
            if not isinstance(review, dict) or not review.get("id") or review.get("status") != "PENDING":
                continue
            found.setdefault(str(review["id"]), self._pending_review(row, review))
        return list(reversed(found.values()))

    async def session_command(self, session_id: str) -> str | None:
        """The input of a session — a ``onetime`` review's command — from ``GET /sessions/{id}``, the only
        place hoop shows it (``script.data``; empty means none)."""
        script = (await self._get_session(session_id)).get("script")
        command = script.get("data") if isinstance(script, dict) else script
        return str(command) if command else None

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
        sessions = [self._session(row) for row in await self._session_rows(params)]
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
        return self._session(await self._get_session(session_id))

    async def kill_session(self, session_id: str) -> None:
        """Ask hoop to kill a session; one already done counts as killed. hoop answers 204 also when the
        session lives on another gateway process and goes on: read it back (``get_session``)."""
        try:
            await self._request("POST", f"/sessions/{_seg(session_id)}/kill", ok=(200, 202, 204))
        except GatewayRefusedError:
            if (await self._get_session(session_id)).get("status") != "done":
                raise

    # ------------------------------------------------------------------ connections, users, groups

    async def list_connections(self) -> list[GatewayConnection]:
        result: list[GatewayConnection] = []
        page = 1
        while True:
            body = self._json(
                await self._request("GET", "/connections", params={"page": page, "page_size": PAGE_SIZE})
            )
            if isinstance(body, list):  # a gateway that ignores paging answers everything at once
                return [self._connection(c) for c in body]
            data = body.get("data") or []
            result.extend(self._connection(c) for c in data)
            total = (body.get("pages") or {}).get("total")
            if not data or (isinstance(total, int) and len(result) >= total):
                return result
            page += 1

    async def access_control_groups(self) -> dict[str, list[str]]:
        """Connection name → groups allowed by hoop's access_control plugin (direct links only; attribute
        links come from ``/attributes``). A connection absent here is reachable by admins only."""
        body = self._json(await self._request("GET", "/plugins/access_control"))
        return {
            str(c["name"]): [str(g) for g in (c.get("config") or [])]
            for c in body.get("connections") or []
            if c.get("name")
        }

    async def connection_access_rules(self, connection: str) -> ConnectionAccessRules:
        """Everything hoop decides a ``hoop connect`` to ``connection`` by (``domain.access`` explains the
        rules): the access_control plugin (404: off), the attributes linking groups and rules to the
        connection, the jit access-request rule, and the legacy review plugin's groups (the connection's
        ``reviewers``). Raises ``GatewayNotFoundError`` for a connection hoop does not have."""
        try:
            plugin = self._json(await self._request("GET", "/plugins/access_control"))
        except GatewayNotFoundError:
            plugin = None
        access_groups: list[str] = []
        if isinstance(plugin, dict):
            for entry in plugin.get("connections") or []:
                if entry.get("name") == connection:
                    access_groups = [str(g) for g in entry.get("config") or []]
        conn = self._json(await self._request("GET", f"/connections/{_seg(connection)}"))
        attributes = [
            a for a in await self._paged("/attributes") if connection in (a.get("connection_names") or [])
        ]
        rules = [
            r
            for r in await self._paged("/access-requests/rules")
            if r.get("access_type") in _JIT_ACCESS_TYPES
        ]
        # services.GetRuleForConnection: a rule reached through one of the connection's attributes wins
        # over a rule naming the connection.
        attribute_names = {str(a.get("name")) for a in attributes}
        linked_rules = {str(n) for a in attributes for n in a.get("access_request_rule_names") or []}
        by_attribute = [
            r
            for r in rules
            if r.get("name") in linked_rules or attribute_names & set(r.get("attributes") or [])
        ]
        by_name = [r for r in rules if connection in (r.get("connection_names") or [])]
        matching = by_attribute or by_name
        rule = matching[0] if matching else None
        return ConnectionAccessRules(
            connection=connection,
            access_control_enabled=plugin is not None,
            access_groups=access_groups,
            attribute_groups={
                str(a["name"]): [str(g) for g in a.get("access_control_group_names") or []]
                for a in attributes
                if a.get("access_control_group_names")
            },
            review_rule=None if rule is None else _review_rule(rule),
            review_plugin_groups=[str(g) for g in conn.get("reviewers") or []],
        )

    async def find_user(self, email_or_id: str) -> GatewayUser | None:
        """The hoop user, or None when the person has never signed in to hoop."""
        try:
            return await self.get_user(email_or_id)
        except GatewayNotFoundError:
            return None

    async def list_users(self) -> list[GatewayUser]:
        return [self._user(u) for u in self._json(await self._request("GET", "/users"))]

    async def get_user(self, email_or_id: str) -> GatewayUser:
        return self._user(self._json(await self._request("GET", f"/users/{_seg(email_or_id)}")))

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
        return self._user(self._json(await self._request("PUT", f"/users/{_seg(key)}", json=body)))

    async def list_user_groups(self) -> list[str]:
        return [str(g) for g in self._json(await self._request("GET", "/users/groups"))]

    # ------------------------------------------------------------------ internals

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        where = f"hoop {method} {path}"
        try:
            response = await self._client.request(method, path, params=params, json=json)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise GatewayPermanentError(f"{where}: bad hoop URL: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise GatewayTransientError(f"{where} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise GatewayTransientError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in ok:
            return response
        message = _message(response)
        detail = f"{where} answered {status}: {message}"
        if status in (408, 429) or status >= 500:
            raise GatewayTransientError(
                detail, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        if status in (401, 403):
            raise GatewayAuthError(
                f"{detail} (check grantflow's hoop API key and its groups: it needs admin and the "
                "force-approval groups of the connections and access-request rules it decides for)",
                status=status,
            )
        if status == 404:
            raise GatewayNotFoundError(detail, status=status)
        if status == 400:
            raise GatewayRefusedError(message, status=status)
        if 200 <= status < 300:
            raise GatewayPermanentError(f"{where} answered an unexpected {status}", status=status)
        raise GatewayPermanentError(detail, status=status)

    async def _paged(self, path: str) -> list[dict[str, Any]]:
        """Every item of a ``{pages, data}`` listing (``page``/``page_size``, at most 100 a page)."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._json(await self._request("GET", path, params={"page": page, "page_size": PAGE_SIZE}))
            data = body.get("data") if isinstance(body, dict) else body
            items.extend(d for d in data or [] if isinstance(d, dict))
            total = (body.get("pages") or {}).get("total") if isinstance(body, dict) else None
            if not data or not isinstance(total, int) or len(items) >= total:
                return items
            page += 1

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise GatewayTransientError(
                f"hoop {response.request.method} {response.request.url.path} answered with non-JSON",
                status=response.status_code,
            ) from exc

    async def _explain_provision_refusal(
        self, exc: GatewayRefusedError, user_email: str, connection: str
    ) -> GatewayError:
        """hoop answers 400 chiefly for a person who never signed in (hoop has no such user yet); say so
        in words the requester can act on. The lookup is what decides, not hoop's message text."""
        try:
            await self.get_user(user_email)
        except GatewayNotFoundError:
            return GatewayRefusedError(
                f"{user_email} has never signed in to hoop; ask them to sign in once, then request again",
                status=exc.status,
            )
        except GatewayError:
            pass
        return GatewayRefusedError(
            f"hoop refused to grant {user_email} access to {connection}: {exc.message}", status=exc.status
        )

    async def _get_session(self, session_id: str) -> dict[str, Any]:
        body = self._json(await self._request("GET", f"/sessions/{_seg(session_id)}"))
        if not isinstance(body, dict):
            raise GatewayTransientError(f"hoop returned a malformed session {session_id}")
        return body

    async def _get_review(self, review_id: str) -> dict[str, Any]:
        body = self._json(await self._request("GET", f"/reviews/{_seg(review_id)}"))
        if not isinstance(body, dict):
            raise GatewayTransientError(f"hoop returned a malformed review {review_id}")
        return body

    async def _session_rows(self, params: dict[str, str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        offset = 0
        while True:
            query: dict[str, Any] = {**params, "limit": PAGE_SIZE, "offset": offset, "count": "none"}
            body = self._json(await self._request("GET", "/sessions", params=query))
            data = body.get("data") or []
            for row in data:
                # pages are positional: a session created meanwhile shifts rows, so skip repeats
                if row.get("id") not in seen:
                    seen.add(row.get("id"))
                    rows.append(row)
            if not body.get("has_next_page") or not data:
                return rows
            offset += len(data)
            if offset > MAX_OFFSET:
                raise GatewayPermanentError(
                    f"more than {MAX_OFFSET} hoop sessions match {params}; hoop cannot page further"
                )

    @staticmethod
    def _grant_from_session(row: dict[str, Any]) -> ProvisionedGrant | None:
        review = row.get("review")
        if not isinstance(review, dict) or review.get("type") != "jit" or not review.get("id"):
            return None
        return ProvisionedGrant(
            session_id=str(row["id"]),
            review_id=str(review["id"]),
            correlation_id=str(row.get("correlation_id") or ""),
            user_email=str(row.get("user") or ""),
            connection=str(row.get("connection") or ""),
            status=str(review.get("status") or ""),
            revoke_at=_parse_time(review.get("revoke_at")),
        )

    @staticmethod
    def _session(row: dict[str, Any]) -> GatewaySession:
        review = row.get("review")
        return GatewaySession(
            id=str(row["id"]),
            user_email=str(row.get("user") or ""),
            user_subject=str(row.get("user_id") or ""),
            connection=str(row.get("connection") or ""),
            status=str(row.get("status") or ""),
            review_id=str(review["id"]) if isinstance(review, dict) and review.get("id") else None,
            correlation_id=row.get("correlation_id") or None,
            start_date=_parse_time(row.get("start_date")),
            end_date=_parse_time(row.get("end_date")),
        )

    @staticmethod
    def _review(body: dict[str, Any]) -> HoopReview:
        return HoopReview(
            id=str(body["id"]),
            type=str(body.get("type") or ""),
            status=str(body.get("status") or ""),
            session_id=str(body.get("session") or ""),
            access_duration=_nanoseconds(body.get("access_duration")),
            revoke_at=_parse_time(body.get("revoke_at")),
            rejection_reason=body.get("rejection_reason") or None,
            groups=[str(g["group"]) for g in body.get("review_groups_data") or [] if g.get("group")],
            force_approval_groups=[str(g) for g in body.get("force_approval_groups") or []],
        )

    @staticmethod
    def _pending_review(row: dict[str, Any], review: dict[str, Any]) -> HoopPendingReview:
        script = row.get("script")
        command = script.get("data") if isinstance(script, dict) else script
        return HoopPendingReview(
            review_id=str(review["id"]),
            type=str(review.get("type") or ""),
            session_id=str(row["id"]),
            user_email=str(row.get("user") or ""),
            user_subject=str(row.get("user_id") or ""),
            connection=str(row.get("connection") or ""),
            access_duration=_nanoseconds(review.get("access_duration")),
            command=str(command) if command else None,
            groups=[str(g["group"]) for g in review.get("review_groups_data") or [] if g.get("group")],
            created_at=_parse_time(review.get("created_at")),
        )

    @staticmethod
    def _connection(body: dict[str, Any]) -> GatewayConnection:
        return GatewayConnection(
            name=str(body["name"]),
            type=str(body.get("type") or ""),
            subtype=str(body.get("subtype") or ""),
            reviewers=[str(g) for g in body.get("reviewers") or []],
            access_max_duration=body.get("access_max_duration"),
        )

    @staticmethod
    def _user(body: dict[str, Any]) -> GatewayUser:
        return GatewayUser(
            id=str(body.get("id") or ""),
            email=str(body["email"]),
            name=str(body.get("name") or ""),
            status=str(body.get("status") or "active"),
            role=str(body.get("role") or ""),
            slack_id=str(body.get("slack_id") or ""),
            groups=[str(g) for g in body.get("groups") or []],
        )


def _review_rule(body: dict[str, Any]) -> ReviewRule:
    def names(key: str) -> list[str]:
        return [str(g) for g in body.get(key) or []]

    return ReviewRule(
        name=str(body.get("name") or ""),
        access_type=str(body.get("access_type") or "jit"),
        approval_required_groups=names("approval_required_groups"),
        skip_review_groups=names("skip_review_groups"),
        reviewers_groups=names("reviewers_groups"),
        force_approval_groups=names("force_approval_groups"),
    )


def _nanoseconds(value: Any) -> timedelta:
    """hoop's ``access_duration`` (nanoseconds) as a ``timedelta``; missing or bad → zero."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(microseconds=value // 1000)
    return timedelta(0)


def _seg(value: str) -> str:
    """One URL path segment (emails keep their ``@``)."""
    return quote(value, safe="@")
