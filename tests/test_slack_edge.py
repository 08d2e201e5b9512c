"""The Slack edge over real sockets: the web app (uvicorn on 127.0.0.1) with Bolt mounted, the Slack
stand-in playing Slack (signed clicks, modals, slash commands, Socket Mode), and the real stack behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from configuration.settings import Settings
from domain.requests import RequestStatus, RequestView
from integrations.slack import APPROVE_ACTION, DENY_ACTION, DENY_CALLBACK_ID, DENY_REASON_BLOCK, render_blocks
from integrations.vendor_setup import slack_api_base
from sandbox.slack import SlackDriver, SlackStandIn
from tests.builders import unsigned_interaction
from tests.rigs.edges import EdgeRig, SlackPeople, serving, settings_for
from tests.stack import Stack
from web.auth import TokenRegistry
from web.bodies import SLACK_BODY_LIMIT
from web.service import RequestService
from web.slack_app import (
    AccessCommand,
    CommandError,
    SlackEdge,
    build_slack_edge,
    parse_access_command,
)

BOT = "xoxb-test-grantflow"
APP = "xapp-1-test-grantflow"
SECRET = "test-slack-signing-secret"
PEOPLE = ("alice", "bob", "carol", "dan", "erin", "frank")
OUTSIDER = "zed@elsewhere.example"


# ----------------------------------------------------------------------------------- pure parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pg-prod admin 2h INC-1", AccessCommand("pg-prod", "admin", "2h", "INC-1")),
        (
            "billing-api 30m fix the  invoices\nplease",
            AccessCommand("billing-api", None, "30m", "fix the  invoices\nplease"),
        ),
        ("  k8s-prod view PT2H  INC-9 ", AccessCommand("k8s-prod", "view", "PT2H", "INC-9")),
        ("pg-prod admin 0h x", AccessCommand("pg-prod", "admin", "0h", "x")),  # the service refuses zero
        ("pg-prod 2hours INC-1", AccessCommand("pg-prod", None, "2hours", "INC-1")),  # … and "2hours"
    ],
)
def test_parse_access_command(text: str, expected: AccessCommand) -> None:
    assert parse_access_command(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Say what you need"),
        ("help", "Say what you need"),
        ("pg-prod", "The duration and the reason are missing"),
        ("pg-prod admin", "The duration is missing after the role 'admin'"),
        ("pg-prod admin two-hours INC-1", "'two-hours' is not a duration"),
        ("pg-prod admin 2h", "The reason is missing"),
        ("pg-prod 2h   ", "The reason is missing"),
    ],
)
def test_parse_access_command_says_what_is_wrong_and_how_to_use_it(text: str, problem: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_access_command(text, "/grant")
    assert problem in str(err.value)
    assert "Usage: `/grant <resource> [<role>] <duration> <reason…>`" in str(err.value)


def test_slack_api_base_accepts_the_stand_in_url_with_or_without_api() -> None:
    assert slack_api_base("") is None
    assert slack_api_base("http://127.0.0.1:9") == "http://127.0.0.1:9/api/"
    assert slack_api_base("http://127.0.0.1:9/api") == "http://127.0.0.1:9/api/"


def test_no_edge_without_a_bot_token_or_any_way_in(tmp_path: Any) -> None:
    service: Any = object()
    store: Any = object()
    assert build_slack_edge(Settings(state_dir=tmp_path), service, store) is None
    assert build_slack_edge(Settings(state_dir=tmp_path, slack_bot_token=BOT), service, store) is None


# ----------------------------------------------------------------------------------- the rig


@dataclass
class Rig(EdgeRig, SlackPeople):
    """The Slack edge in front of the stack's own worker; people are known by name (``alice``…, ``zed``)."""

    slack: SlackStandIn
    driver: SlackDriver
    edge: SlackEdge
    settings: Settings
    slack_users: dict[str, str]  # name -> Slack user id

    async def ask(self, view: RequestView, approver: str) -> tuple[str, str]:
        """Post the approver's decision message (as the channel activity would); its channel and ts."""
        ref = self.stack.ref(f"{approver}@example.com")
        text, blocks = render_blocks("request_created", view=view, recipient=ref)
        posted = await self.edge.client.chat_postMessage(
            channel=self.slack_users[approver], text=text, blocks=blocks
        )
        return str(posted["channel"]), str(posted["ts"])


