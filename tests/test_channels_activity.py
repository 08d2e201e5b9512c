"""The channel activity (``activities/channels.py``) against the Slack and Jira stand-ins and the SMTP sink,
over real sockets: asking approvers, keeping DMs and the ticket up to date, telling the requester, doing
nothing twice — also when a third of the calls fail — and saying which failures are worth retrying."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from jira import JIRA
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.channel_errors import CHANNEL_REFUSED, CHANNEL_TRANSIENT
from activities.channels import ChannelActivities
from activities.jira_channel import LazyJira
from configuration.settings import Settings, SettingsError
from domain.channels import ChannelState, PresentInput, button_value, parse_button_value
from domain.identity import PersonRef, load_organisation
from domain.policy import RolePolicy
from domain.requests import Decision, EndReason, PendingExtension, RequestStatus, RequestView, Verdict
from domain.review_links import ReviewLinks
from examples import ORGANISATION_FILE
from integrations.email import EmailSender
from integrations.jira_tickets import JiraTickets, build_jira
from integrations.slack import APPROVE_ACTION, DENY_ACTION, SlackChannel, build_slack_client
from integrations.vendor_setup import slack_api_base
from sandbox.jira import JiraStandIn
from sandbox.slack import SlackStandIn
from sandbox.smtp import ReceivedMessage, SmtpSink
from store import Store
from worker import build_channels

BOT_TOKEN = "xoxb-channels-test"
JIRA_BOT, JIRA_TOKEN = "grantflow-bot@example.com", "jira-api-token"
TRANSITIONS = {"Approve": "Approved", "Deny": "Denied", "Close": "Done", "Cancel": "Cancelled"}
LINK_BASE = "http://127.0.0.1:9/grantflow"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = RolePolicy(connection="pg-prod-admin", approver_groups=["db-owners"], min_approvals=2)
MAX_ATTEMPTS = 40


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp: Path = tmp_path_factory.mktemp("channels")
    db = Store(f"sqlite:///{tmp / 'grantflow.db'}", ledger_key=b"k" * 32, anchor_path=tmp / "anchor")
    db.migrate()
    db.replace_directory(load_organisation(ORGANISATION_FILE).people)
    yield db
    db.close()


@pytest.fixture(scope="module")
def people(store: Store) -> dict[str, PersonRef]:
    out = {}
    for name in ("alice", "bob", "carol", "dan", "erin"):
        person = store.find_person_by_email(f"{name}@example.com")
        assert person is not None
        out[name] = person.ref
    return out


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn(bot_token=BOT_TOKEN)
    for name in ("alice", "bob", "carol", "dan"):  # erin has no Slack account
        stand_in.add_user(f"{name}@example.com", name.title())
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def jira() -> Iterator[JiraStandIn]:
    stand_in = JiraStandIn(users={JIRA_BOT: JIRA_TOKEN})
    stand_in.add_project("ACC", "Access requests")
    stand_in.add_custom_field("Resource", field_id="customfield_10050")
    stand_in.add_custom_field("Access", field_id="customfield_10051", field_type="labels")
    for name in ("alice", "bob", "carol", "dan"):
        stand_in.add_user(f"{name}@example.com", name.title(), email_visible=name != "carol")
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def jira_client(jira: JiraStandIn) -> Iterator[JIRA]:
    client = build_jira(jira.url, JIRA_BOT, JIRA_TOKEN, timeout=5)
    yield client
    client.close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(autouse=True)
def _no_faults(slack: SlackStandIn, jira: JiraStandIn, smtp: SmtpSink) -> Iterator[None]:
    yield
    slack.clear_faults()
    jira.clear_faults()
    smtp.clear()


@pytest.fixture(scope="module")
def links() -> ReviewLinks:
    return ReviewLinks("test-link-secret", LINK_BASE, timedelta(hours=1))


def make_tickets(client: JIRA, **overrides: Any) -> JiraTickets:
    options: dict[str, Any] = {"project_key": "ACC", "issue_type": "Task", "transition_names": TRANSITIONS}
    return JiraTickets(client, **{**options, **overrides})


@pytest_asyncio.fixture
async def channels(
    slack: SlackStandIn, jira_client: JIRA, smtp: SmtpSink, links: ReviewLinks, store: Store
) -> AsyncIterator[ChannelActivities]:
    acts = ChannelActivities(
        slack=SlackChannel(build_slack_client(BOT_TOKEN, base_url=slack.api_url, timeout=5)),
        jira=make_tickets(jira_client),
        email=EmailSender(smtp.host, smtp.port, "grantflow@example.com", timeout=5),
        links=links,
        store=store,
    )
    yield acts
    await acts.aclose()


# ---------------------------------------------------------------------------------------------- requests


def decision(who: PersonRef, channel: str, minutes: int, **extra: Any) -> Decision:
    return Decision(
        approver=who,
        verdict=extra.pop("verdict", Verdict.APPROVE),
        channel=channel,
        at=T0 + timedelta(minutes=minutes),
        **extra,
    )


@dataclass
class Story:
    """One request through its life, as the workflow would present it."""

    people: dict[str, PersonRef]
    id: str = ""

    def __post_init__(self) -> None:
        self.id = f"req-{uuid.uuid4().hex[:10]}"

    @property
    def approvers(self) -> list[PersonRef]:
        return [self.people["bob"], self.people["carol"], self.people["dan"]]

    def pending(self, **changes: Any) -> RequestView:
        view = RequestView(
            id=self.id,
            status=RequestStatus.PENDING,
            requester=self.people["alice"],
            submitted_by=self.people["alice"].email,
            resource="pg-prod",
            role="admin",
            connection="pg-prod-admin",
            reason="INC-42: fix the stuck migration",
            requested_duration=timedelta(hours=2),
            required_approvals=2,
            eligible_approvers=self.approvers,
            approvers_resolved=True,
            policy=POLICY,
            created_at=T0,
            timeout_at=T0 + timedelta(hours=4),
            updated_at=T0,
        )
        return view.model_copy(update=changes)

    def bob_approved(self) -> RequestView:
        return self.pending(approvals=[decision(self.people["bob"], "slack", 5)])

    def active(self, **changes: Any) -> RequestView:
        fields: dict[str, Any] = {
            "status": RequestStatus.ACTIVE,
            "approvals": [
                decision(self.people["bob"], "slack", 5),
                decision(self.people["carol"], "jira", 7),
            ],
            "decided_at": T0 + timedelta(minutes=7),
            "granted_at": T0 + timedelta(minutes=8),
            "expires_at": T0 + timedelta(hours=2, minutes=8),
        }
        return self.pending(**{**fields, **changes})

    def extension(self) -> RequestView:
        ext = PendingExtension(
            by=timedelta(hours=1), requested_at=T0 + timedelta(hours=1), reason="still running"
        )
        return self.active(pending_extension=ext)

    def ended(self) -> RequestView:
        return self.active(
            status=RequestStatus.ENDED,
            end_reason=EndReason.EXPIRED,
            ended_at=T0 + timedelta(hours=2, minutes=8),
        )


async def present(
    acts: ChannelActivities, view: RequestView, state: ChannelState, ask: list[PersonRef] | None = None
) -> ChannelState:
    return await ActivityEnvironment().run(acts.present, PresentInput(view=view, ask=ask or [], state=state))


def dms(slack: SlackStandIn, request_id: str) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.messages()
        if ((m.get("metadata") or {}).get("event_payload") or {}).get("request_id") == request_id
    ]


def dm_of(slack: SlackStandIn, email: str, request_id: str) -> list[dict[str, Any]]:
    channel = slack.dm_channel(slack.user_id(email))
    return [m for m in dms(slack, request_id) if m["channel"] == channel]


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        el["action_id"]: el
        for block in message.get("blocks") or []
        if block["type"] == "actions"
        for el in block["elements"]
    }


def text_of(message: dict[str, Any]) -> str:
    return message["text"] + json.dumps(message.get("blocks"), ensure_ascii=False)


def emails(smtp: SmtpSink, request_id: str) -> list[ReceivedMessage]:
    return [m for m in smtp.messages if f"<{request_id}." in str(m.message["Message-ID"])]


def tickets_of(jira: JiraStandIn, request_id: str) -> list[dict[str, Any]]:
    return jira.issues(label=f"grantflow-{request_id}")


def creates(jira: JiraStandIn) -> int:
    return sum(1 for c in jira.calls if c.method == "POST" and c.api_path == "/issue")


# ---------------------------------------------------------------------------------------------- the story


async def test_a_request_through_its_life_in_every_channel(
    channels: ChannelActivities,
    slack: SlackStandIn,
    jira: JiraStandIn,
    smtp: SmtpSink,
    links: ReviewLinks,
    people: dict[str, PersonRef],
) -> None:
    story = Story(people)
    bob, carol, dan, alice = people["bob"], people["carol"], people["dan"], people["alice"]

    # a new request: each approver is asked in Slack and by email; one ticket, assigned to bob
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    assert set(state.slack) == {bob.id, carol.id, dan.id} and state.jira_key is not None
    for person in story.approvers:
        [dm] = dm_of(slack, person.email, story.id)
        decide = buttons(dm)
        assert decide[APPROVE_ACTION]["value"] == decide[DENY_ACTION]["value"] == f"{story.id}|request"
        assert parse_button_value(decide[APPROVE_ACTION]["value"]) == (story.id, "request")
        assert links.read(decide["grantflow_open"]["url"].rsplit("/", 1)[1]) == (story.id, person.id)
        assert state.slack[person.id].ts == dm["ts"]
    [ticket] = tickets_of(jira, story.id)
    key = ticket["key"]
    assert key == state.jira_key and jira.status_of(key) == "Waiting for approval"
    assert ticket["fields"]["assignee"]["accountId"] == jira.account_id(bob.email)
    assert "INC-42: fix the stuck migration" in ticket["fields"]["description"]
    asked = emails(smtp, story.id)
    assert sorted(m.rcpt_tos[0] for m in asked) == sorted(p.email for p in story.approvers)
    bob_mail = next(m for m in asked if m.rcpt_tos == (bob.email,))
    assert bob_mail.message["Message-ID"] == f"<{story.id}.ask.request.{bob.id}@example.com>"
    assert f"{LINK_BASE}/review/" in (bob_mail.text or "") and f"{LINK_BASE}/review/" in (bob_mail.html or "")

    # the same presentation again (a retry, a replay): nothing new anywhere
    posts = len(slack.calls_to("chat.postMessage"))
    created = creates(jira)
    again = await present(channels, story.pending(), state, ask=story.approvers)
    assert {p: (r.channel, r.ts) for p, r in again.slack.items()} == {
        p: (r.channel, r.ts) for p, r in state.slack.items()
    }
    assert (again.jira_key, again.emailed) == (state.jira_key, state.emailed)
    state = again
    assert len(slack.calls_to("chat.postMessage")) == posts and creates(jira) == created
    assert len(dms(slack, story.id)) == 3 and len(tickets_of(jira, story.id)) == 1
    assert len(emails(smtp, story.id)) == 3

    # bob approved in Slack: his DM has no buttons any more, carol's and dan's still do
    state = await present(channels, story.bob_approved(), state)
    [bob_dm] = dm_of(slack, bob.email, story.id)
    assert APPROVE_ACTION not in buttons(bob_dm) and "You approved" in text_of(bob_dm)
    for person in (carol, dan):
        [dm] = dm_of(slack, person.email, story.id)
        assert buttons(dm)[APPROVE_ACTION]["value"] == f"{story.id}|request"
        assert "bob@example.com approved via slack" in text_of(dm) and "1 of 2" in text_of(dm)
    assert len(jira.comments(key)) == 1 and "bob@example.com approved" in jira.comments(key)[0]
    assert len(emails(smtp, story.id)) == 3

    # ACTIVE: every DM says who approved how, and that access is active; no buttons
    state = await present(channels, story.active(), state)
    state = await present(channels, story.active(), state)  # again: still nothing twice
    for person in story.approvers:
        [dm] = dm_of(slack, person.email, story.id)
        assert APPROVE_ACTION not in buttons(dm) and DENY_ACTION not in buttons(dm)
        body = text_of(dm)
        assert "bob@example.com approved via slack" in body and "carol@example.com approved via jira" in body
        assert "*Approved* · access active until" in body
    assert jira.status_of(key) == "Approved"
    comments = jira.comments(key)
    assert len(comments) == 3 and len(set(comments)) == 3
    assert "bob@example.com approved" in comments[0] and "Approvals so far: 1 of 2" in comments[0]
    assert "carol@example.com approved" in comments[1] and "Approvals so far: 2 of 2" in comments[1]
    assert comments[2].startswith("Access granted")
    [outcome] = dm_of(slack, alice.email, story.id)
    assert "*Approved.* Your access to *pg-prod / admin* is active until" in text_of(outcome)
    [told] = [m for m in emails(smtp, story.id) if m.rcpt_tos == (alice.email,)]
    assert told.message["Message-ID"] == f"<{story.id}.outcome.ACTIVE@example.com>"
    assert "is active until" in (told.text or "")

    # ENDED (expired): the ticket is closed (through Approved), the messages say it ended
    state = await present(channels, story.ended(), state)
    assert jira.status_of(key) == "Done"
    assert jira.comments(key)[-1].startswith("Access ended at 2026-03-02 11:08:00 UTC (expired)")
    for person in story.approvers:
        [dm] = dm_of(slack, person.email, story.id)
        assert "ended (expired)" in dm["text"] and "*Access ended* (expired)" in text_of(dm)
    outcomes = dm_of(slack, alice.email, story.id)
    assert len(outcomes) == 2 and "has ended: it expired" in text_of(outcomes[1])
    assert len(emails(smtp, story.id)) == 5  # 3 asks, ACTIVE, ENDED
    assert len(dms(slack, story.id)) == 5 and len(tickets_of(jira, story.id)) == 1


async def test_an_extension_asks_again_and_replaces_the_message_to_keep_updating(
    channels: ChannelActivities, slack: SlackStandIn, smtp: SmtpSink, people: dict[str, PersonRef]
) -> None:
    story = Story(people)
    bob = people["bob"]
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    first = state.slack[bob.id]
    state = await present(channels, story.active(), state)
    state = await present(channels, story.extension(), state, ask=story.approvers)
    new = state.slack[bob.id]
    assert new != first
    old_dm, new_dm = dm_of(slack, bob.email, story.id)
    assert old_dm["ts"] == first.ts and new_dm["ts"] == new.ts
    assert APPROVE_ACTION not in buttons(old_dm)  # the request's message is kept up to date, no buttons
    assert state.earlier == {p.id: [state.earlier[p.id][0]] for p in story.approvers}
    assert buttons(new_dm)[APPROVE_ACTION]["value"] == button_value(story.id, "extension")
    assert "Extension request" in text_of(new_dm)
    mail_ids = {str(m.message["Message-ID"]) for m in emails(smtp, story.id) if m.rcpt_tos == (bob.email,)}
    assert f"<{story.id}.ask.extension.{bob.id}@example.com>" in mail_ids and len(mail_ids) == 2
    # bob approves the extension: the new message loses its buttons, and both show his vote
    ext = story.extension()
    assert ext.pending_extension is not None
    ext.pending_extension.approvals.append(decision(bob, "slack", 70, stage="extension"))
    state = await present(channels, ext, state)
    old_dm, new_dm = dm_of(slack, bob.email, story.id)
    assert APPROVE_ACTION not in buttons(new_dm) and "You approved" in text_of(new_dm)
    assert "approved the extension" in text_of(old_dm) and APPROVE_ACTION not in buttons(old_dm)
    # and at the end, every message says how it ended
    state = await present(channels, story.ended(), state)
    for dm in dm_of(slack, bob.email, story.id):
        assert "*Access ended* (expired)" in text_of(dm) and APPROVE_ACTION not in buttons(dm)
    updates = len(slack.calls_to("chat.update"))
    await present(channels, story.ended(), state)
    assert len(slack.calls_to("chat.update")) == updates  # nothing changed: nothing sent


async def test_a_reminder_is_a_new_dm_with_the_buttons_and_an_email_once(
    channels: ChannelActivities, slack: SlackStandIn, smtp: SmtpSink, people: dict[str, PersonRef]
) -> None:
    """Reminded, an approver who has not decided gets a new DM that takes over the buttons (the first one
    is kept up to date without them) and an email; who voted meanwhile is not reminded; twice is once."""
    story = Story(people)
    bob, carol = people["bob"], people["carol"]
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    view = story.bob_approved()
    reminding = PresentInput(view=view, remind=story.approvers, state=state)
    state = await ActivityEnvironment().run(channels.present, reminding)
    first, reminder = dm_of(slack, carol.email, story.id)
    assert "*Reminder:* your decision is still needed" in text_of(reminder)
    assert reminder["text"].startswith("[grantflow] Reminder: ")  # the notification says so
    again = reminding.model_copy(update={"state": state})
    state = await ActivityEnvironment().run(channels.present, again)  # a retry, or a replayed reminder
    assert len(dm_of(slack, bob.email, story.id)) == 1  # he approved: no reminder
    first, reminder = dm_of(slack, carol.email, story.id)
    assert buttons(reminder)[APPROVE_ACTION]["value"] == button_value(story.id, "request")
    assert APPROVE_ACTION not in buttons(first) and "bob@example.com approved via slack" in text_of(first)
    assert state.slack[carol.id].ts == reminder["ts"] and [r.ts for r in state.earlier[carol.id]] == [
        first["ts"]
    ]
    reminded = [m for m in emails(smtp, story.id) if ".remind." in str(m.message["Message-ID"])]
    assert sorted(m.rcpt_tos[0] for m in reminded) == sorted(p.email for p in story.approvers if p != bob)
    assert all(str(m.message["Subject"]).startswith("[grantflow] Reminder: ") for m in reminded)
    # carol approves from the reminder: both her messages follow, neither offers the buttons any more
    state = await present(channels, story.active(), state)
    for dm in dm_of(slack, carol.email, story.id):
        assert APPROVE_ACTION not in buttons(dm) and "*Approved* · access active until" in text_of(dm)


async def test_people_without_slack_or_jira_are_asked_where_they_can_be(
    channels: ChannelActivities,
    slack: SlackStandIn,
    jira: JiraStandIn,
    smtp: SmtpSink,
    people: dict[str, PersonRef],
) -> None:
    story = Story(people)
    erin, dan = people["erin"], people["dan"]
    state = await present(channels, story.pending(), ChannelState(), ask=[erin, dan])
    assert set(state.slack) == {dan.id}  # erin has no Slack account
    assert state.jira_key is not None
    # erin has no Jira account either: the ticket goes to the first asked person Jira knows
    assignee = jira.issue(state.jira_key)["fields"]["assignee"]
    assert assignee["accountId"] == jira.account_id(dan.email)
    assert sorted(m.rcpt_tos[0] for m in emails(smtp, story.id)) == sorted([erin.email, dan.email])


# ---------------------------------------------------------------------------------------------- faults


def inject(rng: random.Random, slack: SlackStandIn, jira: JiraStandIn, smtp: SmtpSink) -> None:
    """About a third of the next calls to each write fail: rate limits, 503s, dropped connections before
    and after the write (the caller cannot tell whether it happened), SMTP 451."""
    for method in ("chat.postMessage", "chat.update"):
        if rng.random() < 1 / 3:
            kind = rng.choice(["429", "503", "drop", "drop-after"])
            if kind == "429":
                slack.fail_next(method, 429, retry_after=1)
            elif kind == "503":
                slack.fail_next(method, 503)
            else:
                slack.drop_next(method, after_write=kind == "drop-after")
    if rng.random() < 1 / 3:
        kind = rng.choice(["429", "503", "drop", "drop-after"])
        if kind == "429":
            jira.fail_next("/issue", 429, retry_after=1, method="POST")
        elif kind == "503":
            jira.fail_next("/issue", 503, method="POST", after_write=rng.random() < 0.5)
        else:
            jira.drop_next("/issue", method="POST", after_write=kind == "drop-after")
    if rng.random() < 1 / 3:
        smtp.fail_next(1, 451)


async def present_until_done(
    acts: ChannelActivities,
    view: RequestView,
    state: ChannelState,
    ask: list[PersonRef],
    before_each: Any,
) -> tuple[ChannelState, list[ApplicationError]]:
    """What Temporal does with a retryable failure: run the activity again, same input, until it succeeds."""
    errors: list[ApplicationError] = []
    for _ in range(MAX_ATTEMPTS):
        before_each()
        try:
            return await present(acts, view, state, ask), errors
        except ApplicationError as exc:
            assert not exc.non_retryable, exc.message
            assert exc.type == CHANNEL_TRANSIENT
            errors.append(exc)
    raise AssertionError(f"still failing after {MAX_ATTEMPTS} attempts: {errors[-1].message}")


async def test_with_a_third_of_the_calls_failing_retries_do_everything_exactly_once(
    channels: ChannelActivities,
    slack: SlackStandIn,
    jira: JiraStandIn,
    smtp: SmtpSink,
    people: dict[str, PersonRef],
) -> None:
    rng = random.Random(20260302)
    story = Story(people)
    alice = people["alice"]
    state = ChannelState()
    failed: list[ApplicationError] = []
    for view, ask in (
        (story.pending(), story.approvers),
        (story.bob_approved(), []),
        (story.active(), []),
        (story.ended(), []),
    ):
        state, errors = await present_until_done(
            channels, view, state, ask, lambda: inject(rng, slack, jira, smtp)
        )
        failed += errors
    assert len(failed) >= 4  # the faults did happen
    assert any(e.next_retry_delay == timedelta(seconds=1) for e in failed)  # a 429's Retry-After

    for person in story.approvers:
        [dm] = dm_of(slack, person.email, story.id)
        assert dm["ts"] == state.slack[person.id].ts and "*Access ended* (expired)" in text_of(dm)
    assert len(dm_of(slack, alice.email, story.id)) == 2  # ACTIVE, ENDED
    [ticket] = tickets_of(jira, story.id)
    assert ticket["key"] == state.jira_key and jira.status_of(ticket["key"]) == "Done"
    comments = jira.comments(ticket["key"])
    assert len(comments) == len(set(comments)) == 4  # bob, carol, ACTIVE, ENDED
    received = emails(smtp, story.id)
    assert len(received) == 5  # 451s keep nothing, so every message arrived exactly once
    assert len({str(m.message["Message-ID"]) for m in received}) == 5


async def test_rate_limits_are_retried_after_the_longest_retry_after(
    channels: ChannelActivities,
    slack: SlackStandIn,
    jira: JiraStandIn,
    smtp: SmtpSink,
    people: dict[str, PersonRef],
) -> None:
    story = Story(people)
    slack.fail_next("chat.postMessage", 429, retry_after=2)
    jira.fail_next("/issue", 429, retry_after=3, method="POST")
    with pytest.raises(ApplicationError) as raised:
        await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    error = raised.value
    assert error.type == CHANNEL_TRANSIENT and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=3)
    assert "slack:" in error.message and "jira:" in error.message
    # the rate-limited channels stopped at once; email did its part; the partial state is in the details
    assert len(slack.calls_to("chat.postMessage")) >= 1 and dms(slack, story.id) == []
    assert len(emails(smtp, story.id)) == 3
    partial = ChannelState.model_validate(error.details[0])
    assert partial.slack == {} and partial.jira_key is None
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    assert len(dms(slack, story.id)) == 3 and len(emails(smtp, story.id)) == 3 and state.jira_key


async def test_a_permanent_refusal_is_not_retried_and_the_other_channels_still_work(
    slack: SlackStandIn,
    jira: JiraStandIn,
    jira_client: JIRA,
    smtp: SmtpSink,
    links: ReviewLinks,
    store: Store,
    people: dict[str, PersonRef],
) -> None:
    acts = ChannelActivities(
        slack=SlackChannel(build_slack_client(BOT_TOKEN, base_url=slack.api_url, timeout=5)),
        jira=make_tickets(jira_client, issue_type="Story"),  # ACC has no Story: Jira answers 400
        email=EmailSender(smtp.host, smtp.port, "grantflow@example.com", timeout=5),
        links=links,
        store=store,
    )
    story = Story(people)
    try:
        with pytest.raises(ApplicationError) as raised:
            await present(acts, story.pending(), ChannelState(), ask=story.approvers)
    finally:
        await acts.aclose()
    error = raised.value
    assert error.non_retryable and error.type == CHANNEL_REFUSED
    assert "jira:" in error.message and "400" in error.message and "issuetype" in error.message
    assert tickets_of(jira, story.id) == []
    assert len(dms(slack, story.id)) == 3 and len(emails(smtp, story.id)) == 3
    assert set(ChannelState.model_validate(error.details[0]).slack) == {p.id for p in story.approvers}


async def test_a_retry_after_a_failed_attempt_does_not_email_twice(
    channels: ChannelActivities,
    slack: SlackStandIn,
    smtp: SmtpSink,
    links: ReviewLinks,
    store: Store,
    people: dict[str, PersonRef],
) -> None:
    """An email sent by an attempt that failed elsewhere is not sent again: the activity's heartbeat
    carries what was sent to the next attempt (here on another worker, which only has the heartbeat)."""
    story = Story(people)
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    slack.fail_next("chat.postMessage", 503)
    with pytest.raises(ApplicationError):
        await env.run(channels.present, PresentInput(view=story.pending(), ask=story.approvers))
    assert len(emails(smtp, story.id)) == 3 and beats
    other_worker = ChannelActivities(
        slack=None,
        jira=None,
        email=EmailSender(smtp.host, smtp.port, "grantflow@example.com", timeout=5),
        links=links,
        store=store,
    )
    retry = ActivityEnvironment()
    retry.info = replace(retry.info, attempt=2, heartbeat_details=list(beats[-1]))
    await retry.run(other_worker.present, PresentInput(view=story.pending(), ask=story.approvers))
    assert len(emails(smtp, story.id)) == 3
    # without the heartbeat (a later presentation), the other worker would not know: the residual case
    await ActivityEnvironment().run(
        other_worker.present, PresentInput(view=story.pending(), ask=[people["bob"]])
    )
    assert len(emails(smtp, story.id)) == 4


async def test_a_retry_sends_only_the_updates_the_failed_attempt_did_not_make(
    channels: ChannelActivities, slack: SlackStandIn, people: dict[str, PersonRef]
) -> None:
    """The attempt that updated every approver's DM failed afterwards (a 503 telling the requester): its
    heartbeat carries what the DMs show, so the retry sends none of those updates again; presenting the
    same view later sends none either, and a change is sent to everyone."""
    story = Story(people)
    alice = people["alice"]
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    slack.clear_calls()
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    slack.fail_next("chat.postMessage", 503)
    with pytest.raises(ApplicationError) as raised:
        await env.run(channels.present, PresentInput(view=story.active(), state=state))
    assert raised.value.type == CHANNEL_TRANSIENT
    assert len(slack.calls_to("chat.update")) == 3 and dm_of(slack, alice.email, story.id) == []

    retry = ActivityEnvironment()
    retry.info = replace(retry.info, attempt=2, heartbeat_details=list(beats[-1]))
    state = await retry.run(channels.present, PresentInput(view=story.active(), state=state))
    assert len(slack.calls_to("chat.update")) == 3  # none sent again
    assert len(dm_of(slack, alice.email, story.id)) == 1
    assert all(ref.shown for ref in state.slack.values())
    for person in story.approvers:
        [dm] = dm_of(slack, person.email, story.id)
        assert "*Approved* · access active until" in text_of(dm), text_of(dm)

    state = await present(channels, story.active(), state)
    assert len(slack.calls_to("chat.update")) == 3
    state = await present(channels, story.ended(), state)
    assert len(slack.calls_to("chat.update")) == 7  # the approvers' three, and alice's "active" DM
    for person in story.approvers:
        [dm] = dm_of(slack, person.email, story.id)
        assert "*Access ended* (expired)" in text_of(dm)
    active, ended = dm_of(slack, alice.email, story.id)
    assert "has ended" in text_of(active) and "Updated: this request is ENDED now." in text_of(active)
    assert "has ended" in text_of(ended) and "Updated:" not in text_of(ended)


async def test_a_grant_over_before_it_was_presented_is_told_active_then_ended(
    channels: ChannelActivities, slack: SlackStandIn, smtp: SmtpSink, people: dict[str, PersonRef]
) -> None:
    """Presentations are coalesced to the newest view: when the one saying "active" never ran (a short
    grant ended while an earlier one was retrying), the requester is still told both, in order, once."""
    story = Story(people)
    alice = people["alice"]
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    for _ in range(2):
        state = await present(channels, story.ended(), state)
    told = dm_of(slack, alice.email, story.id)
    assert [m["metadata"]["event_payload"]["status"] for m in told] == ["ACTIVE", "ENDED"]
    # the "active" DM was posted (its notification says so), then brought up to date like every message
    [posted] = [
        c
        for c in slack.calls_to("chat.postMessage")
        if (c.params.get("metadata") or {}).get("event_payload", {}).get("request_id") == story.id
        and c.params["metadata"]["event_payload"].get("status") == "ACTIVE"
    ]
    assert "was approved, active until" in posted.params["text"]
    assert "has ended" in text_of(told[0]) and "Updated: this request is ENDED now." in text_of(told[0])
    assert "has ended" in text_of(told[1])
    assert set(state.told) == {"ACTIVE", "ENDED"}
    mailed = [str(m.message["Message-ID"]) for m in emails(smtp, story.id) if m.rcpt_tos == (alice.email,)]
    assert mailed == [f"<{story.id}.outcome.ACTIVE@example.com>", f"<{story.id}.outcome.ENDED@example.com>"]
    assert {f"{story.id}.outcome.ACTIVE", f"{story.id}.outcome.ENDED"} <= set(state.emailed)


@pytest.mark.parametrize(
    ("status", "ticket_status"),
    [
        (RequestStatus.DENIED, "Denied"),
        (RequestStatus.TIMED_OUT, "Cancelled"),
        (RequestStatus.CANCELLED, "Cancelled"),
        (RequestStatus.FAILED, "Cancelled"),
        (RequestStatus.APPROVED, "Approved"),
        (RequestStatus.ENDED, "Done"),  # never seen ACTIVE: closed through Approved
    ],
)
async def test_every_outcome_moves_the_ticket_and_tells_the_requester_once(
    channels: ChannelActivities,
    slack: SlackStandIn,
    jira: JiraStandIn,
    smtp: SmtpSink,
    people: dict[str, PersonRef],
    status: RequestStatus,
    ticket_status: str,
) -> None:
    story = Story(people)
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    changes: dict[str, Any] = {"status": status, "ended_at": T0 + timedelta(hours=1)}
    if status is RequestStatus.DENIED:
        changes["denials"] = [
            decision(people["dan"], "web", 3, verdict=Verdict.DENY, reason="not during the freeze")
        ]
    if status is RequestStatus.FAILED:
        changes["failure_reason"] = "the gateway refused the grant"
    view = story.pending(**changes)
    for _ in range(2):
        state = await present(channels, view, state)
    assert state.jira_key is not None and jira.status_of(state.jira_key) == ticket_status
    [outcome] = dm_of(slack, people["alice"].email, story.id)
    [told] = [m for m in emails(smtp, story.id) if m.rcpt_tos == (people["alice"].email,)]
    assert told.message["Message-ID"] == f"<{story.id}.outcome.{status.value}@example.com>"
    for person in story.approvers:
        [dm] = dm_of(slack, person.email, story.id)
        assert APPROVE_ACTION not in buttons(dm)
    if status is RequestStatus.DENIED:
        assert "not during the freeze" in text_of(outcome)
        assert any("dan@example.com denied" in c for c in jira.comments(state.jira_key))


# ---------------------------------------------------------------------------------------------- small parts


def test_button_values() -> None:
    assert button_value("req-1", "extension") == "req-1|extension"
    assert parse_button_value("req-1|extension") == ("req-1", "extension")
    assert parse_button_value("req-1|retro_review") == ("req-1", "retro_review")
    assert parse_button_value("req-1") == ("req-1", None)  # a message from before stages were carried
    assert parse_button_value("odd|id|request") == ("odd|id", "request")
    assert parse_button_value("req-1|bogus") == ("req-1|bogus", None)


def testslack_api_base() -> None:
    assert slack_api_base("") is None
    assert slack_api_base("http://127.0.0.1:8001") == "http://127.0.0.1:8001/api/"
    assert slack_api_base("http://127.0.0.1:8001/api") == "http://127.0.0.1:8001/api/"
    assert slack_api_base("https://slack.com/api/") == "https://slack.com/api/"


async def test_build_channels_from_settings(
    slack: SlackStandIn,
    jira: JiraStandIn,
    smtp: SmtpSink,
    links: ReviewLinks,
    store: Store,
    people: dict[str, PersonRef],
) -> None:
    nothing = build_channels(Settings(), links=links, store=store)
    assert (nothing._slack, nothing._jira, nothing._email) == (None, None, None)
    await nothing.aclose()

    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_api_url=slack.url,
        jira_url=jira.url,
        jira_email=JIRA_BOT,
        jira_api_token=JIRA_TOKEN,
        jira_transitions=TRANSITIONS,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_from="grantflow@example.com",
    )
    acts = build_channels(settings, links=links, store=store)
    try:
        assert acts.approve_transition == "Approve" and acts.close_transition == "Close"
        assert isinstance(acts._jira, LazyJira)
        story = Story(people)
        state = await present(acts, story.pending(), ChannelState(), ask=[people["bob"]])
        assert set(state.slack) == {people["bob"].id} and state.jira_key is not None
        assert len(emails(smtp, story.id)) == 1
    finally:
        await acts.aclose()

    with pytest.raises(SettingsError, match="JIRA_API_TOKEN"):
        build_channels(Settings(jira_url=jira.url, jira_email=JIRA_BOT), links=links, store=store)
    with pytest.raises(SettingsError, match="no 'Cancel' transition"):
        build_channels(
            Settings(
                jira_url=jira.url,
                jira_email=JIRA_BOT,
                jira_api_token=JIRA_TOKEN,
                jira_transitions={"Approve": "Approved", "Deny": "Denied", "Close": "Done"},
            ),
            links=links,
            store=store,
        )


async def test_tickets_carry_the_configured_labels_and_fields_of_the_request(
    slack: SlackStandIn,
    jira: JiraStandIn,
    smtp: SmtpSink,
    links: ReviewLinks,
    store: Store,
    people: dict[str, PersonRef],
) -> None:
    settings = Settings(
        jira_url=jira.url,
        jira_email=JIRA_BOT,
        jira_api_token=JIRA_TOKEN,
        jira_transitions=TRANSITIONS,
        jira_labels=["access-request", "{{ view.resource }} {{ view.role }}"],
        jira_fields={
            "customfield_10050": "{{ view.connection }}",
            "customfield_10051": ["jit", "{{ 'break-glass' if view.break_glass else 'reviewed' }}"],
        },
    )
    acts = build_channels(settings, links=links, store=store)
    story = Story(people)
    try:
        state = await present(acts, story.pending(), ChannelState(), ask=[people["bob"]])
    finally:
        await acts.aclose()
    assert state.jira_key is not None
    fields = jira.issue(state.jira_key)["fields"]
    assert fields["labels"] == [f"grantflow-{story.id}", "access-request", "pg-prod-admin"]
    assert fields["customfield_10050"] == "pg-prod-admin"
    assert fields["customfield_10051"] == ["jit", "reviewed"]

    broken = settings.model_copy(update={"jira_fields": {"customfield_10050": "{{ view.resource "}})
    with pytest.raises(SettingsError, match="GRANTFLOW_JIRA_FIELDS"):
        build_channels(broken, links=links, store=store)


async def test_jira_down_at_start_is_a_transient_failure_of_the_activity(
    links: ReviewLinks, store: Store, people: dict[str, PersonRef]
) -> None:
    down = JiraStandIn(users={JIRA_BOT: JIRA_TOKEN})
    url = down.start()
    down.stop()  # nothing listens there now
    settings = Settings(jira_url=url, jira_email=JIRA_BOT, jira_api_token=JIRA_TOKEN)
    acts = build_channels(settings, links=links, store=store)  # does not call Jira
    try:
        with pytest.raises(ApplicationError) as raised:
            await present(acts, Story(people).pending(), ChannelState())
        assert raised.value.type == CHANNEL_TRANSIENT and "jira:" in raised.value.message
    finally:
        await acts.aclose()


async def test_a_person_the_directory_deactivated_is_not_emailed(
    channels: ChannelActivities, smtp: SmtpSink, store: Store, people: dict[str, PersonRef]
) -> None:
    """alice left: her request ended as a leaver's, and nobody emails an ex-employee about production
    access. The approvers are still told."""
    organisation = load_organisation(ORGANISATION_FILE).people
    story = Story(people)
    state = await present(channels, story.pending(), ChannelState(), ask=story.approvers)
    store.replace_directory(
        [
            p.model_copy(update={"active": False}) if p.email == people["alice"].email else p
            for p in organisation
        ]
    )
    try:
        ended = story.pending(status=RequestStatus.CANCELLED, ended_at=T0 + timedelta(minutes=5))
        await present(channels, ended, state)
        recipients = [m.rcpt_tos for m in emails(smtp, story.id)]
        assert (people["alice"].email,) not in recipients
        assert len(recipients) == len(story.approvers)  # the asks went out before she left
    finally:
        store.replace_directory(organisation)
