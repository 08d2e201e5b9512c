"""The Slack stand-in over real HTTP and WebSocket (``sandbox/slack/``): Slack's answers, limits and faults
as slack_sdk and Bolt see them, Socket Mode with Bolt's handlers, and the driver's signed requests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import httpx
import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette import SlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox._server import BackgroundServer
from sandbox.hoop import ManualClock
from sandbox.slack import SlackDriver, SlackStandIn

BOT = "xoxb-test-bot"
APP = "xapp-1-test-app"
SECRET = "test-signing-secret"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def slack(clock: ManualClock) -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn(bot_token=BOT, app_token=APP, signing_secret=SECRET, clock=clock)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def bob(slack: SlackStandIn) -> str:
    return slack.add_user("bob@corp.example", "Bob Builder")


@pytest.fixture
def web(slack: SlackStandIn) -> WebClient:
    return WebClient(token=BOT, base_url=slack.api_url)


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


def button(action_id: str, value: str = "req-1", text: str = "Approve") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }


def actions(block_id: str, *elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "block_id": block_id, "elements": list(elements)}


def slack_error(exc: pytest.ExceptionInfo[SlackApiError]) -> dict[str, Any]:
    data = exc.value.response.data
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------------------------------ Web API


def test_auth_is_checked_like_slack(slack: SlackStandIn, bob: str) -> None:
    with httpx.Client() as http:
        assert http.post(slack.api_url + "auth.test").json() == {"ok": False, "error": "not_authed"}
        wrong = http.post(slack.api_url + "auth.test", headers={"Authorization": "Bearer xoxb-nope"})
        assert wrong.status_code == 200 and wrong.json() == {"ok": False, "error": "invalid_auth"}
        # a token in the form body is accepted, as Slack does
        assert http.post(slack.api_url + "auth.test", data={"token": BOT}).json()["ok"] is True
    assert WebClient(token=BOT, base_url=slack.api_url).auth_test()["user_id"]
    with pytest.raises(SlackApiError) as exc:
        WebClient(token=APP, base_url=slack.api_url).chat_postMessage(channel=bob, text="hi")
    assert slack_error(exc)["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as exc:
        WebClient(token=BOT, base_url=slack.api_url).apps_connections_open(app_token=BOT)
    assert slack_error(exc)["error"] == "not_allowed_token_type"
    with httpx.Client() as http:
        missing = http.post(slack.api_url + "no.such", headers={"Authorization": f"Bearer {BOT}"})
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_method"


def test_form_and_json_bodies_post_the_same_message(slack: SlackStandIn, bob: str) -> None:
    channel = slack.dm_channel(bob)
    blocks = [section("hello", "a")]
    metadata = {"event_type": "grantflow_message", "event_payload": {"grantflow_key": "k"}}
    headers = {"Authorization": f"Bearer {BOT}"}
    with httpx.Client(headers=headers) as http:
        form = http.post(
            slack.api_url + "chat.postMessage",
            data={
                "channel": channel,
                "text": "t",
                "blocks": json.dumps(blocks),
                "metadata": json.dumps(metadata),
            },
        ).json()
        as_json = http.post(
            slack.api_url + "chat.postMessage",
            json={"channel": channel, "text": "t", "blocks": blocks, "metadata": metadata},
        ).json()
    assert form["ok"] and as_json["ok"]
    first, second = slack.messages(channel)
    for stored in (first, second):
        assert stored["blocks"] == blocks and stored["metadata"] == metadata and stored["text"] == "t"
    assert float(second["ts"]) > float(first["ts"])  # unique and increasing though the clock stands still
    assert form["channel"] == channel and form["message"]["ts"] == form["ts"]


LIMIT_CASES = {
    "51 blocks": (
        [section(f"b{i}", f"b{i}") for i in range(51)],
        "must be less than 51 items [json-pointer:/blocks]",
    ),
    "section text 3001": (
        [section("x" * 3001)],
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
    ),
    "button text 76": (
        [actions("a", button("go", text="y" * 76))],
        "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
    ),
    "button value 2001": (
        [actions("a", button("go", value="v" * 2001))],
        "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
    ),
    "duplicate block_id": ([section("one", "same"), section("two", "same")], "duplicate block_id: same"),
    "duplicate action_id in a block": (
        [actions("a", button("go"), button("go", text="Again"))],
        "duplicate action_id: go [json-pointer:/blocks/0/elements/1/action_id]",
    ),
    "unknown block type": (
        [{"type": "sectoin", "text": {"type": "mrkdwn", "text": "x"}}],
        "unsupported type",
    ),
    "unknown key": ([{**section("x"), "colour": "red"}], "invalid additional property: colour"),
    "empty text": ([section("")], "must be more than 0 characters"),
    "plain_text only in a button": (
        [actions("a", {**button("go"), "text": {"type": "mrkdwn", "text": "*Go*"}})],
        "must be one of plain_text",
    ),
}


@pytest.mark.parametrize("case", list(LIMIT_CASES))
def test_block_kit_limits_are_enforced_with_slacks_errors(
    slack: SlackStandIn, web: WebClient, bob: str, case: str
) -> None:
    blocks, expected = LIMIT_CASES[case]
    with pytest.raises(SlackApiError) as exc:
        web.chat_postMessage(channel=bob, text="fallback", blocks=blocks)
    data = slack_error(exc)
    assert data["error"] == "invalid_blocks"
    assert any(expected in e for e in data["errors"]), data["errors"]
    assert all(m.startswith("[ERROR] ") for m in data["response_metadata"]["messages"])
    assert slack.messages() == []


def test_limits_that_pass_and_message_text_rules(slack: SlackStandIn, web: WebClient, bob: str) -> None:
    ok = [
        *(section(f"b{i}", f"b{i}") for i in range(48)),
        section("x" * 3000, "long"),
        # the same action_id in two blocks is allowed: uniqueness is per block
        actions("act", button("go", value="v" * 2000, text="y" * 75), button("stop")),
    ]
    assert web.chat_postMessage(channel=bob, text="fallback", blocks=ok)["ok"]
    web.chat_postMessage(
        channel=bob, text="t", blocks=[actions("x", button("go")), actions("y", button("go"))]
    )
    with pytest.raises(SlackApiError) as exc:
        web.chat_postMessage(channel=bob, text="z" * 40_001)
    assert slack_error(exc)["error"] == "msg_too_long"
    with pytest.raises(SlackApiError) as exc, pytest.warns(UserWarning):
        web.chat_postMessage(channel=bob)
    assert slack_error(exc)["error"] == "no_text"
    with pytest.raises(SlackApiError) as exc:
        web.chat_postMessage(channel="C404", text="hi")
    assert slack_error(exc)["error"] == "channel_not_found"
    # blocks without fallback text are accepted with a warning (slack_sdk itself warns too), and recorded
    with pytest.warns(UserWarning, match="top-level `text` argument is missing"):
        answer = web.chat_postMessage(channel=bob, blocks=[section("no fallback")])
    assert answer["response_metadata"]["warnings"] == ["missing_text"]
    assert slack.calls_to("chat.postMessage")[-1].warnings == ("missing_text",)
    with pytest.raises(SlackApiError) as exc:
        web.chat_postMessage(channel=bob, text="m", metadata={"event_type": "x"})
    assert slack_error(exc)["error"] == "invalid_metadata_format"


def test_update_and_ephemeral(slack: SlackStandIn, web: WebClient, bob: str) -> None:
    posted = web.chat_postMessage(
        channel=bob,
        text="v1",
        blocks=[section("v1", "s")],
        metadata={"event_type": "grantflow_message", "event_payload": {"grantflow_key": "k"}},
    )
    channel, ts = posted["channel"], posted["ts"]
    updated = web.chat_update(channel=channel, ts=ts, text="v2", blocks=[section("v2", "s")])
    assert updated["ts"] == ts and updated["text"] == "v2"
    stored = slack.message(channel, ts)
    assert stored["blocks"][0]["text"]["text"] == "v2"
    assert stored["metadata"]["event_payload"] == {"grantflow_key": "k"}  # kept by the update
    with pytest.raises(SlackApiError) as exc:
        web.chat_update(channel=channel, ts="1.000001", text="x")
    assert slack_error(exc)["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as exc:
        web.chat_update(channel=channel, ts=ts, text="x", blocks=[section("x" * 3001)])
    assert slack_error(exc)["error"] == "invalid_blocks"

    assert web.chat_postEphemeral(channel=channel, user=bob, text="only you")["message_ts"]
    assert slack.ephemerals[-1]["user"] == bob and slack.messages(channel)[-1]["ts"] == ts
    carol = slack.add_user("carol@corp.example", "Carol")
    with pytest.raises(SlackApiError) as exc:
        web.chat_postEphemeral(channel=channel, user=carol, text="not yours")
    assert slack_error(exc)["error"] == "user_not_in_channel"


def test_users_and_dms(slack: SlackStandIn, web: WebClient, bob: str) -> None:
    assert bob.startswith("U")
    found = web.users_lookupByEmail(email="Bob@corp.example")["user"]
    assert found["id"] == bob and found["profile"]["email"] == "bob@corp.example"
    with pytest.raises(SlackApiError) as exc:
        web.users_lookupByEmail(email="nobody@corp.example")
    assert slack_error(exc)["error"] == "users_not_found"
    assert web.users_info(user=bob)["user"]["real_name"] == "Bob Builder"
    with pytest.raises(SlackApiError) as exc:
        web.users_info(user="U404")
    assert slack_error(exc)["error"] == "user_not_found"

    first = web.conversations_open(users=bob)
    again = web.conversations_open(users=[bob])
    assert first["channel"]["id"].startswith("D") and first["channel"]["id"] == again["channel"]["id"]
    assert again["already_open"] is True and slack.dm_channel(bob) == first["channel"]["id"]
    audit = slack.add_channel("audit", bot_is_member=False)
    with pytest.raises(SlackApiError) as exc:
        web.chat_postMessage(channel="#audit", text="hi")
    assert slack_error(exc)["error"] == "not_in_channel" and audit.startswith("C")
    gone = slack.add_user("gone@corp.example", "Gone", deleted=True)
    assert web.users_lookupByEmail(email="gone@corp.example")["user"]["deleted"] is True
    with pytest.raises(SlackApiError) as exc:
        web.conversations_open(users=gone)
    assert slack_error(exc)["error"] == "user_disabled"


def test_history_returns_metadata_newest_first_with_cursor_paging(
    slack: SlackStandIn, web: WebClient, bob: str, clock: ManualClock
) -> None:
    channel = slack.dm_channel(bob)
    sent = []
    for i in range(5):
        clock.advance(seconds=1)
        metadata = {"event_type": "grantflow_message", "event_payload": {"grantflow_key": f"k{i}"}}
        sent.append(web.chat_postMessage(channel=channel, text=f"m{i}", metadata=metadata)["ts"])

    page = web.conversations_history(channel=channel, include_all_metadata=True, limit=2)
    assert [m["ts"] for m in page["messages"]] == [sent[4], sent[3]]
    assert page["messages"][0]["metadata"]["event_payload"] == {"grantflow_key": "k4"}
    assert page["has_more"] is True
    seen = [m["ts"] for m in page["messages"]]
    cursor = page["response_metadata"]["next_cursor"]
    while cursor:
        page = web.conversations_history(channel=channel, include_all_metadata=True, limit=2, cursor=cursor)
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
    assert seen == sent[::-1] and page["has_more"] is False

    bare = web.conversations_history(channel=channel)
    assert all("metadata" not in m for m in bare["messages"])  # only with include_all_metadata
    newer = web.conversations_history(channel=channel, oldest=sent[2])
    assert [m["ts"] for m in newer["messages"]] == [sent[4], sent[3]]
    with pytest.raises(SlackApiError) as exc:
        web.conversations_history(channel=channel, cursor="bm9wZQ==")
    assert slack_error(exc)["error"] == "invalid_cursor"


# ------------------------------------------------------------------------------------------ faults


async def test_429_carries_retry_after_and_only_the_next_call_fails(slack: SlackStandIn, bob: str) -> None:
    client = AsyncWebClient(token=BOT, base_url=slack.api_url, retry_handlers=[])
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel=bob, text="hi")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert exc.value.response.data == {"ok": False, "error": "ratelimited"}
    assert (await client.chat_postMessage(channel=bob, text="hi"))["ok"]
    injected = slack.calls_to("chat.postMessage")[0]
    assert injected.status == 429 and injected.injected == "fault"
    assert len(slack.messages()) == 1


def test_slack_sdks_rate_limit_handler_honours_the_stand_ins_retry_after(
    slack: SlackStandIn, bob: str
) -> None:
    client = WebClient(token=BOT, base_url=slack.api_url, retry_handlers=[RateLimitErrorRetryHandler(1)])
    slack.fail_next("users.lookupByEmail", status=429, retry_after=0)
    assert client.users_lookupByEmail(email="bob@corp.example")["user"]["id"] == bob
    assert [c.status for c in slack.calls_to("users.lookupByEmail")] == [429, 200]


async def test_503_is_an_error_page(slack: SlackStandIn, bob: str) -> None:
    client = AsyncWebClient(token=BOT, base_url=slack.api_url, retry_handlers=[])
    slack.fail_next("chat.postMessage", status=503)
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel=bob, text="hi")
    assert exc.value.response.status_code == 503 and "Retry-After" not in exc.value.response.headers
    slack.fail_next("chat.postMessage", status=503, after_write=True)
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel=bob, text="landed anyway")
    assert [m["text"] for m in slack.messages()] == ["landed anyway"]


@pytest.mark.parametrize("after_write", [False, True])
async def test_dropped_connection(slack: SlackStandIn, bob: str, after_write: bool) -> None:
    client = AsyncWebClient(token=BOT, base_url=slack.api_url, retry_handlers=[])
    slack.drop_next("chat.postMessage", after_write=after_write)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.chat_postMessage(channel=bob, text="hello?")
    assert len(slack.messages()) == (1 if after_write else 0)
    (call,) = slack.calls_to("chat.postMessage")
    assert call.status is None and call.injected == "drop"
    assert (await client.chat_postMessage(channel=bob, text="again"))["ok"]


def test_views_open_needs_a_fresh_trigger(
    slack: SlackStandIn, web: WebClient, bob: str, clock: ManualClock
) -> None:
    view = {
        "type": "modal",
        "callback_id": "cb",
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "blocks": [
            {
                "type": "input",
                "block_id": "r",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "reason"},
            }
        ],
    }
    trigger = slack.issue_trigger_id(bob)
    opened = web.views_open(trigger_id=trigger, view=view)["view"]
    assert opened["id"].startswith("V") and slack.views(bob)[0]["callback_id"] == "cb"
    for bad_trigger, error in ((trigger, "exchanged_trigger_id"), ("123.456.abc", "invalid_trigger_id")):
        with pytest.raises(SlackApiError) as exc:
            web.views_open(trigger_id=bad_trigger, view=view)
        assert slack_error(exc)["error"] == error
    late = slack.issue_trigger_id(bob)
    clock.advance(seconds=4)
    with pytest.raises(SlackApiError) as exc:
        web.views_open(trigger_id=late, view=view)
    assert slack_error(exc)["error"] == "expired_trigger_id"
    with pytest.raises(SlackApiError) as exc:
        long_title = {**view, "title": {"type": "plain_text", "text": "t" * 25}}
        web.views_open(trigger_id=slack.issue_trigger_id(bob), view=long_title)
    assert slack_error(exc)["error"] == "invalid_arguments"
    assert "[json-pointer:/view/title/text]" in slack_error(exc)["response_metadata"]["messages"][0]


# ------------------------------------------------------------------------------------------ Socket Mode


def test_socket_mode_round_trip_with_bolts_socket_mode_handler(slack: SlackStandIn, bob: str) -> None:
    app = App(
        client=WebClient(token=BOT, base_url=slack.api_url),
        signing_secret=SECRET,
        token_verification_enabled=False,
    )
    clicked: list[str] = []
    done = threading.Event()

    @app.action("grantflow_approve")
    def approve(ack: Any, body: dict[str, Any]) -> None:
        ack()
        clicked.append(body["actions"][0]["value"])
        done.set()

    @app.command("/access")
    def command(ack: Any, command: dict[str, Any]) -> None:
        ack(f"requests for {command['user_id']}: {command['text']}")

    handler = SocketModeHandler(app, APP)
    handler.connect()
    try:
        slack.wait_for_socket()
        posted = WebClient(token=BOT, base_url=slack.api_url).chat_postMessage(
            channel=bob, text="decide", blocks=[actions("gf_decide", button("grantflow_approve", "req-7"))]
        )
        driver = SlackDriver(SECRET, slack=slack)
        payload = driver.block_actions_payload(bob, posted["channel"], posted["ts"], "grantflow_approve")
        envelope = driver.deliver_socket("interactive", payload)
        assert envelope.acked and done.wait(5) and clicked == ["req-7"]

        envelope = slack.deliver_socket("slash_commands", driver.slash_command_payload(bob, text="list"))
        assert envelope.acked and envelope.ack_payload == {"text": f"requests for {bob}: list"}
        assert [e.type for e in slack.envelopes] == ["interactive", "slash_commands"]
    finally:
        # stop reconnecting, close from the server side (the client then winds down in ~1 s, not 3)
        handler.client.auto_reconnect_enabled = False
        slack.stop()
        handler.close()


async def test_socket_mode_async_handler_reconnects_after_disconnect(slack: SlackStandIn, bob: str) -> None:
    app = AsyncApp(client=AsyncWebClient(token=BOT, base_url=slack.api_url), signing_secret=SECRET)

    @app.view("grantflow_deny_reason")
    async def deny(ack: Any, view: dict[str, Any]) -> None:
        await ack({"response_action": "clear"})

    handler = AsyncSocketModeHandler(app, APP)
    await handler.connect_async()
    try:
        await asyncio.to_thread(slack.wait_for_socket)
        slack.disconnect_socket()
        # the client asks for a new URL and connects again; envelopes then go to the new connection
        await asyncio.to_thread(_wait_until, lambda: slack.socket_connects == 2)
        assert len(slack.calls_to("apps.connections.open")) == 2
        detached = SlackDriver(SECRET)  # no stand-in attached: the payload names its own callback_id
        payload = detached.view_submission_payload(
            bob, callback_id="grantflow_deny_reason", values={"gf_deny_reason": {"reason": "no"}}
        )
        detached.close()
        envelope = await asyncio.to_thread(slack.deliver_socket, "interactive", payload)
        assert envelope.acked and envelope.ack_payload == {"response_action": "clear"}
    finally:
        await handler.close_async()


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


async def test_an_envelope_nobody_acks_is_recorded_as_such(slack: SlackStandIn) -> None:
    url = WebClient(token=APP, base_url=slack.api_url).apps_connections_open(app_token=APP)["url"]
    assert url.startswith("ws://127.0.0.1:")
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        hello = await ws.receive_json()
        assert hello["type"] == "hello"
        envelope = await asyncio.to_thread(slack.deliver_socket, "events_api", {"event": {}}, timeout=0.2)
        received = await ws.receive_json()
        assert received["envelope_id"] == envelope.envelope_id and received["type"] == "events_api"
        assert envelope.acked is False
        await ws.send_json({"envelope_id": envelope.envelope_id})
        assert await asyncio.to_thread(envelope.wait_ack, 2)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)  # a connection URL is good for one connection only


# ------------------------------------------------------------------------------------------ the driver


class Recorder:
    """A receiver standing in for grantflow's edge: keeps the raw body and headers of every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def handle(self, request: Request) -> Response:
        self.requests.append(((await request.body()).decode(), dict(request.headers)))
        return Response(status_code=200)


