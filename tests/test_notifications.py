"""The workflow's notices reach people in production: an escalation goes to the approvers by Slack DM and
email, to the operators' Slack channel and address, and onto the request's Jira ticket — once, also when
retried — while the notices the presentation already delivers are not sent twice; nothing (least of all a
review link) is written to disk outside ``grantflow dev``, whose outbox still gets everything."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.channels import ChannelActivities
from activities.notifications import NotificationActivities, NotifyInput
from configuration.settings import Settings, SettingsError
from domain.identity import PersonRef
from domain.policy import RolePolicy
from domain.requests import RequestStatus, RequestView
from domain.review_links import ReviewLinks
from sandbox.jira import JiraStandIn
from sandbox.slack import SlackStandIn
from sandbox.smtp import SmtpSink
from store import Store
from tests.builders import request_view
from tests.rigs.edges import settings_for
from worker import build_channels, build_notifier

BOT_TOKEN = "xoxb-notify-test"
JIRA_BOT, JIRA_TOKEN = "grantflow-bot@example.com", "jira-api-token"
OPERATORS_EMAIL = "oncall@example.com"
ALICE = PersonRef(id="u-alice", email="alice@example.com")
BOB = PersonRef(id="u-bob", email="bob@example.com")
CAROL = PersonRef(id="u-carol", email="carol@example.com")
OPS_CHANNEL: list[str] = []  # the operators' channel's id, once the stand-in has it


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn(bot_token=BOT_TOKEN)
    for person in (ALICE, BOB, CAROL):
        stand_in.add_user(person.email, person.email.split("@")[0].title())
    OPS_CHANNEL.append(stand_in.add_channel("grantflow-ops"))
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def jira() -> Iterator[JiraStandIn]:
    stand_in = JiraStandIn(users={JIRA_BOT: JIRA_TOKEN})
    stand_in.add_project("ACC", "Access requests")
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path / 'n.db'}", ledger_key=b"k" * 32, anchor_path=None)
    db.migrate()
    yield db
    db.close()


def production(
    tmp_path: Path, slack: SlackStandIn, jira: JiraStandIn, smtp: SmtpSink, **more: Any
) -> Settings:
    return settings_for(
        tmp_path / "state",
        slack=slack,
        jira=jira,
        jira_user=(JIRA_BOT, JIRA_TOKEN),
        smtp=smtp,
        operator_slack_channel=OPS_CHANNEL[-1],
        operator_email=OPERATORS_EMAIL,
        **more,
    )


@pytest_asyncio.fixture
async def wired(
    tmp_path: Path, slack: SlackStandIn, jira: JiraStandIn, smtp: SmtpSink, store: Store
) -> AsyncIterator[tuple[Settings, ChannelActivities]]:
    settings = production(tmp_path, slack, jira, smtp)
    links = ReviewLinks("link-secret", "https://grantflow.example.com", timedelta(hours=1))
    channels = build_channels(settings, links=links, store=store)
    yield settings, channels
    await channels.aclose()


def view(request_id: str) -> RequestView:
    """alice's grant whose revocation failed three times (an escalation is due)."""
    return request_view(
        ALICE,
        id=request_id,
        status=RequestStatus.REVOKING,
        reason="INC-42 <!channel>",
        requested_duration=timedelta(hours=1),
        eligible_approvers=[BOB, CAROL],
        approvers_resolved=True,
        policy=RolePolicy(connection="pg-prod-admin", approver_groups=["db-owners"]),
        revocation_attempts=3,
    )


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_an_escalation_reaches_approvers_operators_and_the_ticket_once(
    wired: tuple[Settings, ChannelActivities], slack: SlackStandIn, jira: JiraStandIn, smtp: SmtpSink
) -> None:
    settings, channels = wired
    notify = NotificationActivities(build_notifier(settings, channels), links=None)
    tickets = channels.tickets
    assert tickets is not None
    ticket = tickets().open_ticket(
        label="grantflow-req-esc", summary="alice asks for pg-prod", description=""
    )
    escalation = NotifyInput(
        event="revocation_escalated", view=view("req-esc"), recipients=[BOB, CAROL], note="hoop answers 503"
    )
    smtp.clear()
    for _ in range(2):  # the second run is a retry: nothing twice
        assert await ActivityEnvironment().run(notify.notify, escalation) == 2

    for person in (BOB, CAROL):
        dms = slack.messages(slack.dm_channel(slack.user_id(person.email)))
        assert len(dms) == 1 and "could not be revoked yet" in dms[0]["text"]
        assert "&lt;!channel&gt;" in dms[0]["text"]  # a requester's words cannot ping a channel
    ops = slack.messages(settings.operator_slack_channel)
    assert len(ops) == 1 and "req-esc" in ops[0]["text"] and "hoop answers 503" in ops[0]["text"]
    assert sorted(str(m.message["To"]) for m in smtp.messages) == [
        BOB.email,
        CAROL.email,
        OPERATORS_EMAIL,
    ]
    comments = jira.comments(ticket)
    assert len(comments) == 1 and "could not be revoked yet" in comments[0]
    assert files_under(settings.state_dir) == []  # no outbox outside dev


