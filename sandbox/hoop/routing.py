"""Routing, authentication and test hooks of the hoop stand-in: every request goes through ``_dispatch``.

- Auth: ``Authorization: Bearer <api key>`` or the legacy ``Api-Key: <key>`` header (both look up the
  same key table here; a key's groups come from ``api_keys``; group ``admin`` may do everything).
  Tokens minted by ``issue_user_token`` authenticate as a person (to exercise "the owner cannot approve
  their own"). Anything else: **401** ``{"message": "unauthorized"}``. Admin-only here (403 otherwise):
  provision, users, plugins, attributes, access-request rules and the ``/api/_sandbox`` posts; provision
  also refuses a person's token (``api_key_only``).
- Test hooks: ``fail_next`` injects 5xx/429 (with ``Retry-After``) before or *after* the write, through
  the shared :mod:`sandbox.faults` plan, and ``fail_randomly`` a seeded share of all calls (429, 503, an
  answer held back past the client's timeout, a dropped connection); every call is recorded in ``calls``
  (neither is persisted).

``_dispatch`` parses the body, takes a fault, authenticates and runs the handler under the state lock,
then records the call. It never decides anything about a resource: handlers do.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.faults import Fault, FaultPlan, RandomFaults, call_name, drop_asgi_connection
from sandbox.hoop.api import ID_NAMESPACE, Call, Caller, HTTPError
from sandbox.hoop.state import HoopCore

DEFAULT_API_KEY = "hpk_sandbox_admin_key"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
UVICORN_SEND = "sandbox.uvicorn_send"
"""Where the app keeps uvicorn's ``send`` in the scope, for :class:`_DroppedConnection`."""


class _DroppedConnection(Response):
    """No answer at all: the connection is closed, as a gateway restarting mid-request leaves it."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await drop_asgi_connection(scope[UVICORN_SEND])


Handler = Callable[..., tuple[int, Any]]
"""``handler(caller, path_params, query, body) -> (status, payload)``; raises ``HTTPError`` to refuse."""


def api_key_callers(keys: dict[str, list[str]], names: dict[str, str] | None = None) -> dict[str, Caller]:
    """Each API key as the caller it authenticates: named as given or ``api-key-<n>``, with a stable id
    and its groups."""
    if not keys:
        raise ValueError("at least one API key is needed")
    return {
        key: Caller(
            kind="apikey",
            id=str(uuid.uuid5(ID_NAMESPACE, key)),
            name=(names or {}).get(key, f"api-key-{n}"),
            email="",
            groups=tuple(groups),
        )
        for n, (key, groups) in enumerate(keys.items(), start=1)
    }


class Routing(HoopCore):
    _key_caller: Callable[[str], Caller | None]
    """Authentication, dispatch, fault injection and the call log."""

    _api_keys: dict[str, Caller]
    calls: list[Call]
    _faults: FaultPlan

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
        self._faults.add(
            Fault(
                prefix,
                status=status,
                retry_after=retry_after,
                remaining=count,
                after_write=after_write,
                method=method or None,
            )
        )

    def fail_randomly(self, spec: RandomFaults) -> FaultPlan:
        """Fail a seeded share of the calls (``spec.prefix`` with or without ``/api``), answered as
        ``fail_next`` answers (hoop's ``{"message": ...}`` error body, ``Retry-After`` on a 429); the plan
        returned counts what it injected."""
        prefix = spec.prefix if spec.prefix.startswith("/api") else "/api" + spec.prefix
        self._faults.fail_randomly(replace(spec, prefix=prefix))
        return self._faults

    def stop_failing_randomly(self) -> None:
        self._faults.stop_failing_randomly()

    def clear_faults(self) -> None:
        self._faults.clear()

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def _route(self, path: str, handler: Handler, methods: list[str], **opts: bool) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._dispatch(request, handler, **opts)

        return Route(path, endpoint, methods=methods)

    def _authenticate(self, request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
            if (caller := self._known_key(token)) is not None:
                return caller
            subject = self._state["tokens"].get(token)
            user = self._state["users"].get(subject) if subject else None
            if user is not None and user["status"] == "active":
                return Caller(
                    kind="user",
                    id=user["id"],
                    name=user["name"],
                    email=user["email"],
                    groups=tuple(user["groups"]),
                    slack_id=user["slack_id"],
                )
        elif (caller := self._known_key(request.headers.get("api-key", "").strip())) is not None:
            return caller
        raise HTTPError(401, "unauthorized")

    def _known_key(self, raw: str) -> Caller | None:
        """An active key's caller: a configured key as configured, any other through the key table (both
        stop working once revoked)."""
        table_caller = self._key_caller(raw) if raw else None  # marks last_used_at
        if raw in self._api_keys:
            return self._api_keys[raw] if table_caller is not None else None
        return table_caller

    async def _dispatch(
        self,
        request: Request,
        handler: Handler,
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
        late = 0.0  # a timeout: the call is carried out, its answer held back past the client's patience
        with self._lock:
            fault = self._faults.take(path, method, call=call_name(method, path, request.url.query, raw))
            if fault is not None and fault.delay:
                late, fault = fault.delay, None
            status: int
            payload: Any
            if fault is not None and fault.drop and not fault.after_write:
                self.calls.append(Call(method, path, query, body, 0, None, True))
                return _DroppedConnection()
            if fault is not None and not fault.after_write:
                status, payload = fault.status, {"message": "injected failure"}
            else:
                try:
                    caller = self._authenticate(request)
                    if api_key_only and caller.kind != "apikey":
                        raise HTTPError(403, "this route accepts only API key authentication")
                    if admin and not caller.admin:
                        raise HTTPError(403, "access denied")
                    if body_error is not None:
                        raise HTTPError(422, body_error)
                    status, payload = handler(caller, dict(request.path_params), query, body)
                except HTTPError as exc:
                    status, payload = exc.status, {"message": exc.message, **exc.extra}
                if fault is not None:
                    status, payload = fault.status, {"message": "injected failure"}
            if fault is not None and fault.drop:  # after the write: the change stays, the answer is lost
                self.calls.append(Call(method, path, query, body, 0, None, True))
                return _DroppedConnection()
            if fault is not None:
                headers["X-Sandbox-Fault"] = "injected"
                retry_after = fault.retry_after_header()
                if retry_after is not None:
                    headers["Retry-After"] = retry_after
            self.calls.append(Call(method, path, query, body, status, payload, fault is not None))
        if late:
            await asyncio.sleep(late)
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(payload, status_code=status, headers=headers)

    def _h_not_found(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        raise HTTPError(404, "404 page not found")
