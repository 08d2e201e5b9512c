"""grantflow's Jira adapter (``integrations/jira_tickets.py``) with the real ``jira`` client against the Jira
stand-in: idempotent tickets, error translation, transitions by name, people, webhook signatures and
changelog parsing, and the Jira templates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import jinja2
import pytest
from jira import JIRA

from domain.durations import format_duration
from domain.identity import PersonRef
from domain.policy import RolePolicy
from domain.requests import EndReason, RequestStatus, RequestView, Verdict
from integrations.jira_tickets import (
    JiraAuthError,
    JiraNotFoundError,
    JiraPermanentError,
    JiraRefusedError,
    JiraTickets,
    JiraTransientError,
    JiraWorkflowError,
    StatusChange,
    TicketStatus,
    build_jira,
    parse_retry_after,
    parse_status_change,
    verify_webhook_signature,
)
from sandbox.hoop import ManualClock
from sandbox.jira import JiraStandIn
from templates import template_environment
from tests import builders
from tests.builders import issue_updated, status_item
from tests.test_jira_standin import BOT, FAST_RETRIES, SECRET, T0, TOKEN, WebhookReceiver, seed

TRANSITIONS = {"Approve": "Approved", "Deny": "Denied", "Close": "Done", "Cancel": "Cancelled"}
DAVE_ACCOUNT = "712020:dave-from-config"


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    endpoint = WebhookReceiver()
    endpoint.start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def jira(receiver: WebhookReceiver) -> Iterator[JiraStandIn]:
    receiver.reset()
    stand_in = JiraStandIn(
        users={BOT: TOKEN},
        webhook_secret=SECRET,
        webhook_url=receiver.url,
        clock=ManualClock(T0),
        webhook_retry_delays=FAST_RETRIES,
    )
    seed(stand_in)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def client(jira: JiraStandIn) -> Iterator[JIRA]:
    jira_client = build_jira(jira.url, BOT, TOKEN, timeout=5)
    yield jira_client
    jira_client.close()


def make_tickets(client: JIRA, **overrides: Any) -> JiraTickets:
    options: dict[str, Any] = {
        "project_key": "ACC",
        "issue_type": "Task",
        "transition_names": TRANSITIONS,
        "account_ids": {"dave@corp.example": DAVE_ACCOUNT},
        **overrides,
    }
    return JiraTickets(client, **options)


@pytest.fixture
def tickets(client: JIRA) -> JiraTickets:
    return make_tickets(client)


def open_one(tickets: JiraTickets, label: str = "req-1") -> str:
    return tickets.open_ticket(label=label, summary="alice@corp.example: pg-prod admin", description="why")


def posts(jira: JiraStandIn, api_path: str) -> int:
    return sum(1 for c in jira.calls if c.method == "POST" and c.api_path == api_path)


# ---------------------------------------------------------------------- the client


def test_build_jira_talks_to_cloud_without_client_retries(jira: JiraStandIn, client: JIRA) -> None:
    assert client._is_cloud  # accountIds, not usernames
    assert client._session.max_retries == 0
    assert [c.api_path for c in jira.calls] == ["/serverInfo"]
    jira.fail_next("/issue", 503, retry_after=30, method="GET")
    started = time.monotonic()
    with pytest.raises(JiraTransientError) as unavailable:
        make_tickets(client).status("ACC-1")
    assert time.monotonic() - started < 1  # the client did not sleep and retry
    assert (unavailable.value.status, unavailable.value.retry_after) == (503, 30)  # for the activity's retry
    assert sum(1 for c in jira.calls if c.api_path == "/issue/ACC-1") == 1


def test_build_jira_with_a_wrong_token_or_no_server(jira: JiraStandIn) -> None:
    with pytest.raises(JiraAuthError) as refused:
        build_jira(jira.url, BOT, "wrong")
    assert refused.value.status == 401
    unused = JiraStandIn(users={BOT: TOKEN})
    url = unused.start()
    unused.stop()  # nothing listens there now
    with pytest.raises(JiraTransientError, match="ConnectionError"):
        build_jira(url, BOT, TOKEN, timeout=2)


# ---------------------------------------------------------------------- opening tickets


def test_open_ticket_creates_once_and_finds_it_after(
    jira: JiraStandIn, tickets: JiraTickets, client: JIRA
) -> None:
    bob = jira.account_id("bob@corp.example")
    key = tickets.open_ticket(
        label="req-1",
        summary="alice@corp.example asks for pg-prod admin\nfor 1h",
        description="Reason: incident 42",
        assignee_account_id=bob,
        labels=["jit", "grantflow-req-1"],
        fields={"customfield_10050": "pg-prod"},
    )
    issue = jira.issue(key)["fields"]
    assert issue["summary"] == "alice@corp.example asks for pg-prod admin for 1h"  # one line, as Jira needs
    assert issue["labels"] == ["grantflow-req-1", "jit"]
    assert issue["assignee"]["accountId"] == bob
    assert issue["customfield_10050"] == "pg-prod"
    assert issue["description"] == "Reason: incident 42"
    assert tickets.find_issue("req-1") == key == tickets.find_issue("grantflow-req-1")
    assert tickets.open_ticket(label="req-1", summary="again", description="again") == key
    assert posts(jira, "/issue") == 1
    assert tickets.find_issue("req-2") is None
    long = tickets.open_ticket(label="req-3", summary="x" * 300, description="d")
    assert len(jira.issue(long)["fields"]["summary"]) == 255
    with pytest.raises(ValueError, match="cannot be a Jira label"):
        tickets.open_ticket(label="has space", summary="s", description="d")


def test_an_issue_in_an_adopted_project_is_found_and_no_ticket_is_opened(
    jira: JiraStandIn, client: JIRA
) -> None:
    """A request made in an intake issue has that issue as its ticket: looking the label up must search
    the intake project too, or a retried activity would open a second ticket."""
    jira.add_project("REQ", "Access intake")
    fields = {"project": {"key": "REQ"}, "issuetype": {"name": "Task"}, "summary": "pg-prod please"}
    asked = str(client.create_issue(fields={**fields, "labels": ["grantflow-req-9"]}, prefetch=False).key)
    assert make_tickets(client).find_issue("req-9") is None  # ACC only: the intake issue is not seen
    adopting = make_tickets(client, adopted_projects=["REQ", ""])
    assert adopting.searched_projects == ["ACC", "REQ"]
    assert adopting.find_issue("req-9") == asked
    assert open_one(adopting, "req-9") == asked
    assert posts(jira, "/issue") == 1  # the intake issue itself
    assert [i["key"] for i in jira.issues(label="grantflow-req-9")] == [asked]


def test_open_ticket_after_a_lost_reply_opens_no_second_ticket(
    jira: JiraStandIn, tickets: JiraTickets
) -> None:
    jira.drop_next("/issue", method="POST", after_write=True)  # Jira created it; the reply never came
    with pytest.raises(JiraTransientError):
        open_one(tickets)
    key = open_one(tickets)  # the activity's retry
    assert [i["key"] for i in jira.issues(label="grantflow-req-1")] == [key]
    assert posts(jira, "/issue") == 1
    jira.drop_next("/issue", method="POST")  # dropped before Jira wrote anything
    with pytest.raises(JiraTransientError):
        open_one(tickets, "req-2")
    assert jira.issues(label="grantflow-req-2") == []
    second = open_one(tickets, "req-2")
    assert [i["key"] for i in jira.issues(label="grantflow-req-2")] == [second]


def test_429_carries_retry_after(jira: JiraStandIn, tickets: JiraTickets) -> None:
    jira.fail_next("/issue", 429, retry_after=7, method="POST")
    with pytest.raises(JiraTransientError) as limited:
        open_one(tickets)
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
    assert posts(jira, "/issue") == 1  # not retried by the client
    later = datetime.now(UTC) + timedelta(seconds=30)
    jira.fail_next("/search/jql", 429, retry_after=format_datetime(later, usegmt=True))
    with pytest.raises(JiraTransientError) as dated:
        open_one(tickets)
    assert dated.value.retry_after is not None and 25 < dated.value.retry_after <= 30


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(jira: JiraStandIn, tickets: JiraTickets, status: int) -> None:
    jira.fail_next("/issue", status, method="POST")
    with pytest.raises(JiraTransientError) as failed:
        open_one(tickets)
    assert failed.value.status == status and failed.value.retry_after is None
    assert open_one(tickets)  # and the retry works


def test_400_is_permanent_with_jiras_field_message(jira: JiraStandIn, client: JIRA) -> None:
    tickets = make_tickets(client, extra_fields={"customfield_99999": "x"})
    with pytest.raises(JiraRefusedError) as refused:
        open_one(tickets)
    error = refused.value
    assert isinstance(error, JiraPermanentError) and error.status == 400
    message = "Field 'customfield_99999' cannot be set. It is not on the appropriate screen, or unknown."
    assert error.field_errors == {"customfield_99999": message}
    assert message in str(error)
    wrong_type = make_tickets(client, issue_type="Bug")
    with pytest.raises(JiraRefusedError, match=r"issuetype: The issue type selected is invalid\."):
        open_one(wrong_type)


def test_404_and_403_are_permanent(jira: JiraStandIn, tickets: JiraTickets) -> None:
    with pytest.raises(JiraNotFoundError) as missing:
        tickets.status("ACC-404")
    assert "Issue does not exist" in str(missing.value)
    jira.fail_next("/issue", 403)
    with pytest.raises(JiraAuthError):
        tickets.status("ACC-1")


def test_parse_retry_after() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Mon, 02 Mar 2026 09:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Mon, 02 Mar 2026 08:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# ---------------------------------------------------------------------- transitions, comments, assignees


def test_transitions_by_name_do_nothing_when_already_there(jira: JiraStandIn, tickets: JiraTickets) -> None:
    key = open_one(tickets)
    assert tickets.status(key) == TicketStatus("10000", "Waiting for approval", "new")
    assert tickets.transition(key, "approve", comment="approved by bob@corp.example") is True
    assert tickets.status(key) == ("10001", "Approved", "indeterminate")
    assert jira.comments(key) == ["approved by bob@corp.example"]
    moves = posts(jira, f"/issue/{key}/transitions")
    assert tickets.transition(key, "APPROVE", comment="again") is False
    assert posts(jira, f"/issue/{key}/transitions") == moves and jira.comments(key) == [
        "approved by bob@corp.example"
    ]
    with pytest.raises(JiraWorkflowError, match="offers no transition 'Deny' from there"):
        tickets.transition(key, "Deny")
    with pytest.raises(ValueError, match="not configured"):
        tickets.transition(key, "Reopen")
    assert tickets.transition(key, "close") is True
    assert tickets.status(key).category == "done"


def test_a_transition_whose_reply_was_lost_is_not_repeated(jira: JiraStandIn, tickets: JiraTickets) -> None:
    key = open_one(tickets)
    jira.drop_next(f"/issue/{key}/transitions", method="POST", after_write=True)
    with pytest.raises(JiraTransientError):
        tickets.transition(key, "Approve", comment="ok")
    assert tickets.transition(key, "Approve", comment="ok") is False
    assert jira.status_of(key) == "Approved" and jira.comments(key) == ["ok"]
    other = open_one(tickets, "req-2")
    # moved meanwhile: Jira refuses the now invalid transition, and the ticket is where we wanted it
    jira.fail_next(f"/issue/{other}/transitions", 400, method="POST", after_write=True)
    assert tickets.transition(other, "Deny") is False
    assert jira.status_of(other) == "Denied"


def test_a_transition_leading_elsewhere_than_configured_is_refused(jira: JiraStandIn, client: JIRA) -> None:
    tickets = make_tickets(client, transition_names={"Approve": "Done"})
    key = open_one(tickets)
    with pytest.raises(JiraWorkflowError, match="leads to 'Approved', but grantflow expects 'Done'"):
        tickets.transition(key, "Approve")
    assert jira.status_of(key) == "Waiting for approval"
    by_id = make_tickets(client, transition_names={"Approve": "10001"})
    assert by_id.transition(key, "Approve") is True and by_id.transition(key, "Approve") is False
    with pytest.raises(ValueError):
        make_tickets(client, transition_names={})


def test_comments_are_not_posted_twice(jira: JiraStandIn, tickets: JiraTickets) -> None:
    key = open_one(tickets)
    assert tickets.comment(key, "bob@corp.example approved: on call") is True
    assert tickets.comment(key, "bob@corp.example  approved: on call\n") is False  # whitespace aside
    assert tickets.comment(key, "carol@corp.example approved") is True
    assert jira.comments(key) == ["bob@corp.example approved: on call", "carol@corp.example approved"]
    with pytest.raises(ValueError):
        tickets.comment(key, "  ")


def test_assign_by_account_id(jira: JiraStandIn, tickets: JiraTickets) -> None:
    key = open_one(tickets)
    bob = jira.account_id("bob@corp.example")
    assert tickets.assign(key, bob) is True
    assert tickets.assign(key, bob) is False
    assert jira.issue(key)["fields"]["assignee"]["accountId"] == bob
    assert tickets.assign(key, None) is True
    assert jira.issue(key)["fields"]["assignee"] is None
    with pytest.raises(JiraRefusedError, match="cannot be assigned"):
        tickets.assign(key, "no-such-account")


def test_account_ids_by_email_with_cache_and_fallback(jira: JiraStandIn, tickets: JiraTickets) -> None:
    def searches() -> int:
        return sum(1 for c in jira.calls if c.api_path == "/user/search")

    assert tickets.account_id_for_email("alice@corp.example") == jira.account_id("alice@corp.example")
    # bob hides his email: found by the exact address, answered without it
    assert tickets.account_id_for_email("bob@corp.example") == jira.account_id("bob@corp.example")
    before = searches()
    assert tickets.account_id_for_email(" Bob@Corp.Example ") == jira.account_id("bob@corp.example")
    assert searches() == before  # cached
    assert tickets.account_id_for_email("dave@corp.example") == DAVE_ACCOUNT  # not in Jira: the mapping
    assert tickets.account_id_for_email("carol@corp.example") is None  # deactivated in Jira
    assert tickets.account_id_for_email("erin@corp.example") is None
    assert searches() == before + 3


async def test_callers_use_it_from_async_code_through_a_thread(
    jira: JiraStandIn, tickets: JiraTickets
) -> None:
    keys = await asyncio.gather(*(asyncio.to_thread(open_one, tickets, f"req-{n}") for n in range(3)))
    assert sorted(keys) == ["ACC-1", "ACC-2", "ACC-3"]
    assert await asyncio.to_thread(tickets.transition, keys[0], "Approve") is True


# ---------------------------------------------------------------------- webhooks


def test_webhook_signatures(jira: JiraStandIn, tickets: JiraTickets, receiver: WebhookReceiver) -> None:
    key = open_one(tickets)
    jira.transition_as(key, "Approve", jira.account_id("alice@corp.example"))
    jira.wait_idle()
    delivery = receiver.wait_for(2)[1]
    header = delivery.headers["x-hub-signature"]
    assert verify_webhook_signature(SECRET, delivery.body, header) is True  # good
    assert verify_webhook_signature(SECRET.encode(), delivery.body, header) is True
    assert verify_webhook_signature("another-secret", delivery.body, header) is False  # bad secret
    assert verify_webhook_signature(SECRET, delivery.body + b" ", header) is False  # tampered body
    tampered = header[:-1] + ("1" if header.endswith("0") else "0")  # always a different last digit
    assert verify_webhook_signature(SECRET, delivery.body, tampered) is False
    assert verify_webhook_signature(SECRET, delivery.body, None) is False  # missing
    assert verify_webhook_signature(SECRET, delivery.body, "") is False
    assert (
        verify_webhook_signature(SECRET, delivery.body, header.removeprefix("sha256=")) is False
    )  # no prefix
    assert verify_webhook_signature(SECRET, delivery.body, "sha1=" + header.removeprefix("sha256=")) is False
    assert verify_webhook_signature(SECRET, delivery.body, "sha256=zz\u00e9") is False  # not even hex
    assert verify_webhook_signature("", delivery.body, header) is False  # no secret configured
    jira.set_webhook(receiver.url, None)  # a webhook registered without a secret: unsigned deliveries
    jira.transition_as(key, "Close", jira.account_id("alice@corp.example"))
    jira.wait_idle()
    unsigned = receiver.wait_for(3)[2]
    assert "x-hub-signature" not in unsigned.headers
    assert verify_webhook_signature(SECRET, unsigned.body, unsigned.headers.get("x-hub-signature")) is False


def test_status_changes_are_read_from_the_changelog(
    jira: JiraStandIn, tickets: JiraTickets, receiver: WebhookReceiver
) -> None:
    alice = jira.account_id("alice@corp.example")
    key = open_one(tickets, "req-9")
    jira.transition_as(key, "Approve", alice)
    tickets.assign(key, alice)
    tickets.comment(key, "noted")
    jira.transition_as(key, "Close", alice)
    jira.wait_idle()
    deliveries = receiver.wait_for(5)
    changes = [parse_status_change(d.json, d.headers["x-atlassian-webhook-identifier"]) for d in deliveries]
    created, approved, assigned, commented, closed = changes
    assert created is None and assigned is None and commented is None  # no status item in their changelog
    assert approved == StatusChange(
        issue_key=key,
        issue_id=jira.issue(key)["id"],
        labels=("grantflow-req-9",),
        actor_account_id=alice,
        actor_display_name="Alice Admin",
        from_status_id="10000",
        from_status_name="Waiting for approval",
        to_status_id="10001",
        to_status_name="Approved",
        to_category="indeterminate",
        timestamp=T0,
        webhook_id=deliveries[1].headers["x-atlassian-webhook-identifier"],
    )
    assert tickets.grantflow_id(approved.labels) == "req-9"
    assert closed is not None
    assert [i["field"] for i in deliveries[4].json["changelog"]["items"]] == ["resolution", "status"]
    assert (closed.from_status_id, closed.to_status_id, closed.to_category) == ("10001", "10003", "done")


def test_parse_status_change_on_odd_payloads() -> None:
    item = status_item("1", "A", "2", "B")
    base = issue_updated("ACC-1", item)
    change = parse_status_change(json.loads(json.dumps(base)))
    assert change is not None
    assert (change.to_status_id, change.actor_account_id, change.labels, change.to_category) == (
        "2",
        None,
        (),
        None,
    )
    assert parse_status_change({**base, "webhookEvent": "jira:issue_created"}) is None
    assert parse_status_change({**base, "changelog": None}) is None
    assert parse_status_change({**base, "changelog": {"items": [{**item, "field": "assignee"}]}}) is None
    with pytest.raises(ValueError, match="no issue key"):
        parse_status_change({**base, "issue": {}})


# ---------------------------------------------------------------------- the Jira templates


T_CREATED = builders.T0
ALICE = PersonRef(id="u-alice", email="alice@corp.example")
BOB = PersonRef(id="u-bob", email="bob@corp.example")
CAROL = PersonRef(id="u-carol", email="carol@corp.example")


def request_view(**changes: Any) -> RequestView:
    """alice's request for 1h needing two approvals, its reason full of Jira markup (the email and CLI
    tests use it too)."""
    defaults: dict[str, Any] = {
        "reason": "Incident 42: {noformat} [~accountid:712020:x] *urgent*",
        "requested_duration": timedelta(hours=1),
        "required_approvals": 2,
        "policy": RolePolicy(connection="pg-prod-admin", approver_groups=["dba-owners"], min_approvals=2),
    }
    return builders.request_view(ALICE, **{**defaults, **changes})


def jira_templates() -> jinja2.Environment:
    """As the activities set it up: plain text, strict, with the duration and utc filters."""
    env = template_environment(autoescape=False)
    env.filters["duration"] = format_duration
    env.filters["utc"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if d else "-"
    return env


def test_ticket_description(jira: JiraStandIn, tickets: JiraTickets) -> None:
    template = jira_templates().get_template("jira/ticket_description.j2")
    text = template.render(
        view=request_view(), link="http://127.0.0.1:8000/review/req-42", decide_with=["Approve", "Deny"]
    )
    assert text.startswith("alice@corp.example asks for pg-prod / admin (connection pg-prod-admin) for 1h.\n")
    assert "Approvals: 2 needed (2 approval(s) from group dba-owners)" in text
    assert "Times out: 2026-03-02 13:00:00 UTC" in text
    assert '"Approve" or "Deny"' in text and "Review page: http://127.0.0.1:8000/review/req-42" in text
    # what the requester typed cannot end the literal block or mention anyone
    block = text.split("{noformat}\n", 1)[1].split("\n{noformat}", 1)[0]
    assert block == "Incident 42: { noformat} [~accountid:712020:x] *urgent*"
    assert text.count("{noformat}") == 2
    minimal = template.render(view=request_view(timeout_at=None))
    assert "Review page" not in minimal and "To decide" not in minimal and "Times out" not in minimal
    key = tickets.open_ticket(label="req-42", summary="alice@corp.example: pg-prod admin", description=text)
    assert jira.issue(key)["fields"]["description"] == text


def test_decision_and_status_comments(jira: JiraStandIn, tickets: JiraTickets) -> None:
    env = jira_templates()
    approval = builders.decision(BOB, channel="jira", reason="on call")
    decision = env.get_template("jira/comment_decision.j2").render(
        view=request_view(approvals=[approval]), decision=approval
    )
    assert decision.startswith(
        "bob@corp.example approved request req-42 via jira at 2026-03-02 09:00:00 UTC.\n"
    )
    assert "{noformat}\non call\n{noformat}" in decision
    assert "Approvals so far: 1 of 2 (bob@corp.example)." in decision
    admin = PersonRef(id="a", email="admin@corp.example")
    denial = builders.decision(CAROL, Verdict.DENY, channel="email", on_behalf_by=admin)
    denied = env.get_template("jira/comment_decision.j2").render(
        view=request_view(denials=[denial]), decision=denial
    )
    assert "carol@corp.example denied request req-42 via email (recorded by admin@corp.example)" in denied
    assert "Denied by: carol@corp.example." in denied and "{noformat}" not in denied

    status = env.get_template("jira/comment_status.j2")
    granted = request_view(
        status=RequestStatus.ACTIVE,
        approvals=[approval, approval.model_copy(update={"approver": CAROL})],
        granted_at=T_CREATED,
        expires_at=T_CREATED + timedelta(hours=1),
    )
    active = status.render(view=granted)
    assert active.startswith(
        "Access granted at 2026-03-02 09:00:00 UTC: alice@corp.example has pg-prod / admin "
        "until 2026-03-02 10:00:00 UTC."
    )
    assert "Approved by: bob@corp.example via jira, carol@corp.example via jira." in active
    revoked = status.render(
        view=granted.model_copy(
            update={
                "status": RequestStatus.ENDED,
                "end_reason": EndReason.REVOKED,
                "ended_at": T_CREATED + timedelta(minutes=20),
                "revocation_attempts": 3,
                "revocation_escalated": True,
            }
        ),
        note="revoked by admin@corp.example: leaver",
    )
    assert revoked.startswith("Access ended at 2026-03-02 09:20:00 UTC (revoked).")
    assert "escalated to an operator" in revoked and revoked.rstrip().endswith(
        "revoked by admin@corp.example: leaver"
    )
    for state in RequestStatus:
        assert status.render(view=request_view(status=state, failure_reason="hoop refused")).strip()
    key = open_one(tickets)
    assert tickets.comment(key, decision) is True
    assert tickets.comment(key, active) is True
    assert jira.comments(key) == [decision, active]