@pytest.fixture
def receiver() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    server = BackgroundServer(Starlette(routes=[Route("/slack/events", recorder.handle, methods=["POST"])]))
    url = server.start()
    yield f"{url}/slack/events", recorder
    server.stop()


def test_driver_signatures_verify_and_stale_or_tampered_ones_do_not(
    slack: SlackStandIn, web: WebClient, bob: str, receiver: tuple[str, Recorder]
) -> None:
    url, recorder = receiver
    posted = web.chat_postMessage(
        channel=bob, text="t", blocks=[actions("gf_decide", button("grantflow_approve"))]
    )
    web.views_open(
        trigger_id=slack.issue_trigger_id(bob),
        view={"type": "modal", "title": {"type": "plain_text", "text": "Deny"}, "blocks": [section("x")]},
    )
    verifier = SignatureVerifier(SECRET)
    with SlackDriver(SECRET, url, slack=slack) as driver:
        for stale, tampered in ((False, False), (True, False), (False, True)):
            channel, ts = posted["channel"], posted["ts"]
            driver.click_button(bob, channel, ts, "grantflow_approve", stale=stale, tampered=tampered)
            driver.submit_view(bob, stale=stale, tampered=tampered)
            driver.slash_command(bob, "/access", "list mine", stale=stale, tampered=tampered)
    assert len(recorder.requests) == 9
    valid = [verifier.is_valid_request(body, headers) for body, headers in recorder.requests]
    assert valid == [True] * 3 + [False] * 6

    click, submit, command = (parse_qs(body) for body, _ in recorder.requests[:3])
    payload = json.loads(click["payload"][0])
    assert payload["type"] == "block_actions" and payload["user"]["id"] == bob
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": posted["channel"],
        "is_ephemeral": False,
    }
    assert payload["actions"][0] | {"action_ts": None} == {
        "action_id": "grantflow_approve",
        "block_id": "gf_decide",
        "value": "req-1",
        "type": "button",
        "text": {"type": "plain_text", "text": "Approve"},
        "action_ts": None,
    }
    assert payload["trigger_id"] and payload["response_url"].startswith(slack.url)
    assert json.loads(submit["payload"][0])["type"] == "view_submission"
    assert (
        command["command"] == ["/access"] and command["text"] == ["list mine"] and command["user_id"] == [bob]
    )

    with SlackDriver(SECRET, url, slack=slack) as driver, pytest.raises(LookupError):
        driver.click_button(bob, posted["channel"], posted["ts"], "grantflow_deny")  # no such button there


