"""``SlackChannel``: grantflow's Slack Web API client adapter — post, find and update the messages of a
request, map people between the directory and Slack, open DMs and modals — through one bot token.

No business decisions happen here, and no rendering (:mod:`integrations.slack.blocks` makes the blocks);
activities call it and decide what to do with its errors (:mod:`integrations.slack.errors`).

Retries. The client is built with **no** retry handlers: slack_sdk's default ``AsyncWebClient`` silently
installs ``AsyncConnectionErrorRetryHandler``, which re-sends a ``chat.postMessage`` whose reply was lost and
so posts twice; ``AsyncRateLimitErrorRetryHandler`` sleeps ``Retry-After`` uncapped inside the activity, out
of sight of Temporal's timeouts and heartbeats. Every retry goes through the activity and then through
``post_once``'s look-up first. ``build_slack_client(..., max_retries=N)`` can still retry 429s in the client
for callers outside Temporal (a 429 guarantees that nothing was done); 5xx and dropped connections are
never retried in the client because the write may have happened.

Idempotency. Slack has no idempotency key, so :meth:`SlackChannel.post_once` stores grantflow's key in the
message's ``metadata`` (``event_type`` ``grantflow_message``, ``event_payload.grantflow_key``) and reads
the channel's recent history (``include_all_metadata``) before posting. A retry after a lost reply finds
the first message and returns its ``MessageRef``; activities keep that ref (channel + ts) in workflow
state and later call :meth:`SlackChannel.update`. Residual window: two attempts running at the same time
(a timed-out attempt still in flight while its retry starts) can both miss each other's message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack.errors import SlackNotFoundError, slack_error

MESSAGE_EVENT_TYPE = "grantflow_message"
HISTORY_PAGE_SIZE = 200
HISTORY_SCAN_LIMIT = 1000
"""How many of a channel's newest messages ``post_once`` reads before concluding it never posted."""
USER_ID_TTL = 3600.0
"""How long a Slack user id found by email is trusted (an account rarely changes owner)."""
USER_ID_MEMORY = 10_000
"""How many people's Slack user ids a worker remembers (forgotten all at once beyond that)."""

T = TypeVar("T")


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


def _message_metadata(key: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata that marks a message as grantflow's, under ``key`` (what ``find_posted`` looks for)."""
    return {"event_type": MESSAGE_EVENT_TYPE, "event_payload": {**(extra or {}), "grantflow_key": key}}


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
                metadata=_message_metadata(key, metadata),
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
                metadata=_message_metadata(key),
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
