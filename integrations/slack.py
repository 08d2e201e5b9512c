"""grantflow's Slack adapter: post, find and update the messages of a request, map people between the
directory and Slack, and render Block Kit from ``templates/slack/``. No business decisions happen here;
activities call it and decide what to do with its errors.

Retries — one policy in charge. The client is built with **no** retry handlers (slack_sdk's default
``AsyncWebClient`` silently installs ``AsyncConnectionErrorRetryHandler``, which re-sends a
``chat.postMessage`` whose reply was lost and so posts twice; ``AsyncRateLimitErrorRetryHandler`` sleeps
``Retry-After`` uncapped inside the activity, out of sight of Temporal's timeouts and heartbeats).
Failures are mapped instead to the hierarchy below and the activity boundary turns them into
``ApplicationError``\\ s: transient → retryable with ``next_retry_delay=retry_after``; permanent →
non-retryable. Every retry then goes through ``post_once``'s look-up first. ``build_slack_client(...,
max_retries=N)`` can still retry 429s in the client for callers outside Temporal (a 429 guarantees that
nothing was done); 5xx and dropped connections are never retried in the client because the write may
have happened.

Error hierarchy::

    SlackError                    any failure talking to Slack. ``error`` is Slack's code when it sent
    │                             one, ``status`` the HTTP status when there was an answer.
    ├── SlackTransientError       may succeed if retried: 429 (``ratelimited``), 5xx, connection errors
    │                             and timeouts, Slack's ``fatal_error``/``internal_error``/
    │                             ``service_unavailable``/``request_timeout``. ``retry_after`` carries
    │                             Slack's ``Retry-After`` in seconds, if any.
    └── SlackPermanentError       will not change by retrying.
        ├── SlackAuthError        ``not_authed``, ``invalid_auth``, ``token_revoked``, ``missing_scope`` …:
        │                         the bot token is wrong or lacks a scope.
        ├── SlackNotFoundError    ``channel_not_found``, ``message_not_found``, ``user_not_found`` …
        └── SlackRejectedError    Slack refuses the request as sent (``invalid_blocks``, ``msg_too_long``,
                                  ``invalid_metadata_format`` …). ``details`` lists Slack's explanations.

Idempotency. Slack has no idempotency key, so :meth:`SlackChannel.post_once` stores grantflow's key in the
message's ``metadata`` (``event_type`` ``grantflow_message``, ``event_payload.grantflow_key``) and reads
the channel's recent history (``include_all_metadata``) before posting. A retry after a lost reply finds
the first message and returns its ``MessageRef``; activities keep that ref (channel + ts) in workflow
state and later call :meth:`SlackChannel.update`. Residual window: two attempts running at the same time
(a timed-out attempt still in flight while its retry starts) can both miss each other's message.

Rendering. :func:`render_blocks` renders ``templates/slack/<name>.json.j2`` (strict Jinja2; every
interpolated value goes through the ``json`` filter, and text Slack reads as mrkdwn through ``mrkdwn``,
which escapes ``&``, ``<`` and ``>`` so a reason cannot ping ``<!channel>`` or forge a link), then fits the
blocks into Slack's limits (over-long text is cut with "…") and validates them twice: a round trip
through ``slack_sdk.models.blocks`` (which drops unknown block types and keys silently — a difference
is reported) and this module's own checks of the limits slack_sdk does not know (50 blocks, unique
``block_id``, ``action_id`` unique within its block, button ``value`` ≤ 2000).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import aiohttp
import jinja2
from pydantic import BaseModel, ConfigDict
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from domain.approval import open_stage, votes_in_stage
from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import RequestView, Verdict
from integrations.retry_after import parse_retry_after
from templates import template_environment

APPROVE_ACTION = "grantflow_approve"
DENY_ACTION = "grantflow_deny"
OPEN_ACTION = "grantflow_open"
DENY_CALLBACK_ID = "grantflow_deny_reason"
DENY_REASON_BLOCK = "gf_deny_reason"
DENY_REASON_ACTION = "reason"
MESSAGE_EVENT_TYPE = "grantflow_message"

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_CONTEXT_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_MESSAGE_TEXT = 40_000
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
ELLIPSIS = "…"

HISTORY_PAGE_SIZE = 200
HISTORY_SCAN_LIMIT = 1000
"""How many of a channel's newest messages ``post_once`` reads before concluding it never posted."""
USER_ID_TTL = 3600.0
"""How long a Slack user id found by email is trusted (an account rarely changes owner)."""
USER_ID_MEMORY = 10_000
"""How many people's Slack user ids a worker remembers (forgotten all at once beyond that)."""