def test_bolt_over_http_accepts_the_driver_and_refuses_forgeries(slack: SlackStandIn, bob: str) -> None:
    """The whole interactive path as Slack runs it: a click, a modal opened with the trigger, a submitted
    reason, a slash command and a ``respond()`` through the response URL — and 401 for bad signatures."""
    app = App(
        client=WebClient(token=BOT, base_url=slack.api_url),
        signing_secret=SECRET,
        token_verification_enabled=False,
    )
    events: list[tuple[str, Any]] = []
    done = threading.Event()
    modal = {
        "type": "modal",
        "callback_id": "grantflow_deny_reason",
        "private_metadata": "req-9",
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "blocks": [
            {
                "type": "input",
                "block_id": "gf_deny_reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True},
            }
        ],
    }

    @app.action("grantflow_approve")
    def approve(ack: Any, body: dict[str, Any], respond: Any) -> None:
        ack()
        respond(replace_original=True, text="approved")
        events.append(("approve", body["actions"][0]["value"]))
        done.set()

    @app.action("grantflow_deny")
    def deny(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=modal)
        events.append(("deny", body["actions"][0]["value"]))
        done.set()

    @app.view("grantflow_deny_reason")
    def reason(ack: Any, view: dict[str, Any]) -> None:
        ack()
        events.append(
            (
                "reason",
                (view["private_metadata"], view["state"]["values"]["gf_deny_reason"]["reason"]["value"]),
            )
        )
        done.set()

    @app.command("/access")
    def command(ack: Any, command: dict[str, Any]) -> None:
        ack(f"you asked: {command['text']}")

    handler = SlackRequestHandler(app)

    async def endpoint(request: Request) -> Response:
        return await handler.handle(request)

    server = BackgroundServer(Starlette(routes=[Route("/slack/events", endpoint, methods=["POST"])]))
    url = server.start() + "/slack/events"
    try:
        posted = WebClient(token=BOT, base_url=slack.api_url).chat_postMessage(
            channel=bob,
            text="decide",
            blocks=[
                actions(
                    "gf_decide",
                    button("grantflow_approve", "req-9"),
                    button("grantflow_deny", "req-9", "Deny"),
                )
            ],
        )
        channel, ts = posted["channel"], posted["ts"]
        with SlackDriver(SECRET, url, slack=slack) as driver:
            assert driver.click_button(bob, channel, ts, "grantflow_approve", stale=True).status_code == 401
            assert (
                driver.click_button(bob, channel, ts, "grantflow_approve", tampered=True).status_code == 401
            )
            assert events == []

            for action in ("grantflow_deny", "grantflow_approve"):
                done.clear()
                assert driver.click_button(bob, channel, ts, action).status_code == 200
                assert done.wait(5)
            done.clear()
            reply = driver.submit_view(bob, values={"gf_deny_reason": {"reason": 'not "now"\n<sorry>'}})
            assert reply.status_code == 200 and done.wait(5)
            answer = driver.slash_command(bob, "/access", "status")
            assert answer.status_code == 200 and answer.text == "you asked: status"
    finally:
        server.stop()
    assert events == [("deny", "req-9"), ("approve", "req-9"), ("reason", ("req-9", 'not "now"\n<sorry>'))]
    assert slack.views(bob)[0]["callback_id"] == "grantflow_deny_reason"
    assert slack.responses[-1]["body"]["replace_original"] is True
    assert slack.message(channel, ts)["text"] == "approved"


