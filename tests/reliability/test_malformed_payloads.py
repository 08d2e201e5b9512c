"""Malformed, oversized and deeply nested payloads sent to the webhooks anyone on the internet can reach:
Slack's ``/slack/events`` (interactions and slash commands), Jira's ``/jira/webhook``, and the web review
page's form (``/review/{token}``, the signed link approvers decide through).

The web app runs with both edges configured in front of the Slack and Jira stand-ins and the stack's own
worker. Each payload is sent as a forger would (unsigned, stale) and, more to the point, correctly signed —
a signature says who sent the bytes, not that they make sense. Each must get a clear answer: a 4xx with
``{"error", "detail"}`` (an HTML page for the review form), or — where Slack demands a 200 (an interaction
from a real person) — a 200 and an ephemeral message telling that person what was wrong. And each must
change nothing: no ledger entry other than a refused attempt, no request, no workflow started, and no
traceback in the logs. Counts go to ``record("malformed-payloads", ...)``.

grantflow has no webhook from hoop: hoop's reviews are discovered by polling (hoop sends "review pending"
nowhere but its own runbooks), so there is no hoop endpoint to send payloads to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from slack_sdk.signature import SignatureVerifier

from integrations.slack import APPROVE_ACTION, DENY_CALLBACK_ID
from sandbox.jira import JiraStandIn
from sandbox.slack import SlackStandIn
from tests.builders import jira_webhook_headers
from tests.reliability.results import record
from tests.rigs.edges import serving, settings_for
from tests.stack import Stack
from web.auth import TokenRegistry
from web.bodies import JIRA_BODY_LIMIT, SLACK_BODY_LIMIT
from web.pages import COOKIE, csrf_token
from web.service import RequestService

pytestmark = [pytest.mark.long, pytest.mark.reliability]

SLACK_BOT, SLACK_SECRET = "xoxb-malformed", "malformed-slack-secret"
JIRA_USER, JIRA_TOKEN, JIRA_SECRET = "grantflow-bot@example.com", "jira-api-token", "malformed-jira-secret"
DEEP = 100_000
"""Nesting depth of the deeply nested payloads: under both body limits, far past Python's recursion limit."""


@dataclass
class Rig:
    url: str
    stack: Stack
    slack: SlackStandIn
    alice_slack: str
    csrf_key: bytes


@pytest_asyncio.fixture(loop_scope="session")
async def rig(stack: Stack) -> AsyncIterator[Rig]:
    slack = SlackStandIn(bot_token=SLACK_BOT, signing_secret=SLACK_SECRET)
    slack.start()
    jira = JiraStandIn(users={JIRA_USER: JIRA_TOKEN})
    jira.add_project("ACC")
    jira.start()
    try:
        alice = slack.add_user("alice@example.com", "Alice")
        settings = settings_for(
            stack.tmp_path,
            slack=slack,
            jira=jira,
            jira_user=(JIRA_USER, JIRA_TOKEN),
            jira_webhook_secret=JIRA_SECRET,
            jira_intake_project="ACC",
        )
        service = RequestService(
            stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings
        )
        async with serving(
            stack, settings, service, tokens=TokenRegistry(stack.tmp_path / "tokens.toml")
        ) as web:
            assert web.context.slack is not None and web.context.jira is not None
            yield Rig(url=web.url, stack=stack, slack=slack, alice_slack=alice, csrf_key=web.context.csrf_key)
    finally:
        jira.stop()
        slack.stop()