_TRANSIENT_CODES = frozenset(
    {"ratelimited", "rate_limited", "fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)
_AUTH_CODES = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "org_login_required",
        "ekm_access_denied",
    }
)
_NOT_FOUND_CODES = frozenset(
    {"channel_not_found", "message_not_found", "user_not_found", "users_not_found", "thread_not_found"}
)

T = TypeVar("T")
APPROVE = Verdict.APPROVE


# --------------------------------------------------------------------------------------------- errors


class SlackError(Exception):
    def __init__(self, message: str, *, error: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.status = status


class SlackTransientError(SlackError):
    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, error=error, status=status)
        self.retry_after = retry_after


class SlackPermanentError(SlackError):
    pass


class SlackAuthError(SlackPermanentError):
    pass


class SlackNotFoundError(SlackPermanentError):
    pass


class SlackRejectedError(SlackPermanentError):
    def __init__(
        self, message: str, *, error: str | None = None, status: int | None = None, details: list[str]
    ) -> None:
        super().__init__(message, error=error, status=status)
        self.details = details


class BlockKitError(ValueError):
    """Rendered Block Kit that Slack would refuse even after fitting (a template bug); ``problems`` lists
    each one with its JSON pointer."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    return parse_retry_after(next((v for k, v in headers.items() if k.lower() == "retry-after"), None))


def slack_error(exc: BaseException, doing: str) -> SlackError:
    """The :class:`SlackError` for an exception raised while ``doing`` something (a phrase: "posting to
    D123"). Unknown Slack error codes are permanent: retrying an unknown refusal only repeats it."""
    if isinstance(exc, SlackError):
        return exc
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        headers = getattr(response, "headers", None)
        data = getattr(response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        status = int(status) if status is not None else None
        if status == 429 or (status is not None and status >= 500) or code in _TRANSIENT_CODES:
            what = code or f"HTTP {status}"
            return SlackTransientError(
                f"{doing}: Slack answered {what}",
                error=code,
                status=status,
                retry_after=_retry_after(headers),
            )
        if code is None:
            # an answer that is not Slack's JSON (a proxy's page, a truncated body): worth another try
            return SlackTransientError(f"{doing}: unexpected answer (HTTP {status})", status=status)
        details: list[str] = []
        if isinstance(data, dict):
            details = [str(m) for m in (data.get("response_metadata") or {}).get("messages") or []]
            details = details or [str(e) for e in data.get("errors") or []]
        message = f"{doing}: Slack refused with {code}" + (f" ({'; '.join(details)})" if details else "")
        if code in _AUTH_CODES:
            return SlackAuthError(message, error=code, status=status)
        if code in _NOT_FOUND_CODES:
            return SlackNotFoundError(message, error=code, status=status)
        return SlackRejectedError(message, error=code, status=status, details=details)
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError):
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SlackTransientError(f"{doing}: connection failed ({detail})")
    if isinstance(exc, SlackClientError):
        return SlackRejectedError(f"{doing}: {exc}", details=[str(exc)])
    return SlackError(f"{doing}: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------- client


class MessageRef(BaseModel):
    """A message grantflow posted: kept in workflow state so later changes update it in place."""

    model_config = ConfigDict(frozen=True)

    channel: str
    ts: str


class ChatChannel(Protocol):
    """The chat calls activities make; :class:`SlackChannel` is the Slack implementation."""

    async def user_id_for_email(self, email: str) -> str | None: ...

    async def email_for_user(self, user_id: str) -> str | None: ...

    async def open_dm(self, user_id: str) -> str: ...

    async def post_once(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Mapping[str, Any]],
        *,
        key: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> MessageRef: ...

    async def update(self, ref: MessageRef, text: str, blocks: Sequence[Mapping[str, Any]]) -> MessageRef: ...

    async def post_ephemeral(
        self, channel: str, user: str, text: str, *, blocks: Sequence[Mapping[str, Any]] | None = None
    ) -> str: ...

    async def aclose(self) -> None: ...


def build_slack_client(
    token: str, base_url: str | None = None, *, max_retries: int = 0, timeout: int = 10
) -> AsyncWebClient:
    """An ``AsyncWebClient`` for grantflow. ``base_url`` must end in ``/api/`` (the stand-in's
    ``api_url``). ``max_retries=0`` (the default, and what activities use) turns every client-side retry
    off; a positive value retries only 429s, after ``Retry-After``."""
    handlers: list[AsyncRetryHandler] = []
    if max_retries > 0:
        handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=max_retries))
    return AsyncWebClient(
        token=token,
        base_url=base_url or AsyncWebClient.BASE_URL,
        timeout=timeout,
        retry_handlers=handlers,
    )