@pytest_asyncio.fixture(loop_scope="session")
async def rig(stack: Stack) -> AsyncIterator[Rig]:
    slack = SlackStandIn(bot_token=BOT, app_token=APP, signing_secret=SECRET)
    slack.start()
    try:
        users = {name: slack.add_user(f"{name}@example.com", name.title()) for name in PEOPLE}
        users["zed"] = slack.add_user(OUTSIDER, "Zed Outsider")
        service = RequestService(
            stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings
        )
        settings = settings_for(stack.tmp_path, slack=slack, slack_app_token=APP)
        tokens = TokenRegistry(stack.tmp_path / "tokens.toml")
        async with serving(stack, settings, service, tokens=tokens) as web:
            edge = web.context.slack
            assert edge is not None
            with SlackDriver(SECRET, f"{web.url}/slack/events", slack=slack) as driver:
                yield Rig(
                    stack=stack,
                    service=service,
                    context=web.context,
                    url=web.url,
                    slack=slack,
                    driver=driver,
                    edge=edge,
                    settings=settings,
                    slack_users=users,
                )
    finally:
        slack.stop()


# ----------------------------------------------------------------------------------- buttons and modal


async def test_bob_approves_and_carol_denies_with_a_reason(rig: Rig) -> None:
    view = await rig.request("alice")
    rid = view.id
    at_bob = await rig.ask(view, "bob")
    clicked = await rig.click_at("bob", at_bob, APPROVE_ACTION)  # the button's own "<id>|request" value
    assert clicked.status_code == 200
    assert "1 of 2 approvals so far" in await rig.told("bob", f"You approved request {rid}")
    shown = await rig.service.show(rid)
    assert [(d.approver.email, d.channel, d.stage) for d in shown.approvals] == [
        ("bob@example.com", "slack", "request")
    ]

    at_carol = await rig.ask(shown, "carol")
    assert (await rig.click_at("carol", at_carol, DENY_ACTION)).status_code == 200
    opened = await rig.until(lambda: rig.slack.views(rig.slack_users["carol"]), "carol's deny modal")
    modal = opened[-1]
    assert modal["callback_id"] == DENY_CALLBACK_ID
    assert json.loads(modal["private_metadata"]) == {
        "request_id": rid,
        "channel": at_carol[0],
        "ts": at_carol[1],
        "stage": "request",
    }
    submitted = await rig.submit_deny_reason("carol", "not during the freeze")
    assert submitted.status_code == 200 and submitted.content in (b"", b"{}")  # ack: the modal closes
    await rig.told("carol", f"You denied request {rid}")
    denied = await rig.service.show(rid)
    assert denied.status is RequestStatus.DENIED
    assert [(d.approver.email, d.channel, d.reason) for d in denied.denials] == [
        ("carol@example.com", "slack", "not during the freeze")
    ]
    # the ledger keeps the identity, the channel and the Slack user id that clicked
    decided = [
        (e.kind, e.actor, e.channel, e.data.get("channel_user_id"))
        for e in rig.stack.store.ledger_entries(subject=rid)
        if e.kind in ("decision.approved", "decision.denied")
    ]
    assert decided == [
        ("decision.approved", "bob@example.com", "slack", rig.slack_users["bob"]),
        ("decision.denied", "carol@example.com", "slack", rig.slack_users["carol"]),
    ]


async def test_a_blank_deny_reason_is_shown_on_the_field(rig: Rig) -> None:
    view = await rig.request("erin", resource="pg-prod", role="read", reason="INC-3")
    at_dan = await rig.ask(view, "dan")
    await rig.click_at("dan", at_dan, DENY_ACTION, value=view.id)  # an old message: no stage in the value
    modal = (await rig.until(lambda: rig.slack.views(rig.slack_users["dan"]), "dan's deny modal"))[-1]
    assert json.loads(modal["private_metadata"])["stage"] == "request"
    answer = await rig.submit_deny_reason("dan", "   ")
    assert answer.status_code == 200
    assert answer.json() == {
        "response_action": "errors",
        "errors": {DENY_REASON_BLOCK: "Say why: the requester sees it"},
    }
    assert (await rig.service.show(view.id)).status is RequestStatus.PENDING