@pytest.fixture
def tracebacks() -> Iterator[list[logging.LogRecord]]:
    """Every log record carrying a traceback while the test runs (any logger)."""
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                caught.append(record)

    handler = Catch(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield caught
    finally:
        root.removeHandler(handler)


# ----------------------------------------------------------------------------------- signing


def slack_headers(body: bytes, *, stale: bool = False) -> dict[str, str]:
    timestamp = str(int(time.time()) - (600 if stale else 0))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(
        timestamp=timestamp, body=body.decode("utf-8")
    )
    assert signature is not None
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


def interaction(payload: Any) -> bytes:
    """An interaction as Slack sends it: the JSON payload form-encoded as ``payload=``."""
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return urllib.parse.urlencode({"payload": raw}).encode()


def deep(opening: str, closing: str, inner: str = "", depth: int = DEEP) -> str:
    return opening * depth + inner + closing * depth


# ----------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    headers: dict[str, str]
    expect: frozenset[int]
    ephemeral: bool = False
    """A 200 that Slack needs: the person who acted is told, ephemerally, what was wrong."""
    page: bool = False
    """The review form answers people in a browser: an HTML page saying what is wrong, not JSON."""


def slack_cases(rig: Rig) -> list[Case]:
    def signed(name: str, body: bytes, *expect: int, ephemeral: bool = False) -> Case:
        return Case(f"slack: {name}", body, slack_headers(body), frozenset(expect), ephemeral)

    def click(value: Any, **more: Any) -> dict[str, Any]:
        response_url = rig.slack.issue_response_url(
            rig.slack.dm_channel(rig.alice_slack), None, rig.alice_slack
        )
        return {
            "type": "block_actions",
            "user": {"id": rig.alice_slack},
            "actions": [{"action_id": APPROVE_ACTION, "block_id": "b", "type": "button", "value": value}],
            "response_url": response_url,
            "trigger_id": rig.slack.issue_trigger_id(rig.alice_slack),
            **more,
        }

    alice = rig.alice_slack
    garbage = b"\xff\xfe\x00{{{"
    cases = [
        Case("slack: unsigned garbage", garbage, {"Content-Type": "text/plain"}, frozenset({400, 401})),
        Case(
            "slack: forged signature",
            interaction(click("req-000000000000")),
            {**slack_headers(b"something else"), "Content-Type": "application/x-www-form-urlencoded"},
            frozenset({401}),
        ),
        Case(
            "slack: stale signature",
            interaction(click("req-000000000000")),
            slack_headers(interaction(click("req-000000000000")), stale=True),
            frozenset({401}),
        ),
        signed("empty body", b"", 400),
        signed("form without a payload", b"a=1&b=2", 400),
        signed("payload is not JSON", b"payload=%7Bnot%20json", 400),
        signed("payload is a JSON array", interaction([1, 2]), 400),
        signed("payload is a JSON string", interaction('"block_actions"'), 400),
        signed("payload is null", interaction("null"), 400),
        signed("payload without a type", interaction({}), 400),
        signed(
            "payload of an unknown type", interaction({"type": "no_such_type", "user": {"id": alice}}), 400
        ),
        signed("block_actions without user or actions", interaction({"type": "block_actions"}), 400),
        signed("block_actions whose user is a string", interaction(click("req-1", user=alice)), 400),
        signed("block_actions whose actions are not a list", interaction(click("x", actions="approve")), 400),
        signed("block_actions with an empty action list", interaction(click("x", actions=[])), 400),
        signed("payload nested 100,000 deep", interaction(deep("[", "]")), 400),
        signed(
            "block_actions whose user is nested 20,000 deep",
            interaction('{"type":"block_actions","user":' + deep('{"id":', "}", '"U1"', depth=20_000) + "}"),
            400,
        ),
        signed(
            "view_submission without a view",
            interaction({"type": "view_submission", "user": {"id": alice}}),
            400,
        ),
        signed(
            "view_submission whose view is a string",
            interaction({"type": "view_submission", "user": {"id": alice}, "view": "deny"}),
            400,
        ),
        signed(
            "view_submission whose view has no type",
            interaction(
                {"type": "view_submission", "user": {"id": alice}, "view": {"callback_id": DENY_CALLBACK_ID}}
            ),
            400,
        ),
        signed(
            "deny form with garbage metadata and state (the form shows the error)",
            interaction(
                {
                    "type": "view_submission",
                    "user": {"id": alice},
                    "view": {
                        "type": "modal",
                        "callback_id": DENY_CALLBACK_ID,
                        "private_metadata": "{\x00" * 500,
                        "state": {"values": [1, 2, 3]},
                    },
                }
            ),
            200,
        ),
        signed(
            "slash command without a user",
            urllib.parse.urlencode({"command": "/access", "text": "x"}).encode(),
            400,
        ),
        signed(
            "slash command of 900 KB",
            urllib.parse.urlencode({"command": "/access", "text": "a " * 300_000, "user_id": alice}).encode(),
            200,
        ),
        signed("approve an unknown request", interaction(click("req-nope|nonsense")), 200, ephemeral=True),
        signed("approve with a number as the value", interaction(click(12345)), 200, ephemeral=True),
        signed("approve with NULs as the value", interaction(click("\x00" * 1000)), 200, ephemeral=True),
        Case(
            "slack: declared larger than the limit",
            b"payload=" + b"a" * (SLACK_BODY_LIMIT + 1),
            slack_headers(b"x"),
            frozenset({413}),
        ),
    ]
    return cases


def jira_cases() -> list[Case]:
    def signed(name: str, body: bytes | str, *expect: int) -> Case:
        raw = body.encode() if isinstance(body, str) else body
        return Case(f"jira: {name}", raw, jira_webhook_headers(raw, JIRA_SECRET), frozenset(expect))

    def updated(**payload: Any) -> str:
        return json.dumps({"webhookEvent": "jira:issue_updated", "timestamp": 1, **payload})

    status = {"field": "status", "fieldtype": "jira", "from": "1", "to": "10001", "toString": "Approved"}
    return [
        Case(
            "jira: unsigned",
            b'{"webhookEvent":"jira:issue_updated"}',
            jira_webhook_headers(b"{}"),
            frozenset({401}),
        ),
        signed("empty body", b"", 400),
        signed("not JSON", b"\xff\xfe{{", 400),
        signed("a JSON array", "[1, 2, 3]", 400),
        signed("nested 100,000 deep", deep("[", "]"), 400),
        signed("an object nested 100,000 deep", '{"webhookEvent":' + deep('{"a":', "}", "1") + "}", 400),
        signed("no webhookEvent", "{}", 400),
        signed("webhookEvent is a list", '{"webhookEvent": ["jira:issue_updated"]}', 400),
        signed("changelog is a string", updated(changelog="status: Approved", issue={"key": "ACC-1"}), 400),
        signed("changelog items are not a list", updated(changelog={"id": "1", "items": "status"}), 400),
        signed("a status change without an issue", updated(changelog={"id": "2", "items": [status]}), 400),
        signed(
            "a status change whose issue is a list",
            updated(changelog={"id": "3", "items": [status]}, issue=["ACC-1"]),
            400,
        ),
        signed(
            "a status change whose labels are a string",
            updated(
                changelog={"id": "4", "items": [status]},
                issue={"key": "ACC-1", "fields": {"labels": "grantflow-req-000000000000"}},
            ),
            400,
        ),
        signed(
            "a status change by an accountId that is an object (not grantflow's ticket: ignored)",
            updated(
                changelog={"id": "5", "items": [status]},
                issue={"key": "ACC-1", "fields": {"labels": ["other"]}},
                user={"accountId": {"nested": True}},
            ),
            200,
        ),
        signed(
            "issue_created whose issue is a number",
            json.dumps({"webhookEvent": "jira:issue_created", "issue": 7}),
            400,
        ),
        signed(
            "issue_created whose fields are a list",
            json.dumps({"webhookEvent": "jira:issue_created", "issue": {"key": "ACC-9", "fields": [1]}}),
            400,
        ),
        signed("an event grantflow does not act on", json.dumps({"webhookEvent": "comment_created"}), 200),
        Case(
            "jira: declared larger than the limit",
            b"{" + b" " * (JIRA_BODY_LIMIT + 1),
            jira_webhook_headers(b"{}", JIRA_SECRET),
            frozenset({413}),
        ),
    ]


def review_cases(rig: Rig) -> list[tuple[str, Case]]:
    """The review page's form, behind links for a request that does not exist: forged and garbled links,
    forms that cannot be read, forms without their CSRF value, and a verdict that is neither."""
    bob = rig.stack.ref("bob@example.com").id
    link = rig.stack.links.token("req-000000000000", bob)
    nonce = "n" * 24
    cookie = f"{COOKIE}={nonce}"
    csrf = csrf_token(rig.csrf_key, link, nonce)
    form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}

    def post(name: str, token: str, body: bytes, headers: dict[str, str], *expect: int) -> tuple[str, Case]:
        return f"/review/{token}", Case(f"review page: {name}", body, headers, frozenset(expect), page=True)

    def fields(**values: str) -> bytes:
        return urllib.parse.urlencode(values).encode()

    return [
        post("a forged link", "x" * 40, fields(verdict="approve", csrf=csrf), form, 403),
        post("a link of 8,000 characters", "A." * 4000, fields(verdict="approve"), form, 403, 404, 414),
        post("a link of NULs", "%00" * 30, fields(verdict="approve"), form, 403),
        post(
            "a form that is not a form",
            link,
            b"\xff\xfe--",
            {**form, "Content-Type": "multipart/form-data"},
            400,
        ),
        post(
            "a multipart form with a broken boundary",
            link,
            b'--x\r\nContent-Disposition: form-data; name="verdict"\r\n\r\napprove',
            {**form, "Content-Type": "multipart/form-data; boundary=x"},
            400,
            403,
        ),
        post("no CSRF value", link, fields(verdict="approve"), form, 403),
        post("a verdict that is neither", link, fields(verdict="maybe", csrf=csrf), form, 400),
        post(
            "a reason of 500 KB and a stage of garbage",
            link,
            fields(verdict="deny", csrf=csrf, reason="r" * 500_000, stage="\x00" * 100),
            form,
            404,
        ),
    ]


