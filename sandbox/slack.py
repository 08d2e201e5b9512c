"""A local Slack for tests and ``grantflow dev``: a real HTTP + WebSocket server on 127.0.0.1 answering the
Web API methods grantflow calls the way Slack answers them, a Socket Mode endpoint, and a driver that plays
Slack's part towards grantflow (signed interactivity requests and slash commands).

    slack = SlackStandIn(bot_token="xoxb-…", app_token="xapp-…", signing_secret="s3cret", clock=clock)
    bob = slack.add_user("bob@corp.example", "Bob Builder")        # -> "U00000002"
    url = slack.start()                                             # http://127.0.0.1:PORT
    client = AsyncWebClient(token="xoxb-…", base_url=slack.api_url) # slack.api_url == url + "/api/"
    ...
    driver = SlackDriver("s3cret", "http://127.0.0.1:WEB/slack/events", slack=slack)
    driver.click_button(bob, channel, ts, "grantflow_approve")      # signed block_actions, like Slack
    slack.deliver_socket("interactive", driver.block_actions_payload(bob, channel, ts, "grantflow_approve"))
    slack.stop()

Behaviour reproduced (sources: api.slack.com method pages, ``../shared/notes/integrations.md``, the Web API
spec in ``../shared/specs/slack-web-openapi-v2.json`` for method and field names):

- ``GET`` or ``POST /api/<method>`` with arguments in the query string, a form body
  (``application/x-www-form-urlencoded`` or multipart) or a JSON body. Form-encoded ``blocks``, ``view``
  and ``metadata`` are JSON strings; JSON bodies carry them as values. Errors are HTTP 200
  ``{"ok": false, "error": …}``, as Slack sends them; unknown methods get 404 ``unknown_method``.
- Auth: ``Authorization: Bearer <token>`` or a ``token`` argument (not inside a JSON body: Slack ignores it
  there). None → ``not_authed``; unknown → ``invalid_auth``. The app-level token (``xapp-``) is accepted only
  by ``apps.connections.open`` (and ``auth.test``), which accepts nothing else: ``not_allowed_token_type``.
- ``chat.postMessage`` / ``chat.update`` / ``chat.postEphemeral`` check Block Kit as Slack does and answer
  ``invalid_blocks`` with ``errors`` and ``response_metadata.messages`` naming the JSON pointer
  (``must be less than 3001 characters [json-pointer:/blocks/0/text/text]``): at most 50 blocks, section
  text ≤ 3000, fields ≤ 10 of ≤ 2000, header ≤ 150, button text ≤ 75, value ≤ 2000, url ≤ 3000,
  ``block_id`` ≤ 255 and unique in the message, ``action_id`` ≤ 255 and unique within its block, text
  objects non-empty, unknown block types and unknown keys refused. ``text`` over 40,000 characters →
  ``msg_too_long``; neither text nor blocks → ``no_text``; blocks without ``text`` are accepted with the
  warning ``missing_text`` (recorded on the call), as Slack does. A user id as ``channel`` posts to the
  DM with that user. ``metadata`` must be ``{event_type, event_payload}`` (``invalid_metadata_format``)
  and is stored with the message. ``chat.update`` of an unknown ts → ``message_not_found``.
- ``conversations.history``: newest first, ``limit`` (default 100, at most 999), ``oldest``/``latest``/
  ``inclusive``, cursor paging (``response_metadata.next_cursor``, ``has_more``). Message ``metadata`` is
  returned only with ``include_all_metadata`` — the strict reading of Slack's docs, so a caller that
  forgets the flag fails here rather than in production.
- ``conversations.open`` (one DM ``D…`` per user; ``already_open`` afterwards), ``users.lookupByEmail``
  (``users_not_found``), ``users.info`` (``user_not_found``), ``auth.test``, ``views.open`` (a
  ``trigger_id`` issued by the driver, valid once for 3 s: ``invalid_trigger_id``/``expired_trigger_id``/
  ``exchanged_trigger_id``; the view is checked: title ≤ 24, ≤ 100 blocks, ``private_metadata`` ≤ 3000 …,
  errors as ``invalid_arguments`` with ``response_metadata.messages``).
- Socket Mode: ``apps.connections.open`` returns a single-use ``ws://127.0.0.1:PORT/link/?ticket=…`` URL.
  On connect the server sends ``hello``; ``deliver_socket`` sends an envelope (``slash_commands``,
  ``interactive``, ``events_api``) to the newest connection and records whether the app acked it with
  ``{"envelope_id": …}`` (and the ack's payload). ``disconnect_socket`` sends Slack's ``disconnect``
  message, after which clients reconnect through ``apps.connections.open``.
- ``response_url``\\ s issued by the driver are served at ``/_sandbox/response/<token>``: at most 5 uses,
  ``replace_original``/``delete_original`` change the message, everything is recorded in ``responses``.

Test hooks: ``fail_next(method, status=429|503|…)`` answers the next calls of a method with that status
(429 carries ``Retry-After``, 1 s unless given) or, with ``status=200``, with ``{"ok": false, "error":
error}``; ``after_write=True`` runs the call first. ``drop_next(method, after_write=False|True)`` closes the
connection without any response, before the call is applied or after it was (the message is stored). Every
call is recorded in ``calls`` (tokens left out). An injectable ``clock`` makes message timestamps (``ts``)
and trigger expiry deterministic; timestamps stay unique and increasing even when the clock stands still.

Why aiohttp and not the Starlette + ``BackgroundServer`` pair the hoop stand-in uses: uvicorn there runs
without a WebSocket library, and ASGI offers no way to close a connection without answering, which the
dropped-connection faults need. aiohttp is installed anyway (slack_sdk's ``AsyncWebClient`` runs on it).
One lock guards all state: HTTP handlers run on the server's thread, the helpers on the caller's.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import httpx
from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

LOOPBACK = "127.0.0.1"
DEFAULT_BOT_TOKEN = "xoxb-sandbox-0000-grantflow"
# The bot scopes the stand-in's token has unless told otherwise (grantflow's manifest asks for these).
# Slack names a token's scopes in the ``X-OAuth-Scopes`` header of every Web API answer ("Working with
# scopes", https://api.slack.com/docs/oauth-scopes); grantflow's start-up check reads it from auth.test.
STATE_VERSION = 1
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
DEFAULT_BOT_SCOPES = (
    "chat:write",
    "chat:write.public",
    "commands",
    "im:history",
    "im:write",
    "users:read",
    "users:read.email",
)
DEFAULT_APP_TOKEN = "xapp-1-A0GRANTFLOW-sandbox"
DEFAULT_SIGNING_SECRET = "sandbox-signing-secret"
TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "grantflow-sandbox"
TEAM_NAME = "grantflow sandbox"
APP_ID = "A0GRANTFLOW"
BOT_ID = "B0GRANTFLOW"
BOT_USER_ID = "U0GRANTFLOW"
BOT_NAME = "grantflow"

# Slack's limits, kept here independently of the adapter's own copy so that each checks the other.
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_ID = 255
MAX_LABEL = 2000
MAX_MARKDOWN_BLOCK = 12_000
MAX_MESSAGE_TEXT = 40_000
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
MAX_HISTORY_LIMIT = 999
DEFAULT_HISTORY_LIMIT = 100
TRIGGER_TTL = timedelta(seconds=3)
RESPONSE_URL_USES = 5
SIGNATURE_MAX_AGE = 60 * 5

_SOCKET_TYPES = ("slash_commands", "interactive", "events_api")


class Call(NamedTuple):
    """One Web API call, as recorded for assertions."""

    method: str  # the Web API method, e.g. "chat.postMessage"
    params: dict[str, Any]  # arguments as parsed (``blocks``/``view``/``metadata`` decoded), no token
    status: int | None  # HTTP status; None when the connection was dropped without an answer
    response: Any = None  # the JSON answered, or None
    injected: str | None = None  # "fault" or "drop" when a test hook decided the outcome
    http_method: str = "POST"
    warnings: tuple[str, ...] = ()  # Slack's warnings, e.g. "missing_text"


@dataclass
class SocketEnvelope:
    """One envelope sent over Socket Mode, and whether (and with what) the app acknowledged it."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    acked: bool = False
    ack_payload: dict[str, Any] | None = None
    _event: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)

    def wait_ack(self, timeout: float = 5.0) -> bool:
        return self._event.wait(timeout)


