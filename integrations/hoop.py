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
- Revoking an already REVOKED review, deciding a review that already has the wanted outcome, and killing a
  session already ``done`` all count as success (hoop answers 400 for them; the state is read back).
- **Reviews that start in hoop** (a person ran ``hoop connect``/``exec`` and left a review PENDING):
  ``list_pending_reviews`` reads ``GET /sessions?review.status=PENDING`` (paged; ``GET /reviews`` is not) and
  takes who asked and the connection from the session, since the Review object has neither; a ``onetime``
  review's command is the session's ``script.data``. ``get_review`` reads one back, ``decide_review``
  approves or rejects it.
- ``list_sessions`` pages through everything (``limit`` 100; hoop refuses ``offset`` > 10000, so a larger
  result raises instead of silently truncating) and filters ``status`` itself: hoop's list has no status
  filter.

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
- ``PUT /reviews`` approves once ``min(len(groups), min_approvals)`` groups approved (the code), not "once all
  groups are APPROVED" (the prose). A decision may therefore leave a review PENDING or approve it early.
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
        review grants nothing). Returns the grant as read back."""
        try:
            review = self._json(
                await self._request("PUT", f"/reviews/{_seg(review_id)}", json={"status": "REVOKED"})
            )
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
        """Approve or reject a review hoop holds, as grantflow's API key. Approving may leave the review
        PENDING when hoop needs more groups. Asking again for an outcome already reached succeeds."""
        wanted = "APPROVED" if approve else "REJECTED"
        body: dict[str, Any] = {"status": wanted}
        if not approve and reason:
            body["rejection_reason"] = reason
        try:
            await self._request("PUT", f"/reviews/{_seg(review_id)}", json=body)
        except GatewayRefusedError as exc:
            current = (await self._get_review(review_id)).get("status")
            if current == wanted:
                return
            raise GatewayRefusedError(
                f"hoop review {review_id} is {current} and can no longer be {wanted.lower()} ({exc.message})",
                status=exc.status,
            ) from exc
        except GatewayAuthError as exc:
            raise GatewayAuthError(
                f"grantflow's hoop API key may not decide review {review_id}: {exc.message}. "
                "Give the key one of the review's groups (or admin).",
                status=exc.status,
            ) from exc

    async def get_review(self, review_id: str) -> HoopReview:
        """A review as hoop holds it now."""
        return self._review(await self._get_review(review_id))

    async def list_pending_reviews(self) -> list[HoopPendingReview]:
        """Every review PENDING in hoop, oldest first, one row per review
        (``GET /sessions?review.status=PENDING``, paged; ``GET /reviews`` is unpaginated)."""
        found: dict[str, HoopPendingReview] = {}
        for row in await self._session_rows({"review.status": "PENDING"}):
            review = row.get("review")
            if not isinstance(review, dict) or not review.get("id") or review.get("status") != "PENDING":
                continue
            found.setdefault(str(review["id"]), self._pending_review(row, review))
        return list(reversed(found.values()))

    # ------------------------------------------------------------------ sessions

    async def list_sessions(
        self, *, user: str | None = None, connection: str | None = None, status: str | None = None
    ) -> list[GatewaySession]:
        """All sessions matching, newest first. ``user`` is a subject id or an email; ``status`` (open,
        ready, done) is filtered here because hoop's list cannot."""
        params: dict[str, str] = {}
        if user:
            if "@" in user:
                try:
                    user = (await self.get_user(user)).id
                except GatewayNotFoundError:
                    return []
            params["user"] = user
        if connection:
            params["connection"] = connection
        rows = await self._session_rows(params)
        return [self._session(row) for row in rows if status is None or row.get("status") == status]

    async def kill_session(self, session_id: str) -> None:
        """Kill a session; one already done counts as killed."""
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
                f"{detail} (check grantflow's hoop API key and its groups: it needs admin and the reviewer "
                "groups it acts for)",
                status=status,
            )
        if status == 404:
            raise GatewayNotFoundError(detail, status=status)
        if status == 400:
            raise GatewayRefusedError(message, status=status)
        if 200 <= status < 300:
            raise GatewayPermanentError(f"{where} answered an unexpected {status}", status=status)
        raise GatewayPermanentError(detail, status=status)

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


def _nanoseconds(value: Any) -> timedelta:
    """hoop's ``access_duration`` (nanoseconds) as a ``timedelta``; missing or bad → zero."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(microseconds=value // 1000)
    return timedelta(0)


def _seg(value: str) -> str:
    """One URL path segment (emails keep their ``@``)."""
    return quote(value, safe="@")