async def test_requester_ineligible_and_outsider_clicks_are_refused_and_recorded(rig: Rig) -> None:
    view = await rig.request("alice")
    rid = view.id
    for who in ("alice", "erin", "zed"):
        where = await rig.ask(view, "bob") if who == "zed" else await rig.ask(view, who)
        assert (await rig.click_at(who, where, APPROVE_ACTION)).status_code == 200
    assert "alice@example.com cannot approve their own request" in await rig.told("alice", "cannot approve")
    assert "erin@example.com is not an approver for pg-prod admin" in await rig.told(
        "erin", "not an approver"
    )
    assert await rig.told("zed", "not in the directory") == (
        f"your Slack account ({OUTSIDER}) is not in the directory; nothing was recorded"
    )
    await rig.until(lambda: len(rig.ledger(rid, "decision.refused")) == 3, "the three refusals")
    # Slack's clicks are acknowledged at once and handled concurrently: the ledger's order is theirs
    entries = sorted(rig.ledger(rid, "decision.refused"), key=lambda e: e.actor)
    assert [(e.actor, e.channel) for e in entries] == [
        ("alice@example.com", "slack"),
        ("erin@example.com", "slack"),
        (f"slack user {rig.slack_users['zed']}", "slack"),
    ]
    assert [e.data.get("channel_user_id") for e in entries[:2]] == [
        rig.slack_users["alice"],
        rig.slack_users["erin"],
    ]
    after = await rig.service.show(rid)
    assert after.status is RequestStatus.PENDING and after.approvals == [] and after.denials == []