async def test_notices_the_presentation_delivers_are_not_sent_twice_nor_written_anywhere(
    wired: tuple[Settings, ChannelActivities], slack: SlackStandIn, smtp: SmtpSink
) -> None:
    settings, channels = wired
    links = ReviewLinks("link-secret", "https://grantflow.example.com", timedelta(hours=1))
    notify = NotificationActivities(build_notifier(settings, channels), links)
    before = len(slack.messages())
    smtp.clear()
    asked = NotifyInput(
        event="request_created", view=view("req-ask"), recipients=[BOB], with_review_link=True
    )
    assert await ActivityEnvironment().run(notify.notify, asked) == 1
    assert len(slack.messages()) == before and smtp.messages == []  # present_request asks them
    assert files_under(settings.state_dir) == []


async def test_dev_keeps_the_outbox_with_links_and_sends_through_the_channels_too(
    tmp_path: Path, slack: SlackStandIn, jira: JiraStandIn, smtp: SmtpSink, store: Store
) -> None:
    settings = production(tmp_path, slack, jira, smtp, dev_outbox=True)
    links = ReviewLinks("link-secret", "https://grantflow.example.com", timedelta(hours=1))
    channels = build_channels(settings, links=links, store=store)
    try:
        notify = NotificationActivities(build_notifier(settings, channels), links)
        smtp.clear()
        asked = NotifyInput(
            event="request_created", view=view("req-dev"), recipients=[BOB], with_review_link=True
        )
        await ActivityEnvironment().run(notify.notify, asked)
        escalation = NotifyInput(event="revocation_escalated", view=view("req-dev"), recipients=[BOB])
        await ActivityEnvironment().run(notify.notify, escalation)
    finally:
        await channels.aclose()
    lines = [json.loads(line) for line in (settings.state_dir / "outbox.jsonl").read_text().splitlines()]
    assert [(m["event"], m["recipient"]["email"]) for m in lines] == [
        ("request_created", BOB.email),
        ("revocation_escalated", BOB.email),
        ("revocation_escalated", "operators"),
    ]
    assert lines[0]["link"].startswith("https://grantflow.example.com/")
    assert sorted(str(m.message["To"]) for m in smtp.messages) == [BOB.email, OPERATORS_EMAIL]


async def test_an_operator_channel_without_its_vendor_is_refused_at_start(
    tmp_path: Path, store: Store
) -> None:
    for setting, message in (
        ({"operator_slack_channel": "C0OPS"}, "GRANTFLOW_OPERATOR_SLACK_CHANNEL needs Slack"),
        ({"operator_email": OPERATORS_EMAIL}, "GRANTFLOW_OPERATOR_EMAIL needs email"),
    ):
        settings = Settings(state_dir=tmp_path, **setting)  # type: ignore[arg-type]
        channels = build_channels(settings, links=None, store=store)
        with pytest.raises(SettingsError, match=message):
            build_notifier(settings, channels)
