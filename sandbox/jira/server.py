"""The Jira stand-in itself: :class:`JiraStandIn` ties the parts together and serves them over HTTP.

It owns the constructor, the route table, authentication (HTTP basic ``email:api-token``; wrong or missing
credentials get **401**, only ``/serverInfo`` answers without), the call log and fault injection. Every
request is handled under the one lock and the state file is rewritten after every non-GET call.

Test hooks: ``fail_next`` answers the next matching requests with 429/503/… (with ``Retry-After``), before or
*after* the write; ``drop_next`` closes the connection without an answer, before or after the write (the
caller cannot tell whether the write happened); ``fail_randomly`` fails a seeded share of all calls (429,
503, an answer held back past the client's timeout, a dropped connection). Every call is recorded in
``calls``; every webhook event in ``events`` and every delivery attempt in ``deliveries``. Injected answers
carry ``X-Sandbox-Fault: injected``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.faults import Fault, FaultPlan, RandomFaults, call_name, drop_asgi_connection
from sandbox.jira.api import ApiError, Ctx, Handler, Outcome
from sandbox.jira.directory import DirectoryRoutes
from sandbox.jira.issues import IssueRoutes
from sandbox.jira.model import JiraCall, User, utcnow
from sandbox.jira.search import SearchRoutes
from sandbox.jira.transitions import TransitionRoutes
from sandbox.jira.webhooks import (
    ATLASSIAN_RETRY_STATUSES,
    DEFAULT_WEBHOOK_RETRY_DELAYS,
    WEBHOOKS_API,
    WEBHOOKS_VERSION,
)

API_VERSIONS = ("2", "3", "latest")


def _query(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs)


_JSON_TYPE = "application/json;charset=UTF-8"


class JiraStandIn(IssueRoutes, TransitionRoutes, DirectoryRoutes, SearchRoutes):
    """Jira Cloud, in process. See the package docstring for the behaviour and its sources."""

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        webhook_secret: str | None = None,
        webhook_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
        webhook_retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
        webhook_retry_statuses: Iterable[int] = ATLASSIAN_RETRY_STATUSES,
        webhook_timeout: float = 5.0,
        legacy_search_gone: bool = False,
        state_file: Path | None = None,
    ) -> None:
        """``state_file``: keep users, projects, custom fields and issues there (rewritten after every
        change, loaded back here), so a restarted stand-in goes on numbering tickets where it stopped, as
        Jira would; calls, events, deliveries and faults are not kept."""
        if not users:
            raise ValueError("at least one API user (email -> API token) is needed")
        self._lock = threading.RLock()
        self._clock = clock or utcnow
        self._init_webhooks(
            webhook_url, webhook_secret, webhook_retry_delays, webhook_retry_statuses, webhook_timeout
        )
        self.legacy_search_gone = legacy_search_gone
        self._faults = FaultPlan()
        self._server = None
        self._init_state(state_file)
        for email, token in users.items():
            self.add_user(email, api_token=token)
        self._routes = self._build_routes()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # a plain coroutine function: uvicorn takes a bound method for an ASGI2 app
            await self._asgi(scope, receive, send)

        self.app = app

    def _started(self, url: str) -> None:
        with self._lock:
            self._base_url = url
        self._start_webhooks()

    def _stopping(self) -> None:
        self._stop_webhooks()

    def issue(self, key: str) -> dict[str, Any]:
        """An issue as ``GET /rest/api/2/issue/{key}`` renders it (every field, changelog expanded)."""
        with self._lock:
            issue = self._require_issue(key)
            body = self._render_issue(issue, "2", None)
            body["changelog"] = self._render_changelog(issue)
            return body

    def issues(self, *, label: str | None = None) -> list[dict[str, Any]]:
        """Every issue (with ``label``, if given), in creation order, rendered as by ``issue``."""
        with self._lock:
            keys = [i.key for i in self._ordered_issues() if label is None or label in i.labels]
            return [self.issue(k) for k in keys]

    def status_of(self, key: str) -> str:
        with self._lock:
            issue = self._require_issue(key)
            return self._projects[issue.project].workflow.status(issue.status).name

    def comments(self, key: str) -> list[str]:
        """The text of every comment on the issue, oldest first."""
        with self._lock:
            return [c.text for c in self._require_issue(key).comments]

    def calls_to(self, method: str, api_path_prefix: str) -> list[JiraCall]:
        """Recorded calls with this method whose path below the version starts with the prefix."""
        prefix = self._api_prefix(api_path_prefix)
        with self._lock:
            return [c for c in self.calls if c.method == method.upper() and c.api_path.startswith(prefix)]

    def fail_next(
        self,
        path_prefix: str,
        status: int = 503,
        retry_after: float | str | None = None,
        count: int = 1,
        *,
        after_write: bool = False,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` (``/issue``, with or
        without ``/rest/api/<version>``) with ``status``, plus ``Retry-After`` when given (seconds, or an
        HTTP-date string). ``after_write=True`` runs the request first and replaces its answer."""
        self._faults.add(
            Fault(
                self._api_prefix(path_prefix),
                status=status,
                remaining=count,
                method=method,
                retry_after=retry_after,
                after_write=after_write,
            )
        )

    def drop_next(
        self, path_prefix: str, *, after_write: bool = False, count: int = 1, method: str | None = None
    ) -> None:
        """Close the connection of the next ``count`` matching requests without answering; with
        ``after_write=True`` the request is carried out first (an issue is created, a transition done)."""
        self._faults.add(
            Fault(
                self._api_prefix(path_prefix),
                remaining=count,
                method=method,
                after_write=after_write,
                drop=True,
            )
        )

    def fail_randomly(self, spec: RandomFaults) -> FaultPlan:
        """Fail a seeded share of the calls below ``/rest/api/<version>`` (``spec.prefix`` as for
        ``fail_next``), answered as ``fail_next`` answers; the plan returned counts what it injected."""
        self._faults.fail_randomly(replace(spec, prefix=self._api_prefix(spec.prefix)))
        return self._faults

    def stop_failing_randomly(self) -> None:
        self._faults.stop_failing_randomly()

    def clear_faults(self) -> None:
        self._faults.clear()

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    @staticmethod
    def _api_prefix(path_prefix: str) -> str:
        match = re.match(r"^/?rest/api/[^/]+(/.*)?$", path_prefix)
        if match:
            return match.group(1) or "/"
        return path_prefix if path_prefix.startswith("/") else "/" + path_prefix

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Handler, bool]]:
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/serverInfo", self._h_server_info, False),
            ("GET", "/myself", self._h_myself, True),
            ("GET", "/field", self._h_fields, True),
            ("GET", "/project/{key}", self._h_project, True),
            ("POST", "/issue", self._h_create_issue, True),
            ("GET", "/issue/{key}", self._h_get_issue, True),
            ("PUT", "/issue/{key}", self._h_edit_issue, True),
            ("GET", "/issue/{key}/transitions", self._h_get_transitions, True),
            ("POST", "/issue/{key}/transitions", self._h_do_transition, True),
            ("GET", "/issue/{key}/comment", self._h_get_comments, True),
            ("POST", "/issue/{key}/comment", self._h_add_comment, True),
            ("GET", "/user", self._h_get_user, True),
            ("GET", "/user/search", self._h_user_search, True),
            ("GET", "/search", self._h_search, True),
            ("POST", "/search", self._h_search, True),
            ("GET", "/search/jql", self._h_search_jql, True),
            ("POST", "/search/jql", self._h_search_jql, True),
            ("GET", "/webhooks/webhook", self._h_list_webhooks, True),
            ("POST", "/webhooks/webhook", self._h_register_webhook, True),
        ]
        return [
            (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"), handler, auth)
            for method, path, handler, auth in table
        ]

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = await request.body()
        query = parse_qsl(request.url.query, keep_blank_values=True)
        with self._lock:
            outcome = self._handle(request.method, request.url.path, query, request.headers, raw)
            if request.method != "GET":
                self._save()
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        if outcome.drop:
            await drop_asgi_connection(send)
            return
        response: Response
        if outcome.status == 204 or outcome.payload is None:
            response = Response(status_code=outcome.status, headers=outcome.headers)
        else:
            response = JSONResponse(outcome.payload, status_code=outcome.status, headers=outcome.headers)
            response.headers["content-type"] = _JSON_TYPE
        await response(scope, receive, send)

    def _handle(
        self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str], raw: bytes
    ) -> Outcome:
        body: Any = None
        body_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = f"Unexpected character in the request body: {exc}"
        match = re.match(r"^/rest/api/([^/]+)(/.*)?$", path)
        version = match.group(1) if match else None
        api_path = (match.group(2) or "/") if match else ""
        if path.startswith(WEBHOOKS_API + "/"):
            # admin webhooks live outside /rest/api (developer.atlassian.com/cloud/jira/platform/webhooks)
            match, version, api_path = None, WEBHOOKS_VERSION, "/webhooks" + path[len(WEBHOOKS_API) :]
        user: User | None = None
        fault = (
            self._faults.take(api_path, method, call=call_name(method, path, _query(query), raw))
            if match
            else None
        )
        late = 0.0  # a timeout: the call is carried out, its answer held back past the client's patience
        if fault is not None and fault.delay:
            late, fault = fault.delay, None
        out_headers: dict[str, str] = {}
        status: int
        payload: Any
        if fault is not None and not fault.after_write:
            status, payload = self._fault_answer(fault, out_headers)
        else:
            try:
                if version not in (*API_VERSIONS, WEBHOOKS_VERSION):
                    raise ApiError(404, [f"null for uri: {self._base_url}{path}"])
                handler, params, needs_auth = self._route(method, api_path)
                user = self._authenticate(headers.get("authorization"))
                if needs_auth and user is None:
                    raise ApiError(401, ["Client must be authenticated to access this resource."])
                if body_error is not None:
                    raise ApiError(400, [body_error])
                status, payload = handler(Ctx(version, params, query, body, user))
            except ApiError as exc:
                status, payload = exc.status, exc.body()
                out_headers.update(exc.headers)
            if fault is not None:
                status, payload = self._fault_answer(fault, out_headers)
        self.calls.append(
            JiraCall(
                method=method,
                path=path,
                api_path=api_path,
                version=version,
                query=list(query),
                json=body,
                status=status,
                response=payload,
                user=user.email if user else None,
                injected=fault is not None,
            )
        )
        return Outcome(status, payload, out_headers, drop=fault is not None and fault.drop, delay=late)

    @staticmethod
    def _fault_answer(fault: Fault, headers: dict[str, str]) -> tuple[int, Any]:
        """Jira's answer for an injected failure (its error body, and its rate-limit header on a 429)."""
        if fault.drop:
            return 0, None
        headers["X-Sandbox-Fault"] = "injected"
        retry_after = fault.retry_after_header()
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if fault.status == 429:
            headers["RateLimit-Reason"] = "jira-burst-based"
            return 429, {"errorMessages": ["Rate limit exceeded."], "errors": {}}
        if fault.status == 503:
            return 503, {"errorMessages": ["Service Unavailable"], "errors": {}}
        return fault.status, {"errorMessages": [f"injected failure ({fault.status})"], "errors": {}}

    def _route(self, method: str, api_path: str) -> tuple[Handler, dict[str, str], bool]:
        allowed = False
        for route_method, pattern, handler, needs_auth in self._routes:
            found = pattern.match(api_path)
            if found is None:
                continue
            if route_method == method:
                return handler, found.groupdict(), needs_auth
            allowed = True
        if allowed:
            raise ApiError(405, [f"Method '{method}' is not supported on {api_path}."])
        raise ApiError(404, [f"null for uri: {self._base_url}/rest/api{api_path}"])

    def _authenticate(self, header: str | None) -> User | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise ApiError(401, ["Client must be authenticated to access this resource."])
        try:
            email, _, token = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, ["Client must be authenticated to access this resource."]) from None
        user = self._user_by_email(email)
        if (
            user is None
            or not user.active
            or user.api_token is None
            or not hmac.compare_digest(user.api_token, token)
        ):
            raise ApiError(401, ["Client must be authenticated to access this resource."])
        return user
