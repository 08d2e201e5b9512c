"""Contract test: every Slack Web API method grantflow calls, driven through grantflow's own code
(``integrations.slack.SlackChannel``, and the Slack edge's Socket Mode start) against the Slack stand-in over
127.0.0.1, with each recorded call checked against Slack's frozen Web API spec
(``../shared/specs/slack-web-openapi-v2.json``, the part of it in ``tests/contracts/slack.json``) for method
and field names only (``tests/slack_spec.py``).

What Slack added after the spec was frozen is allowed by name in ``tests/slack_spec.py``, each with its
reason; ``test_every_allowance_is_needed`` fails when one is no longer used or the spec has it after all,
and the negative tests prove the checker does report a misspelt argument, an unknown method and an invented
field.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from configuration.settings import Settings
from domain.requests import RequestView
from integrations.slack import SlackChannel, build_slack_client, render_blocks, render_view
from sandbox.hoop import ManualClock
from sandbox.slack import Call, SlackStandIn
from tests.builders import ALICE, BOB, T0, request_view
from tests.contracts import NOT_FROZEN_HINT
from tests.slack_spec import SlackSpecChecker, load_spec
from web.slack_app import build_slack_edge

SPEC = load_spec()

ROOT = Path(__file__).resolve().parents[1]
BOT = "xoxb-contract-grantflow"
APP = "xapp-1-contract-grantflow"

# Every Web API method grantflow calls: SlackChannel's (used by the channel activities and the Slack edge),
# and apps.connections.open, which slack_bolt's Socket Mode handler calls for the edge.
GRANTFLOW_METHODS = {
    "auth.test",
    "users.lookupByEmail",
    "users.info",
    "conversations.open",
    "conversations.history",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "views.open",
    "apps.connections.open",
}
# Every product module that uses slack_sdk (so a module added or moved is never left unchecked).
SOURCES = tuple(
    str(path.relative_to(ROOT))
    for package in ("activities", "integrations", "web", "grantflow")
    for path in sorted((ROOT / package).rglob("*.py"))
    if "slack_sdk" in path.read_text()
)


def pending_view() -> RequestView:
    """alice's request, waiting for bob."""
    return request_view(ALICE, id="req-7", eligible_approvers=[BOB], approvers_resolved=True)


@dataclass
class Recorded:
    calls: list[Call]


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn(bot_token=BOT, app_token=APP, signing_secret="s", clock=ManualClock(T0))
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def recorded(slack: SlackStandIn, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Recorded]:
    """What grantflow sends Slack, as the channel activities and the Slack edge send it."""
    bob = slack.add_user(BOB.email, "Bob Builder")
    slack.add_user(ALICE.email, "Alice Smith")
    view = pending_view()
    channel = SlackChannel(build_slack_client(BOT, base_url=slack.api_url, timeout=5))
    paged = SlackChannel(build_slack_client(BOT, base_url=slack.api_url, timeout=5), history_page_size=2)
    try:
        # health check, identity look-ups (one of them not found: its arguments are checked too)
        assert (await channel.bot_user_id()).startswith("U")
        assert await channel.user_id_for_email(BOB.email) == bob
        assert await channel.user_id_for_email("nobody@corp.example") is None
        assert await channel.email_for_user(bob) == BOB.email

        # the channel activities: ask an approver (posted once, found again), keep the message current
        text, blocks = render_blocks("request_created", view=view, recipient=BOB, link="https://g.example/r")
        key = "req-7:request:p-bob"
        ref = await channel.post_once(bob, text, blocks, key=key, metadata={"request_id": view.id})
        assert await channel.post_once(bob, text, blocks, key=key) == ref
        text, blocks = render_blocks(
            "request_updated", view=view, recipient=BOB, link="https://g.example/r", decision_open=False
        )
        assert await channel.update(ref, text, blocks) == ref
        alice = await channel.user_id_for_email(ALICE.email)
        assert alice is not None
        text, blocks = render_blocks("requester_outcome", view=view, recipient=ALICE)
        await channel.post_once(alice, text, blocks, key="req-7:pending", metadata={"status": "pending"})
        for i in range(3):  # enough messages that a look-up pages through the history with a cursor
            await paged.post_once(bob, f"later {i}", blocks, key=f"later-{i}")
        assert await paged.find_posted(bob, key) == ref
        assert any(c.params.get("cursor") for c in slack.calls_to("conversations.history"))

        # the Slack edge: the deny modal, and ephemeral answers (as _tell sends them, and with blocks)
        modal = render_view("deny_modal", view=view, origin=ref)
        assert (await channel.open_modal(slack.issue_trigger_id(bob), modal)).startswith("V")
        dm = await channel.open_dm(bob)
        assert await channel.post_ephemeral(dm, bob, "You denied request req-7")
        assert await channel.post_ephemeral(dm, bob, "blocks too", blocks=blocks)

        # the Slack edge over Socket Mode, wired as grantflow wires it
        settings = Settings(
            state_dir=tmp_path_factory.mktemp("slack-contract"),
            slack_bot_token=BOT,
            slack_app_token=APP,
            slack_api_url=slack.url,
        )
        nothing: Any = object()  # connecting uses neither the service nor the store
        edge = build_slack_edge(settings, nothing, nothing)
        assert edge is not None
        try:
            await edge.start_socket_mode()
            await asyncio.to_thread(slack.wait_for_socket)
        finally:
            await edge.aclose()

        assert not any(c.injected for c in slack.calls)
        yield Recorded(calls=list(slack.calls))
    finally:
        await paged.aclose()
        await channel.aclose()