# ----------------------------------------------------------------------------------- the scenario


async def test_malformed_payloads_get_a_clear_answer_and_change_nothing(
    rig: Rig, tracebacks: list[logging.LogRecord]
) -> None:
    store = rig.stack.store
    ledger_before = len(store.ledger_entries())
    workflows_before = await _workflows(rig.stack)
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    told_before = len(rig.slack.responses)
    async with httpx.AsyncClient(base_url=rig.url, timeout=60) as http:
        targets = [("/slack/events", c) for c in slack_cases(rig)] + [
            ("/jira/webhook", c) for c in jira_cases()
        ]
        for path, case in targets + review_cases(rig):
            answer = await http.post(path, content=case.body, headers=case.headers)
            counts[f"{path.split('/')[1]} payloads"] += 1
            counts[f"{answer.status_code // 100}xx"] += 1
            problem = _judge(case, answer)
            if problem:
                wrong.append(f"{case.name}: {problem}")
            if case.ephemeral and answer.status_code == 200:
                told = await _told_since(rig, told_before)
                told_before = len(rig.slack.responses)
                if told:
                    counts["200 with an ephemeral message"] += 1
                else:
                    wrong.append(f"{case.name}: 200 but nobody was told what was wrong")

    added = store.ledger_entries()[ledger_before:]
    changes = [e.kind for e in added if e.kind != "decision.refused"]
    started = (await _workflows(rig.stack)) - workflows_before
    record(
        "malformed-payloads",
        title="Malformed, oversized and deeply nested webhook payloads",
        injected=(
            f"{counts['slack payloads']} payloads to /slack/events, {counts['jira payloads']} to "
            f"/jira/webhook and {counts['review payloads']} forms to the review page: unsigned, stale, not "
            "JSON, JSON of the wrong shape, nested 100,000 deep, larger than the body limit, values of the "
            "wrong type (most of them correctly signed); forged links, unreadable forms, no CSRF value"
        ),
        counts={
            "payloads": counts["slack payloads"] + counts["jira payloads"] + counts["review payloads"],
            "4xx": counts["4xx"],
            "2xx": counts["2xx"],
            "200 with an ephemeral message": counts["200 with an ephemeral message"],
            "5xx": counts["5xx"],
            "wrong answers": len(wrong),
            "ledger changes (other than refused attempts)": len(changes),
            "workflows started": len(started),
            "tracebacks logged": len(tracebacks),
        },
        outcome=(
            "every payload got a clear 4xx (or Slack's 200 with an ephemeral message) and changed nothing"
            if not (wrong or changes or started or tracebacks)
            else "a payload got an unclear answer, changed something or logged a traceback"
        ),
    )
    assert not wrong, "\n".join(wrong)
    assert counts["5xx"] == 0
    assert not changes, changes
    assert not started, started
    assert not tracebacks, [f"{r.name}: {r.getMessage()}" for r in tracebacks]
    assert store.list_requests() == []


def _judge(case: Case, answer: httpx.Response) -> str | None:
    if answer.status_code not in case.expect:
        return f"{answer.status_code} (expected {sorted(case.expect)}): {answer.text[:300]}"
    if case.page:
        shown = answer.headers.get("content-type", "").startswith("text/html") and "</h1>" in answer.text
        return None if shown else f"{answer.status_code} without a page saying why: {answer.text[:200]!r}"
    if 400 <= answer.status_code < 500:
        try:
            doc = answer.json()
        except ValueError:
            return f"{answer.status_code} without a JSON body: {answer.text[:200]!r}"
        if not (isinstance(doc, dict) and doc.get("error") and doc.get("detail")):
            return f"{answer.status_code} without error and detail: {doc!r}"
    return None


async def _told_since(rig: Rig, before: int) -> bool:
    for _ in range(200):
        if len(rig.slack.responses) > before:
            return True
        await asyncio.sleep(0.05)
    return False


async def _workflows(stack: Stack) -> set[str]:
    return {w.id async for w in stack.env.client.list_workflows(f"TaskQueue = '{stack.task_queue}'")}