async def test_stale_and_tampered_requests_get_401_and_change_nothing(rig: Rig) -> None:
    view = await rig.request("alice")
    where = await rig.ask(view, "bob")
    for forged in ({"stale": True}, {"tampered": True}):
        assert (await rig.click_at("bob", where, APPROVE_ACTION, **forged)).status_code == 401
        assert (await rig.slash("frank", "billing-api 1h INC-5", **forged)).status_code == 401
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(
            f"{rig.url}/slack/events",
            content=unsigned_interaction(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert unsigned.status_code == 401
    await asyncio.sleep(0.3)  # anything a forged request had started would have shown by now
    assert (await rig.service.show(view.id)).approvals == []
    assert rig.said_to("bob") == [] and rig.said_to("frank") == []
    assert await rig.service.list(requester_email="frank@example.com") == []
    assert rig.ledger(view.id, "decision.refused") == []


# ----------------------------------------------------------------------------------- slash command


async def test_slash_command_creates_a_pending_request_for_the_slack_user(rig: Rig) -> None:
    answer = await rig.slash("frank", "pg-prod admin 2h INC-77 fix the orders table")
    assert answer.status_code == 200
    assert answer.json()["text"] == "Asking for pg-prod admin for 2h…"
    told = await rig.told("frank", "Request `req-")
    [created] = await rig.service.list(requester_email="frank@example.com")
    assert created.status is RequestStatus.PENDING
    assert (created.resource, created.role, created.reason) == (
        "pg-prod",
        "admin",
        "INC-77 fix the orders table",
    )
    assert created.submitted_by == "frank@example.com"
    assert told.startswith(
        f"Request `{created.id}` for pg-prod / admin (2h) is PENDING: it needs 2 approval(s)"
    )
    assert "bob@example.com" in told and "carol@example.com" in told


async def test_bad_slash_commands_say_exactly_what_is_wrong(rig: Rig) -> None:
    immediate = {  # found by parsing: in the acknowledgement itself
        "": "Say what you need.",
        "pg-prod admin 2h": "The reason is missing",
        "pg-prod 1h INC-1": "pg-prod has several roles (admin, read): name one after the resource.",
    }
    for text, problem in immediate.items():
        answer = await rig.slash("frank", text)
        assert answer.status_code == 200
        assert problem in answer.json()["text"] and "Usage: `/access" in answer.json()["text"]
    later = {  # found by the service: in a message after the acknowledgement
        "nosuch admin 1h INC-1": "unknown resource 'nosuch'; known resources:",
        "pg-prod adnim 1h INC-1": "resource 'pg-prod' has no role 'adnim'; its roles are: admin, read",
        "pg-prod admin 2hours INC-1": "duration '2hours' is not understood",
        "pg-prod admin 0m INC-1": "duration '0m' is zero",
        "pg-prod admin 9h INC-1": "duration 9h is too long: 4h is the most pg-prod admin allows",
    }
    for text, problem in later.items():
        assert (await rig.slash("frank", text)).status_code == 200
        told = await rig.told("frank", problem)
        assert "nothing was requested" in told and "Usage: `/access" in told
    assert await rig.service.list(requester_email="frank@example.com") == []

    await rig.slash("frank", "billing-api 1h INC-8")
    first = await rig.told("frank", "is PENDING")
    await rig.slash("frank", "billing-api 2h INC-9 again")
    again = await rig.told("frank", "already has request")
    assert first.split("`")[1] in again and again.endswith("; nothing was requested")
    assert len(await rig.service.list(requester_email="frank@example.com")) == 1


async def test_a_slack_user_outside_the_directory_cannot_request(rig: Rig) -> None:
    await rig.slash("zed", "billing-api 1h INC-1")
    assert "is not in the directory" in await rig.told("zed", OUTSIDER)
    assert await rig.service.list(requester_email=OUTSIDER) == []


# ----------------------------------------------------------------------------------- Socket Mode


async def test_the_same_flows_over_socket_mode(rig: Rig) -> None:
    await rig.edge.start_socket_mode()
    try:
        await asyncio.to_thread(rig.slack.wait_for_socket)
        view = await rig.request("alice")
        channel, ts = await rig.ask(view, "dan")
        click = rig.driver.block_actions_payload(rig.slack_users["dan"], channel, ts, APPROVE_ACTION)
        envelope = await asyncio.to_thread(rig.slack.deliver_socket, "interactive", click)
        assert envelope.acked
        await rig.told("dan", f"You approved request {view.id}")
        assert [(d.approver.email, d.channel) for d in (await rig.service.show(view.id)).approvals] == [
            ("dan@example.com", "slack")
        ]

        command = rig.driver.slash_command_payload(
            rig.slack_users["erin"], "/access", "billing-api 1h INC-4 invoices"
        )
        envelope = await asyncio.to_thread(rig.slack.deliver_socket, "slash_commands", command)
        assert envelope.acked and envelope.ack_payload == {
            "text": "Asking for billing-api for 1h…",
            "response_type": "ephemeral",
        }
        await rig.told("erin", "is PENDING")
        [created] = await rig.service.list(requester_email="erin@example.com")
        assert (created.resource, created.status) == ("billing-api", RequestStatus.PENDING)

        bad = rig.driver.slash_command_payload(rig.slack_users["erin"], "/access", "billing-api")
        envelope = await asyncio.to_thread(rig.slack.deliver_socket, "slash_commands", bad)
        assert envelope.acked and envelope.ack_payload is not None
        assert "The duration and the reason are missing" in envelope.ack_payload["text"]
    finally:
        await rig.edge.stop_socket_mode()


async def test_garbage_oversized_and_unsigned_bodies_are_refused_before_anything_parses_them(
    rig: Rig,
) -> None:
    """The signature is checked over the raw bytes first: unsigned garbage is 401 (never a 500 with a
    traceback), a body past the limit 413, a signed body that is not a Slack payload 400."""
    url = f"{rig.url}/slack/events"
    before = len(rig.stack.store.ledger_entries())

    def post(content: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(url, content=content, headers=headers, timeout=10)

    garbage = b"\xff\xfe\x00payload=%%%{not json"
    unsigned = await asyncio.to_thread(post, garbage, {"Content-Type": "application/x-www-form-urlencoded"})
    assert unsigned.status_code == 401
    huge = b"payload=" + b"a" * (SLACK_BODY_LIMIT + 1)
    too_large = await asyncio.to_thread(post, huge, rig.driver.signed_headers("x"))
    assert too_large.status_code == 413 and "larger than" in too_large.json()["detail"]
    signed_garbage = await asyncio.to_thread(
        post, garbage, rig.driver.signed_headers(garbage.decode("latin-1"))
    )
    assert signed_garbage.status_code in (400, 401)  # never a 500
    text = "payload=%7Bnot-json"
    signed_nonsense = await asyncio.to_thread(post, text.encode(), rig.driver.signed_headers(text))
    assert signed_nonsense.status_code < 500
    assert len(rig.stack.store.ledger_entries()) == before  # nothing was recorded, nothing changed