@pytest.fixture
def checker() -> SlackSpecChecker:
    return SlackSpecChecker(SPEC)


def test_every_call_uses_the_spec_names(recorded: Recorded, checker: SlackSpecChecker) -> None:
    problems = checker.check_all(recorded.calls)
    assert problems == [], "drift from Slack's Web API spec:\n" + "\n".join(problems)


def test_every_allowance_is_needed(recorded: Recorded, checker: SlackSpecChecker) -> None:
    checker.check_all(recorded.calls)
    assert checker.allowances() - checker.used == set(), "allowed names no longer sent or answered"
    # and the frozen spec really lacks each of them
    for method in checker.newer_methods:
        assert checker.operations(method) == [], method
    for method, params in checker.newer_params.items():
        assert checker.operations(method), method
        assert not set(params) & checker.declared_params(method), method
    for method, fields in checker.newer_fields.items():
        assert checker.operations(method), method
        assert not set(fields) & checker.declared_fields(method), method


def test_the_scenario_covers_every_method_grantflow_calls(recorded: Recorded) -> None:
    called = set()
    for source in SOURCES:
        text = (ROOT / source).read_text()
        # slack_sdk's method names are the Web API's with "." as "_": chat_postMessage -> chat.postMessage
        called |= {m.replace("_", ".") for m in re.findall(r"\b_?client\.([a-z]+(?:_[A-Za-z]+)+)\(", text)}
        called |= set(re.findall(r"\bapi_call\(\s*[\"']([\w.]+)[\"']", text))
    assert called, "found no Web API calls in grantflow's sources"
    assert called <= GRANTFLOW_METHODS, f"grantflow calls methods this test does not know: {called}"
    seen = {
        c.method
        for c in recorded.calls
        if c.status == 200 and isinstance(c.response, dict) and c.response["ok"]
    }
    assert GRANTFLOW_METHODS <= seen, f"never called successfully: {GRANTFLOW_METHODS - seen}"


def test_without_the_allowances_the_calls_fail(recorded: Recorded) -> None:
    strict = SlackSpecChecker(SPEC, newer_methods={}, newer_params={}, newer_fields={})
    problems = strict.check_all(recorded.calls)
    assert "apps.connections.open: no such method in the spec" in problems
    assert any(p.startswith("chat.postMessage: argument 'metadata'") for p in problems)
    assert any(p.startswith("conversations.history: argument 'include_all_metadata'") for p in problems)
    assert any(p.startswith("conversations.history: answer field 'response_metadata'") for p in problems)
    assert any(p.startswith("views.open: answer field 'view'") for p in problems)


# ---------------------------------------------------------------------- the checker rejects drift


def test_a_misspelt_argument_and_an_unknown_method_are_reported(checker: SlackSpecChecker) -> None:
    misspelt = Call("chat.postMessage", {"chanel": "C1", "text": "hi"}, 200, {"ok": False, "error": "x"})
    unknown = Call("chat.postMesage", {"channel": "C1"}, 404, {"ok": False, "error": "unknown_method"})
    problems = checker.check_all([misspelt, unknown])
    assert len(problems) == 2, problems
    assert "chat.postMessage: argument 'chanel' is not declared by the spec" in problems[0]
    assert problems[1] == "chat.postMesage: no such method in the spec"
    # in the spec, but not among the methods frozen for the stand-in
    assert checker.check(Call("chat.delete", {"channel": "C1"}, 200, {"ok": True})) == [
        f"chat.delete {NOT_FROZEN_HINT}"
    ]


def test_invented_fields_and_misplaced_allowances_are_reported(checker: SlackSpecChecker) -> None:
    posted = {"ok": True, "channel": "D1", "ts": "1.000001", "message": {}}
    assert checker.check(Call("chat.postMessage", {"channel": "D1", "text": "hi"}, 200, posted)) == []
    invented = Call("chat.postMessage", {"channel": "D1", "text": "hi"}, 200, {**posted, "permalink": "x"})
    assert checker.check(invented) == [
        "chat.postMessage: answer field 'permalink' is not in the spec "
        "(has ['channel', 'message', 'ok', 'ts'])"
    ]
    # a failed answer's fields are Slack's error shape, not the method's: not checked
    failed = Call("chat.postMessage", {"channel": "D1"}, 200, {"ok": False, "error": "no_text", "x": 1})
    assert checker.check(failed) == []
    # an allowance holds for its method only
    update = Call("chat.update", {"channel": "D1", "ts": "1.000001", "metadata": {}}, 200, None)
    assert checker.check(update) == [
        "chat.update: argument 'metadata' is not declared by the spec "
        "(has ['as_user', 'attachments', 'blocks', 'channel', 'link_names', 'parse', 'text', 'token', 'ts'])"
    ]
    socket = Call("apps.connections.open", {"app_id": "A1"}, 200, {"ok": True, "url": "wss://x", "tix": 1})
    problems = checker.check(socket)
    assert len(problems) == 2 and "'app_id'" in problems[0] and "'tix'" in problems[1], problems
