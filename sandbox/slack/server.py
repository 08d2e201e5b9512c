"""``SlackStandIn``: the Slack stand-in's HTTP + WebSocket server and its test hooks.

It routes ``/api/<method>`` (authenticating the token as Slack does, then handing the call to the method's
module), ``/link/`` (Socket Mode) and the response URLs; records every Web API call in ``calls``; injects
the faults tests ask for (``fail_next``, ``drop_next``, ``fail_randomly``, through ``sandbox.faults``); and
saves the workspace after every call that may have changed it. The Web API methods themselves live in
``users``, ``messages``, ``views`` and ``socket_mode``; this module never answers one.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.faults import Fault, FaultPlan, RandomFaults, call_name
from sandbox.slack.api import Call, SlackFail, parse_request
from sandbox.slack.loop import LOOPBACK, LoopThread
from sandbox.slack.messages import METHODS as MESSAGE_METHODS
from sandbox.slack.response_urls import RESPONSE_PATH, ResponseUrls
from sandbox.slack.socket_mode import SocketEnvelope, SocketMode
from sandbox.slack.users import METHODS as USER_METHODS
from sandbox.slack.views import METHODS as VIEW_METHODS
from sandbox.slack.views import new_trigger_id
from sandbox.slack.workspace import (
    DEFAULT_BOT_SCOPES,
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    Handler,
    Workspace,
    ts_to_micros,
)

# Web API methods that change nothing kept: no state write after them
_READ_METHODS = frozenset(
    {
        "api.test",
        "auth.test",
        "apps.connections.open",
        "conversations.history",
        "conversations.info",
        "conversations.replies",
        "users.info",
        "users.lookupByEmail",
        "users.list",
    }
)


class SlackStandIn:
    """Slack's Web API and Socket Mode, in process. See the package docstring for the behaviour."""

    def __init__(
        self,
        *,
        bot_token: str = DEFAULT_BOT_TOKEN,
        app_token: str | None = None,
        signing_secret: str = DEFAULT_SIGNING_SECRET,
        clock: Callable[[], datetime] | None = None,
        scopes: Iterable[str] = DEFAULT_BOT_SCOPES,
        state_file: Path | None = None,
    ) -> None:
        """``state_file``: keep users, channels, DMs and their messages there (rewritten after every
        change, loaded back here), so a restarted stand-in still has the messages grantflow updates;
        calls, ephemerals, views, response URLs and faults are not kept."""
        if not bot_token.startswith("xoxb-"):
            raise ValueError("a bot token starts with xoxb-")
        if app_token is not None and not app_token.startswith("xapp-"):
            raise ValueError("an app-level token starts with xapp-")
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.scopes = list(scopes)  # the bot token's, sent as X-OAuth-Scopes (not enforced per method)
        self.workspace = Workspace(clock=clock, state_file=state_file)
        self._lock = self.workspace.lock  # one lock for all state, this object's included
        self._faults = FaultPlan()
        self._socket_mode = SocketMode(self.workspace, self._port)
        self._response_urls = ResponseUrls(self.workspace)
        self._methods: dict[str, Handler] = {
            **USER_METHODS,
            **MESSAGE_METHODS,
            **VIEW_METHODS,
            "apps.connections.open": self._socket_mode.connections_open,
        }
        self.calls: list[Call] = []
        self.ephemerals = self.workspace.ephemerals
        self.responses = self._response_urls.responses
        self.envelopes = self._socket_mode.envelopes
        self._server: LoopThread | None = None
        self._url: str | None = None

    @property
    def state_file(self) -> Path | None:
        return self.workspace.state_file

    # ------------------------------------------------------------------ lifecycle

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (a free port when 0); returns the base URL. Clients use ``api_url``."""
        if self._server is not None:
            raise RuntimeError("the Slack stand-in is already running")
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._socket_mode.handle)
        app.router.add_post(RESPONSE_PATH, self._response_urls.handle)
        server = LoopThread(app)
        bound = server.start(port)
        self._server = server
        self._url = f"http://{LOOPBACK}:{bound}"
        return self._url

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._socket_mode.close_all(server)
        server.stop()
        self._server = None
        self._url = None

    def __enter__(self) -> SlackStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the Slack stand-in is not running")
        return self._url

    @property
    def api_url(self) -> str:
        """The ``base_url`` for slack_sdk clients (it must end in ``/api/``)."""
        return self.url + "/api/"

    def now(self) -> datetime:
        return self.workspace.now()

    # ------------------------------------------------------------------ seeding

    def add_user(self, email: str, name: str, *, deleted: bool = False) -> str:
        """A workspace member; returns the Slack user id (``U…``). Adding a known email updates it."""
        return self.workspace.add_user(email, name, deleted=deleted)

    def add_channel(self, name: str, *, members: Iterable[str] = (), bot_is_member: bool = True) -> str:
        """A public channel (``C…``); the bot must be a member to post there (``not_in_channel``)."""
        return self.workspace.add_channel(name, members=members, bot_is_member=bot_is_member)

    # ------------------------------------------------------------------ inspection

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's DM with ``user_id`` (opened now if it was not yet, as Slack would)."""
        with self._lock:
            if user_id not in self.workspace.users:
                raise KeyError(f"no Slack user {user_id}")
            return self.workspace.open_dm(user_id)[0]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Stored messages (copies, with their ``channel``), oldest first; all channels when None."""
        with self._lock:
            channels = self.workspace.channels
            chans = [channels[channel]] if channel is not None else list(channels.values())
            out = [{**copy.deepcopy(m), "channel": c["id"]} for c in chans for m in c["messages"]]
            return sorted(out, key=lambda m: ts_to_micros(m["ts"]))

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return self.workspace.message_copy(channel, ts)

    def views(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """Views opened with ``views.open`` (copies), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(v) for v in self.workspace.views.values() if user_id in (None, v["user_id"])
            ]

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def user_id(self, email: str) -> str:
        return self.workspace.user_id(email)

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: float | None = None,
        count: int = 1,
        *,
        error: str | None = None,
        after_write: bool = False,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with ``status``: 429 → ``ratelimited`` with
        ``Retry-After`` (``retry_after`` seconds, 1 when not given, as Slack always sends one); 5xx →
        Slack's edge error page (``Retry-After`` only when given); 200 → ``{"ok": false, "error": error}``.
        ``after_write=True`` applies the call first, then answers the failure."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if status == 429 and retry_after is None:
            retry_after = 1
        default_error = {429: "ratelimited"}.get(status, "fatal_error" if status == 200 else "")
        fault = Fault(
            method,
            status,
            count,
            retry_after=retry_after,
            after_write=after_write,
            error=error or default_error,
            html=status >= 500,
            exact=True,
        )
        self._faults.add(fault)

    def drop_next(self, method: str, *, after_write: bool = False, count: int = 1) -> None:
        """Close the connection of the next ``count`` calls of ``method`` without any response: before
        the call is applied, or after (``after_write=True``: the message was stored, the reply is lost)."""
        self._faults.add(Fault(method, remaining=count, after_write=after_write, drop=True, exact=True))

    def fail_randomly(self, spec: RandomFaults) -> FaultPlan:
        """Fail a seeded share of the Web API calls (``spec.prefix``: a method name or its start, e.g.
        ``chat.``), answered as ``fail_next`` answers (429 ``ratelimited`` with ``Retry-After``, 503 as
        Slack's edge page); the plan returned counts what it injected."""
        self._faults.fail_randomly(spec)
        return self._faults

    def stop_failing_randomly(self) -> None:
        self._faults.stop_failing_randomly()

    def clear_faults(self) -> None:
        self._faults.clear()

    # ------------------------------------------------------------------ driver support

    def issue_trigger_id(self, user_id: str) -> str:
        """A ``trigger_id`` as Slack puts in an interaction: valid once, for 3 seconds (on ``clock``)."""
        return new_trigger_id(self.workspace, user_id)

    def issue_response_url(self, channel: str, message_ts: str | None, user_id: str) -> str:
        return self._response_urls.issue(self.url, channel, message_ts, user_id)

    # ------------------------------------------------------------------ Socket Mode

    @property
    def socket_connections(self) -> int:
        """Socket Mode connections open now."""
        return self._socket_mode.connections

    @property
    def socket_connects(self) -> int:
        """Socket Mode connections accepted since the start (reconnections included)."""
        return self._socket_mode.connects

    def wait_for_socket(self, timeout: float = 5.0, *, count: int = 1) -> None:
        """Wait until at least ``count`` Socket Mode connections are open."""
        self._socket_mode.wait(timeout, count)

    def deliver_socket(
        self, envelope_type: str, payload: Mapping[str, Any], *, timeout: float = 5.0
    ) -> SocketEnvelope:
        """Send an envelope to the newest Socket Mode connection and wait up to ``timeout`` seconds for
        its ack. Returns the envelope record; ``acked`` says whether the app acknowledged it in time."""
        return self._socket_mode.deliver(self._server, envelope_type, payload, timeout)

    def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``disconnect`` message to every connection (clients then reconnect)."""
        self._socket_mode.disconnect(self._server, reason)

    # ------------------------------------------------------------------ Web API

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params, header_token, parse_error = await parse_request(request)
        recorded = {k: v for k, v in params.items() if k != "token"}
        call = call_name("POST", method, "", json.dumps(recorded, sort_keys=True, default=str).encode())
        with self._lock:
            fault = self._take_fault(method, call)
        late = 0.0  # a timeout: the call is carried out, its answer held back past the client's patience
        if fault is not None and fault.delay:
            late, fault = fault.delay, None
        if fault is not None and not fault.after_write:
            return self._inject(request, method, recorded, fault)
        with self._lock:
            status, body, warnings = self._dispatch(method, params, header_token, parse_error)
            if method not in _READ_METHODS:
                self.workspace.save()
        if fault is not None:
            return self._inject(request, method, recorded, fault)
        with self._lock:
            self.calls.append(Call(method, recorded, status, body, None, request.method, warnings))
        if late:
            await asyncio.sleep(late)
        return web.json_response(body, status=status, headers={"X-OAuth-Scopes": ",".join(self.scopes)})

    def _take_fault(self, method: str, call: str | None = None) -> Fault | None:
        """The fault this call of ``method`` must suffer, if any (called once per call, under the lock);
        ``call`` names it for the plan's records (the method and its parameters)."""
        fault = self._faults.take(method, call=call)
        if fault is not None and fault.kind == "503":
            # a random 5xx comes from Slack's edge, an HTML page, as ``fail_next`` sends it
            fault = dataclasses.replace(fault, html=True)
        return fault

    def _inject(
        self, request: web.Request, method: str, params: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        if fault.drop:
            with self._lock:
                self.calls.append(Call(method, params, None, None, "drop", request.method))
            transport = request.transport
            if transport is not None:
                transport.close()
            return web.Response()
        headers = {}
        retry_after = fault.retry_after_header()
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if fault.html:
            body: Any = None
            text = f"<html><body><h1>{fault.status}</h1>Slack is having trouble. Try again.</body></html>"
            response: web.StreamResponse = web.Response(
                status=fault.status, text=text, content_type="text/html", headers=headers
            )
        else:
            body = {"ok": False, "error": fault.error}
            response = web.json_response(body, status=fault.status, headers=headers)
        with self._lock:
            self.calls.append(Call(method, params, fault.status, body, "fault", request.method))
        return response

    def _dispatch(
        self, method: str, params: dict[str, Any], header_token: str | None, parse_error: str | None
    ) -> tuple[int, dict[str, Any], tuple[str, ...]]:
        warnings: list[str] = []
        try:
            handler = self._methods.get(method)
            if handler is None:
                raise SlackFail("unknown_method", status=404, req_method=method)
            if parse_error is not None:
                raise SlackFail(parse_error)
            token = header_token or params.get("token")
            if not token:
                raise SlackFail("not_authed")
            if token == self.bot_token:
                kind = "bot"
            elif self.app_token is not None and token == self.app_token:
                kind = "app"
            else:
                raise SlackFail("invalid_auth")
            needs_app = method == "apps.connections.open"
            if (kind == "app") != needs_app and method != "auth.test":
                raise SlackFail("not_allowed_token_type")
            body = handler(self.workspace, params, kind, warnings)
            body = {"ok": True, **body}
            if warnings:
                body["warning"] = ",".join(warnings)
                body.setdefault("response_metadata", {})["warnings"] = list(warnings)
            return 200, body, tuple(warnings)
        except SlackFail as fail:
            return fail.status, {"ok": False, "error": fail.error, **fail.extra}, tuple(warnings)

    def _port(self) -> int:
        if self._server is None or self._server.port is None:
            raise RuntimeError("not running")
        return self._server.port
