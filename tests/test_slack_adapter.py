"""grantflow's Slack adapter (``integrations/slack/``) against the Slack stand-in over real HTTP: posting
exactly once whatever fails, error mapping for the activity boundary, and the identity look-ups."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from integrations.slack import (
    MESSAGE_EVENT_TYPE,
    MessageRef,
    SlackAuthError,
    SlackChannel,
    SlackNotFoundError,
    SlackRejectedError,
    SlackTransientError,
    build_slack_client,
    slack_error,
)
from sandbox.hoop import ManualClock
from sandbox.slack import SlackStandIn

BOT = "xoxb-adapter-test"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BLOCKS = [{"type": "section", "block_id": "s", "text": {"type": "mrkdwn", "text": "Access request"}}]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def slack(clock: ManualClock) -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn(bot_token=BOT, signing_secret="s", clock=clock)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def bob(slack: SlackStandIn) -> str:
    return slack.add_user("bob@corp.example", "Bob Builder")


@pytest_asyncio.fixture(loop_scope="session")
async def channel(slack: SlackStandIn) -> AsyncIterator[SlackChannel]:
    chan = SlackChannel(build_slack_client(BOT, base_url=slack.api_url))
    yield chan
    await chan.aclose()


def posts(slack: SlackStandIn) -> int:
    """How many chat.postMessage calls reached the stand-in (whatever their outcome)."""
    return len(slack.calls_to("chat.postMessage"))


# ------------------------------------------------------------------------------------------ post_once


async def test_post_once_never_posts_twice(slack: SlackStandIn, channel: SlackChannel, bob: str) -> None:
    dm = await channel.open_dm(bob)
    first = await channel.post_once(dm, "Access request", BLOCKS, key="req-1:approver:bob", metadata={"r": 1})
    again = await channel.post_once(dm, "Access request", BLOCKS, key="req-1:approver:bob")
    other = await channel.post_once(dm, "Access request", BLOCKS, key="req-1:approver:carol")
    assert again == first and other != first
    assert posts(slack) == 2 and len(slack.messages(dm)) == 2
    stored = slack.message(first.channel, first.ts)
    assert stored["metadata"] == {
        "event_type": MESSAGE_EVENT_TYPE,
        "event_payload": {"r": 1, "grantflow_key": "req-1:approver:bob"},
    }
    assert stored["text"] == "Access request" and stored["blocks"] == BLOCKS
    # every look-up asked for the metadata, without which it would never find anything
    assert all(
        c.params["include_all_metadata"] in ("1", "true") for c in slack.calls_to("conversations.history")
    )


async def test_a_retry_after_a_lost_reply_finds_the_first_message(
    slack: SlackStandIn, channel: SlackChannel, bob: str
) -> None:
    slack.drop_next("chat.postMessage", after_write=True)
    with pytest.raises(SlackTransientError) as exc:
        await channel.post_once(bob, "Access request", BLOCKS, key="req-2:created")
    assert exc.value.retry_after is None and "connection failed" in exc.value.message
    (stored,) = slack.messages()
    ref = await channel.post_once(bob, "Access request", BLOCKS, key="req-2:created")  # the activity's retry
    assert ref == MessageRef(channel=stored["channel"], ts=stored["ts"])
    assert posts(slack) == 1 and len(slack.messages()) == 1


async def test_a_retry_after_a_failure_before_the_write_posts(
    slack: SlackStandIn, channel: SlackChannel, bob: str
) -> None:
    slack.drop_next("chat.postMessage")
    with pytest.raises(SlackTransientError):
        await channel.post_once(bob, "Access request", BLOCKS, key="req-3:created")
    slack.fail_next("chat.postMessage", status=503, after_write=True)  # Slack wrote it, then answered 503
    with pytest.raises(SlackTransientError):
        await channel.post_once(bob, "Access request", BLOCKS, key="req-3:created")
    ref = await channel.post_once(bob, "Access request", BLOCKS, key="req-3:created")
    assert [m["ts"] for m in slack.messages()] == [ref.ts]


async def test_post_once_looks_past_the_first_page_of_history(
    slack: SlackStandIn, bob: str, clock: ManualClock
) -> None:
    chan = SlackChannel(build_slack_client(BOT, base_url=slack.api_url), history_page_size=2)
    first = await chan.post_once(bob, "first", BLOCKS, key="old-key")
    for i in range(5):  # newer messages push the first one to the third page
        clock.advance(seconds=1)
        await chan.post_once(bob, f"later {i}", BLOCKS, key=f"later-{i}")
    slack.clear_calls()
    assert await chan.post_once(bob, "first", BLOCKS, key="old-key") == first
    assert posts(slack) == 0 and len(slack.calls_to("conversations.history")) == 3
    limited = SlackChannel(build_slack_client(BOT, base_url=slack.api_url), history_scan_limit=2)
    assert await limited.find_posted(bob, "old-key") is None  # beyond the scan limit


async def test_slack_sdks_default_client_would_post_twice(slack: SlackStandIn, bob: str) -> None:
    """Why ``build_slack_client`` turns client retries off: the default AsyncWebClient retries a dropped
    connection — the POST included — and Slack has no idempotency key."""
    default = AsyncWebClient(token=BOT, base_url=slack.api_url)
    slack.drop_next("chat.postMessage", after_write=True)
    await default.chat_postMessage(channel=bob, text="hello")
    assert len(slack.messages()) == 2
    assert build_slack_client(BOT).retry_handlers == []
    (handler,) = build_slack_client(BOT, max_retries=2).retry_handlers
    assert isinstance(handler, AsyncRateLimitErrorRetryHandler) and handler.max_retry_count == 2


async def test_update_and_ephemeral(slack: SlackStandIn, channel: SlackChannel, bob: str) -> None:
    ref = await channel.post_once(bob, "v1", BLOCKS, key="req-4:created")
    new_blocks = [{"type": "section", "block_id": "s", "text": {"type": "mrkdwn", "text": "Approved"}}]
    assert await channel.update(ref, "v2", new_blocks) == ref
    stored = slack.message(ref.channel, ref.ts)
    assert stored["text"] == "v2" and stored["blocks"] == new_blocks
    assert stored["metadata"]["event_payload"]["grantflow_key"] == "req-4:created"
    assert await channel.post_ephemeral(ref.channel, bob, "Only you can see this")
    with pytest.raises(SlackNotFoundError) as exc:
        await channel.update(MessageRef(channel=ref.channel, ts="1.000001"), "v3", new_blocks)
    assert exc.value.error == "message_not_found"
    with pytest.raises(ValueError):
        await channel.post_once(bob, "", BLOCKS, key="k")


# ------------------------------------------------------------------------------------------ errors


async def test_rate_limit_maps_to_transient_with_retry_after(
    slack: SlackStandIn, channel: SlackChannel, bob: str
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackTransientError) as exc:
        await channel.post_once(bob, "hi", BLOCKS, key="k-429")
    assert (exc.value.status, exc.value.error, exc.value.retry_after) == (429, "ratelimited", 7.0)
    slack.fail_next("conversations.history", status=429)  # the look-up is rate limited too
    with pytest.raises(SlackTransientError) as exc:
        await channel.post_once(bob, "hi", BLOCKS, key="k-429")
    assert exc.value.retry_after == 1.0
    assert await channel.post_once(bob, "hi", BLOCKS, key="k-429")
    assert len(slack.messages()) == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "error", "expected_after"),
    [
        (503, None, None, None),
        (503, 30, None, 30.0),
        (500, None, None, None),
        (200, None, "fatal_error", None),
    ],
)
async def test_server_errors_map_to_transient(
    slack: SlackStandIn,
    channel: SlackChannel,
    bob: str,
    status: int,
    retry_after: int | None,
    error: str | None,
    expected_after: float | None,
) -> None:
    slack.fail_next("users.lookupByEmail", status=status, retry_after=retry_after, error=error)
    with pytest.raises(SlackTransientError) as exc:
        await channel.user_id_for_email("bob@corp.example")
    assert exc.value.status == status and exc.value.retry_after == expected_after


async def test_permanent_errors(slack: SlackStandIn, channel: SlackChannel, bob: str) -> None:
    wrong = SlackChannel(build_slack_client("xoxb-wrong", base_url=slack.api_url))
    with pytest.raises(SlackAuthError) as auth:
        await wrong.bot_user_id()
    assert auth.value.error == "invalid_auth"
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackRejectedError) as rejected:
        await channel.post_once(bob, "hi", too_long, key="k-bad")
    assert rejected.value.error == "invalid_blocks"
    assert rejected.value.details == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    with pytest.raises(SlackNotFoundError):
        await channel.post_once("C0NOPE", "hi", BLOCKS, key="k")


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chan = SlackChannel(build_slack_client(BOT, base_url=f"http://127.0.0.1:{port}/api/"))
    with pytest.raises(SlackTransientError) as exc:
        await chan.open_dm("U1")
    assert exc.value.status is None and "opening a DM with U1" in exc.value.message


def test_retry_after_as_an_http_date() -> None:
    class Response:
        status_code = 503
        headers = {"retry-after": format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)}
        data: dict[str, str] = {}

    mapped = slack_error(SlackApiError("boom", Response()), "posting")
    assert isinstance(mapped, SlackTransientError)
    assert mapped.retry_after is not None and 100 < mapped.retry_after <= 120


# ------------------------------------------------------------------------------------------ look-ups


async def test_identity_lookups(slack: SlackStandIn, channel: SlackChannel, bob: str) -> None:
    assert await channel.user_id_for_email("BOB@corp.example") == bob
    assert await channel.user_id_for_email("nobody@corp.example") is None
    slack.add_user("gone@corp.example", "Gone", deleted=True)
    assert await channel.user_id_for_email("gone@corp.example") is None  # cannot be messaged
    assert await channel.email_for_user(bob) == "bob@corp.example"
    assert await channel.email_for_user("U404") is None
    dm = await channel.open_dm(bob)
    assert dm == slack.dm_channel(bob) and await channel.open_dm(bob) == dm
    assert len(slack.calls_to("conversations.open")) == 1
    assert (await channel.bot_user_id()).startswith("U")