@dataclass
class _Fault:
    method: str
    kind: str  # "status" | "drop"
    status: int
    retry_after: float | None
    error: str
    after_write: bool
    remaining: int


class _SlackFail(Exception):
    """A Web API error answer: ``{"ok": false, "error": error, **extra}`` with HTTP ``status``."""

    def __init__(self, error: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    opened_at: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes")


def _ts_to_micros(ts: str) -> int:
    whole, _, frac = ts.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(ts)
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


def _micros_to_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


# --------------------------------------------------------------------------------------------- Block Kit


class _BlockChecker:
    """Slack's Block Kit validation, the part grantflow can trip over. Errors are Slack's sentences with a
    JSON pointer, e.g. ``must be less than 76 characters [json-pointer:/blocks/2/elements/0/text/text]``."""

    _BLOCK_KEYS: dict[str, set[str]] = {
        "section": {"type", "block_id", "text", "fields", "accessory", "expand"},
        "header": {"type", "block_id", "text"},
        "divider": {"type", "block_id"},
        "context": {"type", "block_id", "elements"},
        "actions": {"type", "block_id", "elements"},
        "input": {"type", "block_id", "label", "element", "hint", "optional", "dispatch_action"},
        "image": {"type", "block_id", "image_url", "alt_text", "title", "slack_file"},
        "markdown": {"type", "block_id", "text"},
        "rich_text": {"type", "block_id", "elements"},
    }
    _BUTTON_KEYS = {"type", "text", "action_id", "url", "value", "style", "confirm", "accessibility_label"}
    _CONFIRM_KEYS = {"title", "text", "confirm", "deny", "style"}

    def __init__(self) -> None:
        self.errors: list[str] = []

    def _err(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def _max(self, value: str, limit: int, pointer: str) -> None:
        if len(value) > limit:
            self._err(f"must be less than {limit + 1} characters", pointer)

    def _keys(self, obj: dict[str, Any], allowed: set[str], pointer: str) -> None:
        for key in obj:
            if key not in allowed:
                self._err(f"invalid additional property: {key}", pointer)

    def text_object(
        self, obj: Any, pointer: str, *, limit: int, plain_only: bool = False, required: bool = True
    ) -> None:
        if obj is None:
            if required:
                self._err("missing required field: text", pointer)
            return
        if not isinstance(obj, dict):
            self._err("must provide an object", pointer)
            return
        kind = obj.get("type")
        allowed_types = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if kind not in allowed_types:
            self._err(f"must be one of {', '.join(allowed_types)}", f"{pointer}/type")
        self._keys(obj, {"type", "text", "emoji", "verbatim"}, pointer)
        text = obj.get("text")
        if not isinstance(text, str):
            self._err("must provide a string", f"{pointer}/text")
            return
        if not text:
            self._err("must be more than 0 characters", f"{pointer}/text")
        self._max(text, limit, f"{pointer}/text")

    def element(self, el: Any, pointer: str, action_ids: set[str] | None) -> None:
        if not isinstance(el, dict) or not isinstance(el.get("type"), str):
            self._err("must provide an object with a type", pointer)
            return
        action_id = el.get("action_id")
        if action_id is not None:
            if not isinstance(action_id, str) or not action_id:
                self._err("must provide a non-empty string", f"{pointer}/action_id")
            else:
                self._max(action_id, MAX_ID, f"{pointer}/action_id")
                if action_ids is not None:
                    if action_id in action_ids:
                        self._err(f"duplicate action_id: {action_id}", f"{pointer}/action_id")
                    action_ids.add(action_id)
        if el["type"] == "button":
            self._keys(el, self._BUTTON_KEYS, pointer)
            self.text_object(el.get("text"), f"{pointer}/text", limit=MAX_BUTTON_TEXT, plain_only=True)
            value = el.get("value")
            if value is not None:
                if not isinstance(value, str):
                    self._err("must provide a string", f"{pointer}/value")
                else:
                    self._max(value, MAX_BUTTON_VALUE, f"{pointer}/value")
            url = el.get("url")
            if url is not None:
                self._max(str(url), MAX_URL, f"{pointer}/url")
            style = el.get("style")
            if style is not None and style not in ("primary", "danger"):
                self._err("must be one of primary, danger", f"{pointer}/style")
            confirm = el.get("confirm")
            if confirm is not None:
                self.confirm(confirm, f"{pointer}/confirm")
        elif el["type"] == "plain_text_input":
            max_length = el.get("max_length")
            if max_length is not None and (not isinstance(max_length, int) or not 1 <= max_length <= 3000):
                self._err("must be between 1 and 3000", f"{pointer}/max_length")

    def confirm(self, obj: Any, pointer: str) -> None:
        if not isinstance(obj, dict):
            self._err("must provide an object", pointer)
            return
        self._keys(obj, self._CONFIRM_KEYS, pointer)
        self.text_object(obj.get("title"), f"{pointer}/title", limit=100, plain_only=True)
        self.text_object(obj.get("text"), f"{pointer}/text", limit=300)
        self.text_object(obj.get("confirm"), f"{pointer}/confirm", limit=30, plain_only=True)
        self.text_object(obj.get("deny"), f"{pointer}/deny", limit=30, plain_only=True)

    def blocks(self, blocks: Any, *, max_blocks: int, pointer: str = "/blocks") -> None:
        if not isinstance(blocks, list):
            self._err("must provide an array", pointer)
            return
        if len(blocks) > max_blocks:
            self._err(f"must be less than {max_blocks + 1} items", pointer)
        block_ids: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(block, f"{pointer}/{i}", block_ids)

    def block(self, block: Any, pointer: str, block_ids: set[str]) -> None:
        if not isinstance(block, dict):
            self._err("must provide an object", pointer)
            return
        kind = block.get("type")
        if kind not in self._BLOCK_KEYS:
            self._err(f"unsupported type: {kind}", f"{pointer}/type")
            return
        self._keys(block, self._BLOCK_KEYS[kind], pointer)
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id:
                self._err("must provide a non-empty string", f"{pointer}/block_id")
            else:
                self._max(block_id, MAX_ID, f"{pointer}/block_id")
                if block_id in block_ids:
                    self._err(f"duplicate block_id: {block_id}", f"{pointer}/block_id")
                block_ids.add(block_id)
        if kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                self._err("must provide either text or fields", pointer)
            if text is not None:
                self.text_object(text, f"{pointer}/text", limit=MAX_SECTION_TEXT)
            if fields is not None:
                if not isinstance(fields, list):
                    self._err("must provide an array", f"{pointer}/fields")
                else:
                    if len(fields) > MAX_FIELDS:
                        self._err(f"must be less than {MAX_FIELDS + 1} items", f"{pointer}/fields")
                    for j, f in enumerate(fields):
                        self.text_object(f, f"{pointer}/fields/{j}", limit=MAX_FIELD_TEXT)
            if block.get("accessory") is not None:
                self.element(block["accessory"], f"{pointer}/accessory", set())
        elif kind == "header":
            self.text_object(block.get("text"), f"{pointer}/text", limit=MAX_HEADER_TEXT, plain_only=True)
        elif kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                self._err("must provide a non-empty string", f"{pointer}/text")
            else:
                self._max(text, MAX_MARKDOWN_BLOCK, f"{pointer}/text")
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self._err("must provide a non-empty array", f"{pointer}/elements")
                return
            if len(elements) > MAX_CONTEXT_ELEMENTS:
                self._err(f"must be less than {MAX_CONTEXT_ELEMENTS + 1} items", f"{pointer}/elements")
            for j, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") == "image":
                    continue
                self.text_object(el, f"{pointer}/elements/{j}", limit=MAX_FIELD_TEXT)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self._err("must provide a non-empty array", f"{pointer}/elements")
                return
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                self._err(f"must be less than {MAX_ACTIONS_ELEMENTS + 1} items", f"{pointer}/elements")
            action_ids: set[str] = set()
            for j, el in enumerate(elements):
                self.element(el, f"{pointer}/elements/{j}", action_ids)
        elif kind == "input":
            self.text_object(block.get("label"), f"{pointer}/label", limit=MAX_LABEL, plain_only=True)
            if block.get("hint") is not None:
                self.text_object(block["hint"], f"{pointer}/hint", limit=MAX_LABEL, plain_only=True)
            if block.get("element") is None:
                self._err("missing required field: element", pointer)
            else:
                self.element(block["element"], f"{pointer}/element", set())

    def view(self, view: Any) -> None:
        if not isinstance(view, dict):
            self._err("must provide an object", "/view")
            return
        allowed = {
            "type",
            "title",
            "blocks",
            "close",
            "submit",
            "private_metadata",
            "callback_id",
            "clear_on_close",
            "notify_on_close",
            "external_id",
            "submit_disabled",
        }
        self._keys(view, allowed, "/view")
        if view.get("type") != "modal":
            self._err("must be one of modal", "/view/type")
        self.text_object(view.get("title"), "/view/title", limit=MAX_VIEW_TITLE, plain_only=True)
        for key in ("close", "submit"):
            if view.get(key) is not None:
                self.text_object(view[key], f"/view/{key}", limit=MAX_VIEW_TITLE, plain_only=True)
        blocks = view.get("blocks")
        self.blocks(blocks, max_blocks=MAX_VIEW_BLOCKS, pointer="/view/blocks")
        if (
            isinstance(blocks, list)
            and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
            and view.get("submit") is None
        ):
            self._err("must provide submit when the view has input blocks", "/view/submit")
        for key, limit in (("private_metadata", MAX_PRIVATE_METADATA), ("callback_id", MAX_ID)):
            value = view.get(key)
            if value is not None:
                if not isinstance(value, str):
                    self._err("must provide a string", f"/view/{key}")
                else:
                    self._max(value, limit, f"/view/{key}")


def block_kit_errors(blocks: Any = None, *, view: Any = None) -> list[str]:
    """What Slack would answer about these message ``blocks`` (or this modal ``view``): the sentences of
    ``invalid_blocks``/``invalid_arguments``, empty when Slack would accept them. For template tests."""
    checker = _BlockChecker()
    if view is not None:
        checker.view(view)
    else:
        checker.blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
    return checker.errors


# --------------------------------------------------------------------------------------------- the server


class _LoopThread:
    """An aiohttp application on its own event loop in a daemon thread, bound to 127.0.0.1 only."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def start(self, port: int, timeout: float = 10.0) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            runner = web.AppRunner(self._app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._runner = runner

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"slack-standin-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            sock.close()
            raise RuntimeError(f"Slack stand-in did not start on port {self.port}") from (
                failure[0] if failure else None
            )
        return self.port

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        runner = self._runner
        if runner is not None and self.loop.is_running():
            try:
                self.run(runner.cleanup(), timeout)
            except Exception:  # the server is going away either way
                pass
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self.loop.is_running():
            self.loop.close()
        self._thread = None


class SlackStandIn:
    """Slack's Web API and Socket Mode, in process. See the module docstring for the behaviour."""

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
        self._clock = clock or _utcnow
        self._lock = threading.RLock()
        self._seq = 0
        self._last_ts = 0
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._dms: dict[str, str] = {}  # user id -> DM channel id
        self._views: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, dict[str, Any]] = {}
        self._response_urls: dict[str, dict[str, Any]] = {}
        self._tickets: set[str] = set()
        self._sockets: list[_Socket] = []
        self._socket_connects = 0
        self._faults: list[_Fault] = []
        self.calls: list[Call] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.envelopes: list[SocketEnvelope] = []
        self._server: _LoopThread | None = None
        self._url: str | None = None
        bot = self._user_record(BOT_USER_ID, f"{BOT_NAME}@bots.invalid", BOT_NAME, bot=True)
        self._users[BOT_USER_ID] = bot
        self.state_file = Path(state_file) if state_file is not None else None
        if self.state_file is not None and self.state_file.exists():
            self._load(json.loads(self.state_file.read_text()))

    # ------------------------------------------------------------------ kept state

    def _save(self) -> None:
        """Write users, channels (messages included) and DMs atomically (a rename)."""
        if self.state_file is None:
            return
        with self._lock:
            channels = {cid: {**c, "members": sorted(c["members"])} for cid, c in self._channels.items()}
            state = {
                "version": STATE_VERSION,
                "seq": self._seq,
                "last_ts": self._last_ts,
                "users": self._users,
                "channels": channels,
                "dms": self._dms,
            }
            text = json.dumps(state, sort_keys=True)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state_file)

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_file}: unknown state version {state.get('version')!r}")
        self._seq, self._last_ts = int(state["seq"]), int(state["last_ts"])
        self._users = dict(state["users"])
        self._channels = {cid: {**c, "members": set(c["members"])} for cid, c in state["channels"].items()}
        self._dms = dict(state["dms"])

    # ------------------------------------------------------------------ lifecycle

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (a free port when 0); returns the base URL. Clients use ``api_url``."""
        if self._server is not None:
            raise RuntimeError("the Slack stand-in is already running")
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_post("/_sandbox/response/{token}", self._handle_response_url)
        server = _LoopThread(app)
        bound = server.start(port)
        self._server = server
        self._url = f"http://{LOOPBACK}:{bound}"
        return self._url

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                server.run(sock.ws.close(code=1001, message=b"server shutting down"), 2.0)
            except Exception:  # already gone
                pass
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
        return self._clock()

    # ------------------------------------------------------------------ seeding

    def add_user(self, email: str, name: str, *, deleted: bool = False) -> str:
        """A workspace member; returns the Slack user id (``U…``). Adding a known email updates it."""
        with self._lock:
            for user in self._users.values():
                if user["profile"]["email"].lower() == email.lower():
                    user["real_name"] = user["profile"]["real_name"] = name
                    user["deleted"] = deleted
                    return str(user["id"])
            user_id = self._new_id("U")
            self._users[user_id] = self._user_record(user_id, email, name, deleted=deleted)
            self._save()
            return user_id

    def add_channel(self, name: str, *, members: Iterable[str] = (), bot_is_member: bool = True) -> str:
        """A public channel (``C…``); the bot must be a member to post there (``not_in_channel``)."""
        with self._lock:
            channel_id = self._new_id("C")
            members_set = set(members) | ({BOT_USER_ID} if bot_is_member else set())
            self._channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "kind": "channel",
                "members": members_set,
                "messages": [],
            }
            self._save()
            return channel_id

    # ------------------------------------------------------------------ inspection

    def dm_channel(self, user_id: str) -> str:
        """The id of the bot's DM with ``user_id`` (opened now if it was not yet, as Slack would)."""
        with self._lock:
            if user_id not in self._users:
                raise KeyError(f"no Slack user {user_id}")
            return self._open_dm(user_id)[0]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Stored messages (copies, with their ``channel``), oldest first; all channels when None."""
        with self._lock:
            chans = [self._channels[channel]] if channel is not None else list(self._channels.values())
            out = [{**copy.deepcopy(m), "channel": c["id"]} for c in chans for m in c["messages"]]
            return sorted(out, key=lambda m: _ts_to_micros(m["ts"]))

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._lock:
            found = self._find_message(channel, ts)
            if found is None:
                raise KeyError(f"no message {ts} in {channel}")
            return {**copy.deepcopy(found), "channel": channel}

    def views(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """Views opened with ``views.open`` (copies), oldest first."""
        with self._lock:
            return [copy.deepcopy(v) for v in self._views.values() if user_id in (None, v["user_id"])]

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def user_id(self, email: str) -> str:
        with self._lock:
            for user in self._users.values():
                if user["profile"]["email"].lower() == email.lower():
                    return str(user["id"])
        raise KeyError(email)

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
        with self._lock:
            self._faults.append(
                _Fault(method, "status", status, retry_after, error or default_error, after_write, count)
            )

    def drop_next(self, method: str, *, after_write: bool = False, count: int = 1) -> None:
        """Close the connection of the next ``count`` calls of ``method`` without any response: before
        the call is applied, or after (``after_write=True``: the message was stored, the reply is lost)."""
        with self._lock:
            self._faults.append(_Fault(method, "drop", 0, None, "", after_write, count))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ driver support

    def issue_trigger_id(self, user_id: str) -> str:
        """A ``trigger_id`` as Slack puts in an interaction: valid once, for 3 seconds (on ``clock``)."""
        with self._lock:
            self._seq += 1
            trigger = f"{self._seq}.{int(self.now().timestamp())}.{secrets.token_hex(16)}"
            self._triggers[trigger] = {"user_id": user_id, "issued_at": self.now(), "used": False}
            return trigger

    def issue_response_url(self, channel: str, message_ts: str | None, user_id: str) -> str:
        with self._lock:
            token = secrets.token_urlsafe(16)
            self._response_urls[token] = {
                "channel": channel,
                "message_ts": message_ts,
                "user_id": user_id,
                "uses": 0,
            }
            return f"{self.url}/_sandbox/response/{token}"

    # ------------------------------------------------------------------ Socket Mode

    @property
    def socket_connections(self) -> int:
        """Socket Mode connections open now."""
        with self._lock:
            return len(self._sockets)

    @property
    def socket_connects(self) -> int:
        """Socket Mode connections accepted since the start (reconnections included)."""
        with self._lock:
            return self._socket_connects

    def wait_for_socket(self, timeout: float = 5.0, *, count: int = 1) -> None:
        """Wait until at least ``count`` Socket Mode connections are open."""
        deadline = time.monotonic() + timeout
        while self.socket_connections < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Socket Mode connection within {timeout}s")
            time.sleep(0.01)

    def deliver_socket(
        self, envelope_type: str, payload: Mapping[str, Any], *, timeout: float = 5.0
    ) -> SocketEnvelope:
        """Send an envelope to the newest Socket Mode connection and wait up to ``timeout`` seconds for
        its ack. Returns the envelope record; ``acked`` says whether the app acknowledged it in time."""
        if envelope_type not in _SOCKET_TYPES:
            raise ValueError(f"envelope type must be one of {', '.join(_SOCKET_TYPES)}")
        server = self._server
        with self._lock:
            if server is None or not self._sockets:
                raise RuntimeError("no Socket Mode connection: start the app's SocketModeHandler first")
            ws = self._sockets[-1].ws
            envelope = SocketEnvelope(str(uuid.uuid4()), envelope_type, dict(payload))
            self.envelopes.append(envelope)
        accepts_response = envelope_type == "slash_commands" or (
            envelope_type == "interactive" and payload.get("type") in ("view_submission", "block_suggestion")
        )
        message = {
            "envelope_id": envelope.envelope_id,
            "payload": envelope.payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response,
        }
        if envelope_type == "events_api":
            message.update(retry_attempt=0, retry_reason="")
        server.run(ws.send_str(json.dumps(message)), timeout)
        envelope.wait_ack(timeout)
        return envelope

    def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Send Slack's ``disconnect`` message to every connection (clients then reconnect)."""
        server = self._server
        with self._lock:
            sockets = list(self._sockets)
        if server is None:
            return
        body = json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sandbox"}})
        for sock in sockets:
            server.run(sock.ws.send_str(body))

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            return web.Response(status=401, text="invalid or used ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        entry = _Socket(ws, time.monotonic())
        with self._lock:
            self._sockets.append(entry)
            self._socket_connects += 1
            count = len(self._sockets)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": count,
                    "debug_info": {"host": "applink-sandbox", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and isinstance(data.get("envelope_id"), str):
                    self._ack(data["envelope_id"], data.get("payload"))
        finally:
            with self._lock:
                if entry in self._sockets:
                    self._sockets.remove(entry)
        return ws

    def _ack(self, envelope_id: str, payload: Any) -> None:
        with self._lock:
            for envelope in self.envelopes:
                if envelope.envelope_id == envelope_id and not envelope.acked:
                    envelope.acked = True
                    envelope.ack_payload = payload if isinstance(payload, dict) else None
                    envelope._event.set()

    # ------------------------------------------------------------------ response_url

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        with self._lock:
            entry = self._response_urls.get(token)
            if entry is None:
                return web.Response(status=404, text="expired_url")
            if entry["uses"] >= RESPONSE_URL_USES:
                return web.Response(status=404, text="used_url")
            entry["uses"] += 1
            self.responses.append({"url_token": token, **entry, "body": body})
            message = (
                self._find_message(entry["channel"], entry["message_ts"]) if entry["message_ts"] else None
            )
            if isinstance(body, dict) and message is not None:
                if _truthy(body.get("delete_original", False)):
                    chan = self._channels[entry["channel"]]
                    chan["messages"] = [m for m in chan["messages"] if m is not message]
                elif _truthy(body.get("replace_original", False)):
                    if "blocks" in body:
                        checker = _BlockChecker()
                        checker.blocks(body["blocks"], max_blocks=MAX_MESSAGE_BLOCKS)
                        if checker.errors:
                            return web.Response(status=400, text="invalid_blocks")
                        message["blocks"] = body["blocks"]
                    message["text"] = body.get("text", message["text"])
        return web.Response(text="ok")

    # ------------------------------------------------------------------ Web API

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params, header_token, parse_error = await self._parse(request)
        recorded = {k: v for k, v in params.items() if k != "token"}
        with self._lock:
            fault = self._take_fault(method)
        if fault is not None and not fault.after_write:
            return self._inject(request, method, recorded, fault)
        with self._lock:
            status, body, warnings = self._dispatch(method, params, header_token, parse_error)
            if method not in _READ_METHODS:
                self._save()
        if fault is not None:
            return self._inject(request, method, recorded, fault)
        with self._lock:
            self.calls.append(Call(method, recorded, status, body, None, request.method, warnings))
        return web.json_response(body, status=status, headers={"X-OAuth-Scopes": ",".join(self.scopes)})

    def _inject(
        self, request: web.Request, method: str, params: dict[str, Any], fault: _Fault
    ) -> web.StreamResponse:
        if fault.kind == "drop":
            with self._lock:
                self.calls.append(Call(method, params, None, None, "drop", request.method))
            transport = request.transport
            if transport is not None:
                transport.close()
            return web.Response()
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        if fault.status >= 500:
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

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    async def _parse(request: web.Request) -> tuple[dict[str, Any], str | None, str | None]:
        params: dict[str, Any] = dict(request.query)
        auth = request.headers.get("Authorization", "")
        header_token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        parse_error = None
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                raw = await request.read()
                try:
                    data = json.loads(raw or b"{}")
                except ValueError:
                    parse_error = "invalid_json"
                else:
                    if isinstance(data, dict):
                        data.pop("token", None)  # Slack does not read a token from a JSON body
                        params.update(data)
                    else:
                        parse_error = "json_not_object"
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
            else:
                await request.read()
                parse_error = "invalid_form_data"
        for key in ("blocks", "view", "metadata"):
            value = params.get(key)
            if isinstance(value, str) and value.strip():
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = _Unparsable(value)
        return params, header_token, parse_error

    def _dispatch(
        self, method: str, params: dict[str, Any], header_token: str | None, parse_error: str | None
    ) -> tuple[int, dict[str, Any], tuple[str, ...]]:
        warnings: list[str] = []
        try:
            handler = self._METHODS.get(method)
            if handler is None:
                raise _SlackFail("unknown_method", status=404, req_method=method)
            if parse_error is not None:
                raise _SlackFail(parse_error)
            token = header_token or params.get("token")
            if not token:
                raise _SlackFail("not_authed")
            if token == self.bot_token:
                kind = "bot"
            elif self.app_token is not None and token == self.app_token:
                kind = "app"
            else:
                raise _SlackFail("invalid_auth")
            needs_app = method == "apps.connections.open"
            if (kind == "app") != needs_app and method != "auth.test":
                raise _SlackFail("not_allowed_token_type")
            body = handler(self, params, kind, warnings)
            body = {"ok": True, **body}
            if warnings:
                body["warning"] = ",".join(warnings)
                body.setdefault("response_metadata", {})["warnings"] = list(warnings)
            return 200, body, tuple(warnings)
        except _SlackFail as fail:
            return fail.status, {"ok": False, "error": fail.error, **fail.extra}, tuple(warnings)

    # ------------------------------------------------------------------ methods

    def _m_auth_test(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        base = {"url": f"https://{TEAM_DOMAIN}.slack.com/", "team": TEAM_NAME, "team_id": TEAM_ID}
        if kind == "app":
            return {**base, "app_id": APP_ID}
        return {
            **base,
            "user": BOT_NAME,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        query = urlencode({"ticket": ticket, "app_id": APP_ID})
        return {"url": f"ws://{LOOPBACK}:{self._port()}/link/?{query}"}

    def _m_conversations_open(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        if p.get("channel"):
            chan = self._channels.get(str(p["channel"]))
            if chan is None:
                raise _SlackFail("channel_not_found")
            return {"channel": {"id": chan["id"]}}
        users = p.get("users")
        if isinstance(users, list):
            ids = [str(u) for u in users]
        else:
            ids = [u.strip() for u in str(users or "").split(",") if u.strip()]
        if not ids:
            raise _SlackFail("users_list_not_supplied")
        if len(ids) > 1:
            raise _SlackFail("method_not_supported_for_channel_type")  # group DMs: not modelled here
        user = self._users.get(ids[0])
        if user is None:
            raise _SlackFail("user_not_found")
        if user["deleted"]:
            raise _SlackFail("user_disabled")
        channel_id, existed = self._open_dm(ids[0])
        out: dict[str, Any] = {"channel": {"id": channel_id}}
        if _truthy(p.get("return_im", False)):
            out["channel"].update(is_im=True, user=ids[0], is_open=True, created=0)
        if existed:
            out.update(no_op=True, already_open=True)
        return out

    def _m_users_lookupByEmail(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        email = str(p.get("email") or "")
        if not email:
            raise _SlackFail("invalid_arguments", response_metadata={"messages": ["[ERROR] missing email"]})
        for user in self._users.values():
            if not user["is_bot"] and user["profile"]["email"].lower() == email.lower():
                return {"user": copy.deepcopy(user)}
        raise _SlackFail("users_not_found")

    def _m_users_info(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        user = self._users.get(str(p.get("user") or ""))
        if user is None:
            raise _SlackFail("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _check_message(self, p: dict[str, Any], warnings: list[str], *, require_content: bool = True) -> None:
        blocks = p.get("blocks")
        text = p.get("text")
        if isinstance(blocks, _Unparsable):
            raise _SlackFail("invalid_blocks_format")
        if blocks is not None and blocks != []:
            checker = _BlockChecker()
            checker.blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
            if checker.errors:
                raise _SlackFail(
                    "invalid_blocks",
                    errors=checker.errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in checker.errors]},
                )
        if text is not None and not isinstance(text, str):
            raise _SlackFail("invalid_arguments")
        if text and len(text) > MAX_MESSAGE_TEXT:
            raise _SlackFail("msg_too_long")
        has_blocks = bool(blocks)
        if require_content and not text and not has_blocks and not p.get("attachments"):
            raise _SlackFail("no_text")
        if has_blocks and not text:
            warnings.append("missing_text")

    def _metadata(self, p: dict[str, Any]) -> dict[str, Any] | None:
        metadata = p.get("metadata")
        if metadata is None or metadata == "":
            return None
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not metadata["event_type"]
            or not isinstance(metadata.get("event_payload"), dict)
            or set(metadata) - {"event_type", "event_payload"}
        ):
            raise _SlackFail("invalid_metadata_format")
        return {
            "event_type": metadata["event_type"],
            "event_payload": copy.deepcopy(metadata["event_payload"]),
        }

    def _m_chat_postMessage(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        chan = self._resolve_channel(p.get("channel"))
        self._check_message(p, warnings)
        metadata = self._metadata(p)
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": p.get("text") or "",
            "ts": self._next_ts(),
            "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME, "team_id": TEAM_ID},
        }
        if p.get("blocks"):
            message["blocks"] = copy.deepcopy(p["blocks"])
        if metadata is not None:
            message["metadata"] = metadata
        if p.get("thread_ts"):
            if self._find_message(chan["id"], str(p["thread_ts"])) is None:
                raise _SlackFail("thread_not_found")
            message["thread_ts"] = str(p["thread_ts"])
        chan["messages"].append(message)
        return {"channel": chan["id"], "ts": message["ts"], "message": copy.deepcopy(message)}

    def _m_chat_update(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        chan = self._channels.get(str(p.get("channel") or ""))
        if chan is None:
            raise _SlackFail("channel_not_found")
        message = self._find_message(chan["id"], str(p.get("ts") or ""))
        if message is None:
            raise _SlackFail("message_not_found")
        if message.get("user") != BOT_USER_ID:
            raise _SlackFail("cant_update_message")
        self._check_message(p, warnings, require_content=False)
        metadata = self._metadata(p)
        if "text" in p:
            message["text"] = p["text"] or ""
        if "blocks" in p:
            if p["blocks"]:
                message["blocks"] = copy.deepcopy(p["blocks"])
            else:
                message.pop("blocks", None)
        if metadata is not None:
            message["metadata"] = metadata
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        return {
            "channel": chan["id"],
            "ts": message["ts"],
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _m_chat_postEphemeral(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        chan = self._resolve_channel(p.get("channel"))
        user = str(p.get("user") or "")
        if user not in self._users:
            raise _SlackFail("user_not_found")
        if user not in chan["members"]:
            raise _SlackFail("user_not_in_channel")
        self._check_message(p, warnings)
        ts = self._next_ts()
        self.ephemerals.append(
            {
                "channel": chan["id"],
                "user": user,
                "text": p.get("text") or "",
                "blocks": copy.deepcopy(p.get("blocks") or []),
                "ts": ts,
            }
        )
        return {"message_ts": ts}

    def _m_conversations_history(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        chan = self._channels.get(str(p.get("channel") or ""))
        if chan is None:
            raise _SlackFail("channel_not_found")
        if BOT_USER_ID not in chan["members"]:
            raise _SlackFail("not_in_channel")
        try:
            limit = int(p.get("limit") or DEFAULT_HISTORY_LIMIT)
        except (TypeError, ValueError):
            raise _SlackFail("invalid_limit") from None
        limit = max(1, min(limit, MAX_HISTORY_LIMIT))
        inclusive = _truthy(p.get("inclusive", False))
        try:
            oldest = _ts_to_micros(str(p["oldest"])) if p.get("oldest") not in (None, "") else None
        except ValueError:
            raise _SlackFail("invalid_ts_oldest") from None
        try:
            latest = _ts_to_micros(str(p["latest"])) if p.get("latest") not in (None, "") else None
        except ValueError:
            raise _SlackFail("invalid_ts_latest") from None
        start: int | None = None
        if p.get("cursor"):
            try:
                decoded = base64.b64decode(str(p["cursor"]), validate=True).decode()
                prefix, _, value = decoded.partition(":")
                if prefix != "next_ts":
                    raise ValueError(decoded)
                start = _ts_to_micros(value)
            except ValueError:
                raise _SlackFail("invalid_cursor") from None

        def keep(m: dict[str, Any]) -> bool:
            t = _ts_to_micros(m["ts"])
            if oldest is not None and (t < oldest or (t == oldest and not inclusive)):
                return False
            if latest is not None and (t > latest or (t == latest and not inclusive)):
                return False
            return start is None or t <= start

        rows = sorted(
            (m for m in chan["messages"] if keep(m)), key=lambda m: _ts_to_micros(m["ts"]), reverse=True
        )
        page, rest = rows[:limit], rows[limit:]
        with_metadata = _truthy(p.get("include_all_metadata", False))
        messages = []
        for m in page:
            out = copy.deepcopy(m)
            if not with_metadata:
                out.pop("metadata", None)
            messages.append(out)
        next_cursor = base64.b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""
        return {
            "messages": messages,
            "has_more": bool(rest),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _m_views_open(self, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
        trigger_id = str(p.get("trigger_id") or "")
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise _SlackFail("invalid_trigger_id")
        if trigger["used"]:
            raise _SlackFail("exchanged_trigger_id")
        if self.now() - trigger["issued_at"] > TRIGGER_TTL:
            raise _SlackFail("expired_trigger_id")
        view = p.get("view")
        if isinstance(view, _Unparsable):
            messages = ["[ERROR] invalid view JSON"]
            raise _SlackFail("invalid_arguments", response_metadata={"messages": messages})
        checker = _BlockChecker()
        checker.view(view)
        if checker.errors:
            raise _SlackFail(
                "invalid_arguments", response_metadata={"messages": [f"[ERROR] {e}" for e in checker.errors]}
            )
        assert isinstance(view, dict)
        trigger["used"] = True
        view_id = self._new_id("V")
        stored = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "modal",
            "blocks": copy.deepcopy(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(self.now().timestamp())}.{secrets.token_hex(4)}",
            "title": copy.deepcopy(view.get("title")),
            "close": copy.deepcopy(view.get("close")),
            "submit": copy.deepcopy(view.get("submit")),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        self._views[view_id] = {**stored, "user_id": trigger["user_id"]}
        return {"view": copy.deepcopy(stored)}

    _METHODS: dict[str, Callable[[SlackStandIn, dict[str, Any], str, list[str]], dict[str, Any]]] = {
        "auth.test": _m_auth_test,
        "apps.connections.open": _m_apps_connections_open,
        "conversations.open": _m_conversations_open,
        "conversations.history": _m_conversations_history,
        "chat.postMessage": _m_chat_postMessage,
        "chat.update": _m_chat_update,
        "chat.postEphemeral": _m_chat_postEphemeral,
        "users.lookupByEmail": _m_users_lookupByEmail,
        "users.info": _m_users_info,
        "views.open": _m_views_open,
    }

    # ------------------------------------------------------------------ internals

    def _port(self) -> int:
        if self._server is None or self._server.port is None:
            raise RuntimeError("not running")
        return self._server.port

    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq:08d}"

    def _next_ts(self) -> str:
        micros = int(self.now().timestamp() * 1_000_000)
        self._last_ts = max(micros, self._last_ts + 1)
        return _micros_to_ts(self._last_ts)

    @staticmethod
    def _user_record(
        user_id: str, email: str, name: str, *, deleted: bool = False, bot: bool = False
    ) -> dict[str, Any]:
        handle = email.split("@", 1)[0]
        return {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": handle,
            "deleted": deleted,
            "real_name": name,
            "tz": "Europe/London",
            "is_bot": bot,
            "is_app_user": False,
            "profile": {
                "email": email,
                "real_name": name,
                "display_name": handle,
                "real_name_normalized": name,
                "display_name_normalized": handle,
                "team": TEAM_ID,
            },
        }

    def _open_dm(self, user_id: str) -> tuple[str, bool]:
        existing = self._dms.get(user_id)
        if existing is not None:
            return existing, True
        channel_id = self._new_id("D")
        self._channels[channel_id] = {
            "id": channel_id,
            "name": f"dm-{user_id}",
            "kind": "im",
            "members": {user_id, BOT_USER_ID},
            "messages": [],
        }
        self._dms[user_id] = channel_id
        return channel_id, False

    def _resolve_channel(self, value: Any) -> dict[str, Any]:
        name = str(value or "")
        if not name:
            raise _SlackFail("channel_not_found")
        if name in self._users:  # a user id: Slack posts to the DM with that user
            if self._users[name]["deleted"]:
                raise _SlackFail("user_disabled")
            return self._channels[self._open_dm(name)[0]]
        chan = self._channels.get(name)
        if chan is None:
            wanted = name.lstrip("#")
            chan = next(
                (c for c in self._channels.values() if c["kind"] == "channel" and c["name"] == wanted), None
            )
        if chan is None:
            raise _SlackFail("channel_not_found")
        if BOT_USER_ID not in chan["members"]:
            raise _SlackFail("not_in_channel")
        return chan

    def _find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        chan = self._channels.get(channel)
        if chan is None:
            return None
        return next((m for m in chan["messages"] if m["ts"] == ts), None)


class _Unparsable(str):
    """A form argument that should have held JSON and did not."""


# --------------------------------------------------------------------------------------------- the driver


class SlackDriver:
    """Plays Slack's part towards grantflow: what Slack sends when a person clicks, submits a modal or
    types a slash command. Over HTTP the requests are signed as Slack signs them
    (``X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")``, ``X-Slack-Request-Timestamp``);
    ``stale=True`` dates the request six minutes back, ``tampered=True`` changes the body after signing.

    With ``slack`` (the stand-in) attached, the driver behaves like Slack around its own messages: a click
    must name a button present in the stored message (``value`` and ``block_id`` are taken from it when
    not given), trigger ids and response URLs are issued by the stand-in (so ``views.open`` and
    ``respond()`` work), and a submission fills in the opened view's ``callback_id``/``private_metadata``.
    Payload builders are public, so the same events can go over Socket Mode:
    ``slack.deliver_socket("interactive", driver.block_actions_payload(...))``.
    """

    def __init__(
        self,
        signing_secret: str,
        target_url: str | None = None,
        *,
        slack: SlackStandIn | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._secret = signing_secret
        self._verifier = SignatureVerifier(signing_secret)
        self.target_url = target_url
        self.slack = slack
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SlackDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ payloads

    def _user(self, user_id: str) -> dict[str, Any]:
        name = user_id.lower()
        if self.slack is not None:
            with self.slack._lock:
                record = self.slack._users.get(user_id)
                if record is None:
                    raise KeyError(f"no Slack user {user_id}")
                name = record["name"]
        return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}

    def _trigger(self, user_id: str) -> str:
        if self.slack is not None:
            return self.slack.issue_trigger_id(user_id)
        return f"{int(time.time())}.{secrets.token_hex(4)}.{secrets.token_hex(16)}"

    def _response_url(self, channel: str, message_ts: str | None, user_id: str) -> str:
        if self.slack is not None:
            return self.slack.issue_response_url(channel, message_ts, user_id)
        return (
            f"https://hooks.slack.com/actions/{TEAM_ID}/{secrets.randbelow(10**12)}/{secrets.token_hex(12)}"
        )

    def block_actions_payload(
        self,
        user_id: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        *,
        block_id: str | None = None,
        response_url: str | None = None,
    ) -> dict[str, Any]:
        """The ``block_actions`` payload Slack sends when ``user_id`` clicks button ``action_id``."""
        message: dict[str, Any] | None = None
        button: dict[str, Any] | None = None
        if self.slack is not None:
            message = self.slack.message(channel, message_ts)
            message.pop("channel", None)
            message.pop("metadata", None)  # Slack leaves metadata out of interaction payloads
            for block in message.get("blocks", []):
                if block_id is not None and block.get("block_id") != block_id:
                    continue
                elements = block.get("elements", []) if block.get("type") == "actions" else []
                if block.get("type") == "section" and block.get("accessory"):
                    elements = [block["accessory"]]
                for el in elements:
                    if el.get("type") == "button" and el.get("action_id") == action_id:
                        button, block_id = el, block.get("block_id")
                        break
                if button is not None:
                    break
            if button is None:
                raise LookupError(f"message {message_ts} in {channel} has no button {action_id!r} to click")
            if value is None:
                value = button.get("value")
        if block_id is None:
            raise ValueError("block_id is needed when the driver has no stand-in to look the button up in")
        text = (button or {}).get("text") or {"type": "plain_text", "text": action_id, "emoji": True}
        action = {
            "action_id": action_id,
            "block_id": block_id,
            "text": text,
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        if value is not None:
            action["value"] = value
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": "sandbox-verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": self._trigger(user_id),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else channel},
            "state": {"values": {}},
            "response_url": response_url or self._response_url(channel, message_ts, user_id),
            "actions": [action],
        }
        if message is not None:
            payload["message"] = message
        return payload

    def view_submission_payload(
        self,
        user_id: str,
        *,
        view_id: str | None = None,
        values: Mapping[str, Mapping[str, str]] | None = None,
        callback_id: str | None = None,
        private_metadata: str | None = None,
    ) -> dict[str, Any]:
        """The ``view_submission`` payload for a modal: ``values`` maps block_id → action_id → typed text.
        With the stand-in attached the view is the one ``view_id`` names (default: the newest opened for
        ``user_id``) and every value must name one of its input blocks."""
        view: dict[str, Any] = {
            "id": view_id or f"V{secrets.token_hex(5).upper()}",
            "team_id": TEAM_ID,
            "type": "modal",
            "blocks": [],
            "private_metadata": private_metadata or "",
            "callback_id": callback_id or "",
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        if self.slack is not None:
            opened = [v for v in self.slack.views(user_id) if view_id in (None, v["id"])]
            if not opened:
                raise LookupError(f"no view {view_id or '(any)'} was opened for {user_id}")
            stored = opened[-1]
            stored.pop("user_id", None)
            view = {**stored, "hash": view["hash"]}
            if callback_id is not None:
                view["callback_id"] = callback_id
            if private_metadata is not None:
                view["private_metadata"] = private_metadata
        state: dict[str, dict[str, Any]] = {}
        blocks = view.get("blocks", [])
        inputs = {b.get("block_id"): b.get("element", {}) for b in blocks if b.get("type") == "input"}
        for block_id, element in inputs.items():
            if element.get("action_id") and element.get("initial_value") is not None:
                state.setdefault(str(block_id), {})[element["action_id"]] = {
                    "type": element.get("type"),
                    "value": element["initial_value"],
                }
        for block_id, by_action in (values or {}).items():
            for action_id, typed in by_action.items():
                if self.slack is not None:
                    element = inputs.get(block_id)
                    if element is None or element.get("action_id") != action_id:
                        raise LookupError(f"the view has no input {block_id}/{action_id}")
                    kind = element.get("type", "plain_text_input")
                else:
                    kind = "plain_text_input"
                state.setdefault(block_id, {})[action_id] = {"type": kind, "value": typed}
        view["state"] = {"values": state}
        return {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": "sandbox-verification-token",
            "trigger_id": self._trigger(user_id),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }

    def slash_command_payload(
        self, user_id: str, command: str = "/access", text: str = "", *, channel_id: str | None = None
    ) -> dict[str, str]:
        """The fields of a slash command (form fields over HTTP, the payload over Socket Mode)."""
        if channel_id is None:
            channel_id = self.slack.dm_channel(user_id) if self.slack is not None else "D00000000"
        user = self._user(user_id)
        return {
            "token": "sandbox-verification-token",
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": "directmessage" if channel_id.startswith("D") else channel_id,
            "user_id": user_id,
            "user_name": user["name"],
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self._response_url(channel_id, None, user_id),
            "trigger_id": self._trigger(user_id),
        }

    # ------------------------------------------------------------------ signed HTTP

    def signed_headers(self, body: str, *, timestamp: int | None = None) -> dict[str, str]:
        """Slack's request headers for ``body`` (form-encoded), signed with the signing secret."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._verifier.generate_signature(timestamp=ts, body=body)
        assert signature is not None  # None only without a secret
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }

    def post_signed(
        self, body: str, *, url: str | None = None, stale: bool = False, tampered: bool = False
    ) -> httpx.Response:
        target = url or self.target_url
        if target is None:
            raise ValueError("no target_url: give one to SlackDriver or to this call")
        timestamp = int(time.time()) - (SIGNATURE_MAX_AGE + 60 if stale else 0)
        headers = self.signed_headers(body, timestamp=timestamp)
        if tampered:
            body += "&tampered=1"  # signed before the change: the signature no longer matches
        return self._http.post(target, content=body.encode(), headers=headers)

    def click_button(
        self,
        user_id: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        *,
        block_id: str | None = None,
        response_url: str | None = None,
        stale: bool = False,
        tampered: bool = False,
    ) -> httpx.Response:
        payload = self.block_actions_payload(
            user_id, channel, message_ts, action_id, value, block_id=block_id, response_url=response_url
        )
        return self.post_signed(urlencode({"payload": json.dumps(payload)}), stale=stale, tampered=tampered)

    def submit_view(
        self,
        user_id: str,
        *,
        view_id: str | None = None,
        values: Mapping[str, Mapping[str, str]] | None = None,
        callback_id: str | None = None,
        private_metadata: str | None = None,
        stale: bool = False,
        tampered: bool = False,
    ) -> httpx.Response:
        payload = self.view_submission_payload(
            user_id,
            view_id=view_id,
            values=values,
            callback_id=callback_id,
            private_metadata=private_metadata,
        )
        return self.post_signed(urlencode({"payload": json.dumps(payload)}), stale=stale, tampered=tampered)

    def slash_command(
        self,
        user_id: str,
        command: str = "/access",
        text: str = "",
        *,
        channel_id: str | None = None,
        stale: bool = False,
        tampered: bool = False,
    ) -> httpx.Response:
        fields = self.slash_command_payload(user_id, command, text, channel_id=channel_id)
        return self.post_signed(urlencode(fields), stale=stale, tampered=tampered)

    # ------------------------------------------------------------------ Socket Mode

    def deliver_socket(
        self, envelope_type: str, payload: Mapping[str, Any], *, timeout: float = 5.0
    ) -> SocketEnvelope:
        """Send an event over the attached stand-in's Socket Mode connection (see
        :meth:`SlackStandIn.deliver_socket`)."""
        if self.slack is None:
            raise RuntimeError("Socket Mode needs the driver to be attached to a SlackStandIn (slack=…)")
        return self.slack.deliver_socket(envelope_type, payload, timeout=timeout)