def _block_list(blocks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(b) for b in blocks]


class SlackChannel:
    """Slack through one bot token. Safe to call again after any failure: ``post_once`` looks before it
    posts, ``update`` and the look-ups are idempotent."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        history_scan_limit: int = HISTORY_SCAN_LIMIT,
        history_page_size: int = HISTORY_PAGE_SIZE,
    ) -> None:
        self._client = client
        self._scan_limit = history_scan_limit
        self._page_size = history_page_size
        self._dms: dict[str, str] = {}
        # email -> (Slack user id, when learned): a retried activity does not look people up again
        self._user_ids: dict[str, tuple[str, float]] = {}

    @property
    def client(self) -> AsyncWebClient:
        return self._client

    async def _call(self, doing: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            raise slack_error(exc, doing) from exc

    async def bot_user_id(self) -> str:
        """Checks the token (``auth.test``) and returns the bot's user id: a health check."""
        resp = await self._call("checking the bot token", self._client.auth_test())
        return str(resp["user_id"])

    async def user_id_for_email(self, email: str) -> str | None:
        """The Slack user with this email, or None when there is none or the account is deactivated.
        Found ids are remembered for ``USER_ID_TTL`` seconds (who has no account is asked again)."""
        key = email.strip().lower()
        known = self._user_ids.get(key)
        if known is not None and time.monotonic() - known[1] < USER_ID_TTL:
            return known[0]
        try:
            resp = await self._call(f"looking up {email}", self._client.users_lookupByEmail(email=email))
        except SlackNotFoundError:
            return None
        user = resp["user"]
        if user.get("deleted"):
            self._user_ids.pop(key, None)
            return None
        if len(self._user_ids) >= USER_ID_MEMORY:
            self._user_ids.clear()
        self._user_ids[key] = (str(user["id"]), time.monotonic())
        return str(user["id"])

    async def email_for_user(self, user_id: str) -> str | None:
        """The email of a Slack user (None when unknown, or hidden for lack of ``users:read.email``)."""
        try:
            resp = await self._call(f"looking up Slack user {user_id}", self._client.users_info(user=user_id))
        except SlackNotFoundError:
            return None
        email = (resp["user"].get("profile") or {}).get("email")
        return str(email) if email else None

    async def open_dm(self, user_id: str) -> str:
        """The id of the bot's DM channel with ``user_id`` (``D…``), opening it if needed."""
        if user_id in self._dms:
            return self._dms[user_id]
        resp = await self._call(
            f"opening a DM with {user_id}", self._client.conversations_open(users=user_id)
        )
        channel = str(resp["channel"]["id"])
        self._dms[user_id] = channel
        return channel

    async def _conversation(self, channel: str) -> str:
        # a user id cannot be read with conversations.history: talk to their DM instead
        if channel[:1] in ("U", "W"):
            return await self.open_dm(channel)
        return channel

    async def find_posted(self, channel: str, key: str) -> MessageRef | None:
        """The message grantflow posted under ``key`` among the channel's newest ``history_scan_limit``."""
        channel = await self._conversation(channel)
        cursor: str | None = None
        seen = 0
        while seen < self._scan_limit:
            resp = await self._call(
                f"reading the history of {channel}",
                self._client.conversations_history(
                    channel=channel,
                    include_all_metadata=True,
                    limit=min(self._page_size, self._scan_limit - seen),
                    cursor=cursor,
                ),
            )
            messages = resp.get("messages") or []
            for message in messages:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == MESSAGE_EVENT_TYPE and payload.get("grantflow_key") == key:
                    return MessageRef(channel=channel, ts=str(message["ts"]))
            seen += len(messages)
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not messages or not resp.get("has_more") or cursor is None:
                break
        return None

    async def post_once(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Mapping[str, Any]],
        *,
        key: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> MessageRef:
        """Post unless a message under ``key`` is already there; either way return its ref. ``channel``
        may be a user id (the DM is used). ``metadata`` adds fields to the stored ``event_payload``."""
        ref, _ = await self.ensure_posted(channel, text, blocks, key=key, metadata=metadata)
        return ref

    async def ensure_posted(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Mapping[str, Any]],
        *,
        key: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[MessageRef, bool]:
        """``post_once``, also saying whether the message was posted now (True) or found (False)."""
        if not text:
            raise ValueError("text is required: it is the notification and screen-reader fallback")
        if not key:
            raise ValueError("key is required")
        channel = await self._conversation(channel)
        found = await self.find_posted(channel, key)
        if found is not None:
            return found, False
        resp = await self._call(
            f"posting to {channel}",
            self._client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=_block_list(blocks) or None,
                metadata={
                    "event_type": MESSAGE_EVENT_TYPE,
                    "event_payload": {**(metadata or {}), "grantflow_key": key},
                },
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return MessageRef(channel=str(resp["channel"]), ts=str(resp["ts"])), True

    async def post(self, channel: str, text: str, *, key: str) -> MessageRef:
        """Post a plain-text message without looking for an earlier one first: for a channel whose history
        the bot may not read (the operators' channel needs only ``chat:write``, and ``chat:write.public``
        unless the bot was invited). The caller keeps duplicates out; ``key`` goes in the metadata."""
        if not text:
            raise ValueError("text is required")
        resp = await self._call(
            f"posting to {channel}",
            self._client.chat_postMessage(
                channel=channel,
                text=text,
                metadata={"event_type": MESSAGE_EVENT_TYPE, "event_payload": {"grantflow_key": key}},
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return MessageRef(channel=str(resp["channel"]), ts=str(resp["ts"]))

    async def update(self, ref: MessageRef, text: str, blocks: Sequence[Mapping[str, Any]]) -> MessageRef:
        """Replace the text and blocks of a message grantflow posted (its metadata is kept)."""
        if not text:
            raise ValueError("text is required: it is the notification and screen-reader fallback")
        await self._call(
            f"updating message {ref.ts} in {ref.channel}",
            self._client.chat_update(channel=ref.channel, ts=ref.ts, text=text, blocks=_block_list(blocks)),
        )
        return ref

    async def post_ephemeral(
        self, channel: str, user: str, text: str, *, blocks: Sequence[Mapping[str, Any]] | None = None
    ) -> str:
        """A message only ``user`` sees in ``channel`` (not kept by Slack); returns its ``message_ts``."""
        resp = await self._call(
            f"posting an ephemeral message to {user} in {channel}",
            self._client.chat_postEphemeral(
                channel=channel, user=user, text=text, blocks=_block_list(blocks) if blocks else None
            ),
        )
        return str(resp["message_ts"])

    async def open_modal(self, trigger_id: str, view: Mapping[str, Any]) -> str:
        """Open a modal (e.g. :func:`render_view` of ``deny_modal``) within 3 s of the click; its id."""
        resp = await self._call(
            "opening a modal", self._client.views_open(trigger_id=trigger_id, view=dict(view))
        )
        return str(resp["view"]["id"])

    async def aclose(self) -> None:
        session = self._client.session
        if session is not None and not session.closed:
            await session.close()


# --------------------------------------------------------------------------------------------- rendering

_ENTITY_TAIL = re.compile(r"&[a-z]{0,4}$")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut, never inside an escape
    (``&amp;``) that the cut would break."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - len(ELLIPSIS), 0)]
    head = _ENTITY_TAIL.sub("", head)
    return head.rstrip() + ELLIPSIS


def mrkdwn_escape(text: str) -> str:
    """Escape what Slack's mrkdwn treats as markup: ``<!channel>``, ``<@U…>`` and links live in ``<…>``."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quote(text: str) -> str:
    return "\n".join(f">{line}" for line in str(text).splitlines() or [""])


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _utc(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else "-"


def _slack_date(when: datetime | None) -> str:
    """Slack's date token: each reader sees the time in their own timezone; the fallback is UTC."""
    if when is None:
        return "-"
    epoch = int(when.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|{_utc(when)}>"


@jinja2.pass_context
def _who(ctx: jinja2.runtime.Context, person: PersonRef) -> str:
    mentions = ctx.get("mentions") or {}
    slack_id = mentions.get(person.id) or mentions.get(person.email)
    return f"<@{slack_id}>" if slack_id else mrkdwn_escape(person.email)


@lru_cache(maxsize=1)
def slack_templates() -> jinja2.Environment:
    env = template_environment(autoescape=False)
    env.filters.update(
        json=_json,
        mrkdwn=mrkdwn_escape,
        clip=clip,
        quote=_quote,
        duration=format_duration,
        utc=_utc,
        slack_date=_slack_date,
        who=_who,
    )
    return env


def _context(context: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"link": None, "mentions": {}, "note": "", "recipient": None, "origin": None}
    out.update(context)
    view = out.get("view")
    if isinstance(view, RequestView):
        stage = open_stage(view)
        recipient = out["recipient"]
        voted = (
            stage is not None
            and isinstance(recipient, PersonRef)
            and any(d.approver.id == recipient.id for d in votes_in_stage(view, stage))
        )
        out.setdefault("stage", stage.value if stage is not None else None)
        out.setdefault("recipient_voted", voted)
        out.setdefault("decision_open", stage is not None and not voted)
        stage_votes = votes_in_stage(view, stage) if stage is not None else []
        out.setdefault("stage_approvals", len({d.approver.id for d in stage_votes if d.verdict is APPROVE}))
        extension_votes = view.pending_extension.approvals if view.pending_extension else []
        out.setdefault("has_decisions", bool(view.approvals or view.denials or extension_votes))
    return out


def _render_json(template_name: str, context: dict[str, Any]) -> Any:
    name = template_name if template_name.endswith(".json.j2") else f"{template_name}.json.j2"
    rendered = slack_templates().get_template(f"slack/{name}").render(**_context(context))
    try:
        return json.loads(rendered)
    except ValueError as exc:
        raise BlockKitError([f"slack/{name} did not render valid JSON: {exc}"]) from exc


def render_blocks(template_name: str, **context: Any) -> tuple[str, list[dict[str, Any]]]:
    """Render ``templates/slack/<template_name>.json.j2`` (a ``{"text", "blocks"}`` object) into the
    fallback text and Block Kit blocks, fitted to Slack's limits and validated (:class:`BlockKitError`).

    Context: ``view`` (a :class:`RequestView`), and optionally ``recipient`` (a :class:`PersonRef`: an
    approver who already voted sees no buttons), ``link`` (the review page), ``mentions`` (directory id or
    email → Slack user id, shown as mentions), ``note``."""
    data = _render_json(template_name, context)
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or "blocks" not in data:
        raise BlockKitError([f"{template_name} must render an object with text and blocks"])
    blocks = fit_blocks(data["blocks"])
    check_blocks(blocks)
    return clip(data["text"], MAX_MESSAGE_TEXT), blocks


def render_view(template_name: str, **context: Any) -> dict[str, Any]:
    """Render a modal view (``deny_modal``), fitted and validated like :func:`render_blocks`."""
    view = _render_json(template_name, context)
    if not isinstance(view, dict) or view.get("type") != "modal":
        raise BlockKitError([f"{template_name} must render a modal view"])
    view["blocks"] = fit_blocks(view.get("blocks") or [], max_blocks=MAX_VIEW_BLOCKS)
    problems = _check_block_list(view["blocks"], MAX_VIEW_BLOCKS, "/view/blocks")
    for key in ("title", "submit", "close"):
        text = (view.get(key) or {}).get("text", "")
        if len(text) > MAX_VIEW_TITLE:
            problems.append(
                f"must be less than {MAX_VIEW_TITLE + 1} characters [json-pointer:/view/{key}/text]"
            )
    if len(view.get("private_metadata", "")) > MAX_PRIVATE_METADATA:
        problems.append(
            "private_metadata is longer than 3000 characters [json-pointer:/view/private_metadata]"
        )
    if not problems:
        try:
            if View(**view).to_dict() != view:
                problems.append("slack_sdk's View model drops or changes part of the view")
        except (SlackClientError, TypeError, ValueError) as exc:
            problems.append(f"slack_sdk refuses the view: {exc}")
    if problems:
        raise BlockKitError(problems)
    return dict(view)


def _fit_text(obj: Any, limit: int) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = clip(obj["text"], limit)


def fit_blocks(blocks: Any, *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> list[dict[str, Any]]:
    """Cut over-long texts to Slack's limits (with "…") and, past ``max_blocks``, replace the tail with
    a line saying how many blocks were left out. Values that cannot be cut (a button's ``value``) are
    left for :func:`check_blocks` to refuse."""
    if not isinstance(blocks, list):
        raise BlockKitError(["blocks must be a list [json-pointer:/blocks]"])
    out: list[dict[str, Any]] = json.loads(json.dumps(blocks))
    if len(out) > max_blocks:
        left_out = len(out) - (max_blocks - 1)
        out = out[: max_blocks - 1]
        out.append(
            {
                "type": "context",
                "block_id": "gf_truncated",
                "elements": [{"type": "mrkdwn", "text": f"{ELLIPSIS} {left_out} more not shown"}],
            }
        )
    for block in out:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "section":
            _fit_text(block.get("text"), MAX_SECTION_TEXT)
            fields = block.get("fields")
            if isinstance(fields, list):
                del fields[MAX_FIELDS:]
                for f in fields:
                    _fit_text(f, MAX_FIELD_TEXT)
        elif kind == "header":
            _fit_text(block.get("text"), MAX_HEADER_TEXT)
        elif kind == "context":
            for el in block.get("elements") or []:
                _fit_text(el, MAX_CONTEXT_TEXT)
        elif kind == "actions":
            for el in block.get("elements") or []:
                if isinstance(el, dict) and el.get("type") == "button":
                    _fit_text(el.get("text"), MAX_BUTTON_TEXT)
                    confirm = el.get("confirm") or {}
                    for part, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
                        _fit_text(confirm.get(part), limit)
    return out


def _check_block_list(blocks: list[dict[str, Any]], max_blocks: int, pointer: str) -> list[str]:
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(f"more than {max_blocks} blocks [json-pointer:{pointer}]")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{pointer}/{i}"
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                problems.append(f"duplicate block_id {block_id!r} [json-pointer:{where}/block_id]")
            block_ids.add(block_id)
        elements = block.get("elements") if block.get("type") == "actions" else None
        action_ids: set[str] = set()
        for j, el in enumerate(elements or []):
            action_id = el.get("action_id")
            if action_id is not None:
                if action_id in action_ids:
                    problems.append(f"duplicate action_id {action_id!r} [json-pointer:{where}/elements/{j}]")
                action_ids.add(action_id)
            value = el.get("value")
            if isinstance(value, str) and len(value) > MAX_BUTTON_VALUE:
                problems.append(
                    f"button value longer than {MAX_BUTTON_VALUE} [json-pointer:{where}/elements/{j}/value]"
                )
    try:
        parsed = Block.parse_all(blocks)
    except (SlackClientError, TypeError, ValueError) as exc:
        return [*problems, f"slack_sdk cannot parse the blocks: {exc}"]
    for i, (block, model) in enumerate(zip(blocks, parsed, strict=True)):
        if model is None:
            problems.append(f"unknown block type {block.get('type')!r} [json-pointer:{pointer}/{i}]")
            continue
        try:
            as_dict = model.to_dict()
        except (SlackClientError, TypeError, ValueError) as exc:
            problems.append(f"{exc} [json-pointer:{pointer}/{i}]")
            continue
        if as_dict != block:
            problems.append(f"unknown or malformed keys (slack_sdk drops them) [json-pointer:{pointer}/{i}]")
    return problems


def check_blocks(blocks: list[dict[str, Any]], *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> None:
    """Raise :class:`BlockKitError` unless Slack would accept ``blocks`` in a message."""
    problems = _check_block_list(blocks, max_blocks, "/blocks")
    if problems:
        raise BlockKitError(problems)