def test_state_survives_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    """A restarted Slack keeps its members, DMs and messages: grantflow goes on updating the DMs people
    already have (``grantflow dev`` keeps ``.grantflow/slack.json``)."""
    state = tmp_path / "slack.json"
    first = SlackStandIn(bot_token=BOT, signing_secret=SECRET, clock=clock, state_file=state)
    bob = first.add_user("bob@corp.example", "Bob Builder")
    first.start()
    try:
        client = WebClient(token=BOT, base_url=first.api_url)
        dm = client.conversations_open(users=bob)["channel"]["id"]
        posted = client.chat_postMessage(channel=dm, text="approve req-1?")
    finally:
        first.stop()

    again = SlackStandIn(bot_token=BOT, signing_secret=SECRET, clock=clock, state_file=state)
    assert again.add_user("bob@corp.example", "Bob Builder") == bob  # the same member, not a new one
    again.start()
    try:
        client = WebClient(token=BOT, base_url=again.api_url)
        assert client.conversations_open(users=bob)["channel"]["id"] == dm
        client.chat_update(channel=dm, ts=posted["ts"], text="approved")
        assert [m["text"] for m in again.messages(dm)] == ["approved"]
        later = client.chat_postMessage(channel=dm, text="next")
        assert float(later["ts"]) > float(posted["ts"])
    finally:
        again.stop()
