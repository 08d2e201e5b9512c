"""Campaign digests in Jira, over real sockets: for a spec listing ``"jira"`` in its channels, the worker
opens each reviewer one issue per stage in the Jira stand-in (through the real ``jira`` client), reviewers
decide by commenting on it through the web app's signed Jira webhook, the description follows decisions
from any channel, and the stage's close comments the issue and moves it to done. Temporal is the
time-skipping server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

import store.schema as schema
from activities.campaign_base import ReviewerPageInput
from activities.campaign_handovers import EscalationInput
from activities.campaign_outcomes import OUTCOME_STAGE, OutcomePageInput
from domain.campaign_state import CampaignStatus
from domain.campaigns import AccessVia, CampaignItem, ItemAccess, Source, Subject, SubjectKind, Usage
from integrations.jira_campaign_digest import (
    MAX_LISTED,
    CommentSyntaxError,
    DecisionCommand,
    JiraDigestRow,
    listed_pending,
    parse_decision_comment,
    parse_digest_label_id,
    render_description,
)
from sandbox.jira import DEFAULT_WORKFLOW, JiraStandIn, JiraStatus, JiraTransition, JiraWorkflow
from store.campaigns import StoredItem
from tests.rigs.edges import DEFAULT_TIMEOUT, serving, settings_for, until
from tests.stack import LINK_SECRET, Stack, start_stack
from tests.test_campaign_handovers import synced_in_place
from tests.test_campaign_slack_digest import synced
from tests.test_campaign_workflow import handle, item_of, until_open
from web.auth import TokenRegistry
from web.campaign_service import CampaignService, DecisionRequest
from web.service import RequestService
from worker import build_worker
from workflows.campaign import CampaignWorkflow

API_USER, API_TOKEN = "grantflow-bot@example.com", "jira-api-token"
WEBHOOK_SECRET = "campaign-jira-webhook-secret"

SPEC = """\
name = "Analytics access review"
owner = "margaret@example.com"
duration = "14d"
default_decision = "recommendation"
fallback_reviewer = "margaret@example.com"
reminders = ["2d"]
channels = ["email", "jira"]

[scope]
groups = ["analytics"]
include_admins = false

[[stages]]
reviewers = "manager"
duration = "7d"

[[stages]]
reviewers = "group"
group = "security"
"""
REVIEWERS = {"judy@example.com", "dan@example.com", "xena@example.com", "dina@example.com"}
"""Stage 1 of SPEC: each analytics member's manager (judy reviews bea, cyrus and dina)."""

# The stand-in's default workflow, with "Keep all" / "Revoke all" transitions a Jira admin would add for
# digests, and "Close" offered from every open status (the stand-in's default only closes from Approved).
DIGEST_WORKFLOW = JiraWorkflow(
    statuses=(
        *DEFAULT_WORKFLOW.statuses,
        JiraStatus("10005", "All kept", "indeterminate"),
        JiraStatus("10006", "All revoked", "indeterminate"),
    ),
    transitions=(
        *(t for t in DEFAULT_WORKFLOW.transitions if t.name != "Close"),
        JiraTransition("61", "Keep all", "All kept", ("Waiting for approval",)),
        JiraTransition("71", "Revoke all", "All revoked", ("Waiting for approval",)),
        JiraTransition(
            "31", "Close", "Done", ("Approved", "Waiting for approval", "All kept", "All revoked")
        ),
    ),
    initial=DEFAULT_WORKFLOW.initial,
)


@dataclass
class Rig:
    stack: Stack
    jira: JiraStandIn
    accounts: dict[str, str]  # email -> Jira accountId
    campaigns: CampaignService
    activities: list[Callable[..., Any]]
    task_queue: str
    launched: list[str] = field(default_factory=list)

    def created(self) -> int:
        """Issues grantflow asked Jira to create (comments and transitions are below ``/issue/`` too)."""
        return sum(1 for c in self.jira.calls_to("POST", "/issue") if c.api_path == "/issue")

    def issues(self, campaign_id: str, stage: int = 0) -> list[dict[str, Any]]:
        prefix = f"grantflow-{campaign_id}:digest:{stage}:"
        return [i for i in self.jira.issues() if any(lb.startswith(prefix) for lb in i["fields"]["labels"])]

    def issue_of(self, campaign_id: str, email: str, stage: int = 0) -> dict[str, Any]:
        label = f"grantflow-{campaign_id}:digest:{stage}:{self.stack.ref(email).id}"
        found = self.jira.issues(label=label)
        assert len(found) == 1, found
        return found[0]

    async def comment(self, key: str, text: str, email: str) -> str:
        """``email`` comments in Jira's UI; returns its webhook event once delivered and answered."""
        event = await asyncio.to_thread(self.jira.comment_as, key, text, self.accounts[email])
        await asyncio.to_thread(self.jira.wait_idle, DEFAULT_TIMEOUT)
        return event

    async def move(self, key: str, transition: str, email: str, comment: str | None = None) -> None:
        await asyncio.to_thread(self.jira.transition_as, key, transition, self.accounts[email], comment)
        await asyncio.to_thread(self.jira.wait_idle, DEFAULT_TIMEOUT)

    def answers(self, key: str) -> list[str]:
        """grantflow's answers on the issue (to comments and moves)."""
        return [c for c in self.jira.comments(key) if c.startswith("Comment ") or " moved this issue " in c]

    async def until_description(
        self, campaign_id: str, email: str, text: str, *, present: bool = True
    ) -> dict[str, Any]:
        """The person's issue once its description says ``text`` (or, ``present=False``, no longer)."""

        def found() -> dict[str, Any] | None:
            issue = self.issue_of(campaign_id, email)
            return issue if (text in str(issue["fields"]["description"])) == present else None

        return await until(found, f"{email}'s issue {'' if present else 'no longer '}describing {text!r}")

    def people_with_issues(self, campaign_id: str, stage: int = 0) -> list[str]:
        """Whose digest issues the stage has, one entry per issue (a person twice: two issues)."""
        prefix = f"grantflow-{campaign_id}:digest:{stage}:"
        people = [
            self.stack.store.get_person(label[len(prefix) :])
            for issue in self.issues(campaign_id, stage)
            for label in issue["fields"]["labels"]
            if label.startswith(prefix)
        ]
        assert None not in people, people
        return sorted(p.email for p in people if p is not None)

    def activity(self, name: str) -> Callable[..., Any]:
        return next(a for a in self.activities if getattr(a, "__name__", "") == name)


@pytest_asyncio.fixture(loop_scope="session")
async def rig(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Rig]:
    async with start_stack(time_env, tmp_path, time_skipping=True, with_scim=True, run_worker=False) as stack:
        jira = JiraStandIn(users={API_USER: API_TOKEN}, webhook_retry_delays=(0.05,))
        jira.add_project("ACC", workflow=DIGEST_WORKFLOW)
        accounts = {p.email: jira.add_user(p.email, p.display_name) for p in stack.organisation.people}
        jira.start()
        task_queue = f"tq-jira-digest-{uuid.uuid4().hex}"
        try:
            settings = settings_for(
                stack.tmp_path,
                jira=jira,
                jira_user=(API_USER, API_TOKEN),
                jira_webhook_secret=WEBHOOK_SECRET,
                jira_digest_keep_all_status="All kept",
                jira_digest_revoke_all_status="10006",  # by id
                review_link_secret=LINK_SECRET,
                task_queue=task_queue,
            )
            service = RequestService(stack.env.client, stack.store, stack.policies, task_queue)
            async with serving(stack, settings, service, tokens=TokenRegistry(None)) as web:
                jira.set_webhook(f"{web.url}/jira/webhook", WEBHOOK_SECRET)
                channels, activities = stack.channel_activities(settings, stack.links, evidence_key=None)
                try:
                    async with build_worker(stack.env.client, task_queue, activities):
                        campaigns = await synced(stack, task_queue)
                        assert web.context.jira is not None
                        web.context.jira.campaign_digests.campaigns = campaigns
                        running = Rig(stack, jira, accounts, campaigns, activities, task_queue)
                        try:
                            yield running
                        finally:  # a campaign's timers must not hold up the next test's clock
                            for campaign_id in running.launched:
                                await handle(stack, campaign_id).terminate("the test is over")
                            jira.set_webhook(None)
                finally:
                    await channels.aclose()
        finally:
            jira.stop()


async def launched(rig: Rig) -> str:
    record = await rig.campaigns.launch(SPEC, rig.stack.actor("margaret@example.com"))
    rig.launched.append(record.id)
    await until_open(rig.stack, record.id)
    return record.id


# ----------------------------------------------------------------------------------- one issue, kept current


async def test_one_issue_per_reviewer_and_retried_notices_and_reminders_open_no_second(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    issues = rig.issues(campaign_id)
    assert len(issues) == len(REVIEWERS)  # one per reviewer, never one per item
    assert {i["fields"]["assignee"]["accountId"] for i in issues} == {rig.accounts[e] for e in REVIEWERS}
    record = stack.store.campaign(campaign_id)
    assert record is not None and record.stage_closes_at is not None
    judy = rig.issue_of(campaign_id, "judy@example.com")
    assert judy["fields"]["duedate"] == record.stage_closes_at.date().isoformat()
    description = str(judy["fields"]["description"])
    assert "Access review: Analytics access review · stage 1 of 2" in description
    assert "3 of 3 items pending" in description
    for name in ("bea", "cyrus", "dina"):
        item = item_of(stack, campaign_id, f"{name}@example.com")
        assert f"* {item.id} · {name}@example.com · PENDING" in description
    assert "Recommendation: revoke: not used in the records" in description
    assert "member of analytics" in description
    created = rig.created()

    # The notice again (a retry after a lost reply): nothing opened, nothing rewritten.
    tell = next(a for a in rig.activities if getattr(a, "__name__", "") == "tell_reviewers")
    notice = ReviewerPageInput(campaign_id=campaign_id, stage=0, kind="notice")
    edits = len(rig.jira.calls_to("PUT", "/issue/"))
    await ActivityEnvironment().run(tell, notice)
    assert rig.created() == created
    assert len(rig.jira.calls_to("PUT", "/issue/")) == edits

    # A retry after the issue was opened but its key never reached the store: found again by its label.
    with stack.store.engine.begin() as conn:
        conn.execute(
            delete(schema.campaign_digests).where(schema.campaign_digests.c.campaign_id == campaign_id)
        )
    await ActivityEnvironment().run(tell, notice)
    assert rig.created() == created
    kept = stack.store.digest(campaign_id, 0, stack.ref("judy@example.com").id, "jira")
    assert kept is not None and kept.conversation == judy["key"]
    assert len(rig.issues(campaign_id)) == len(REVIEWERS)

    # Two days before stage 1's deadline the reminder comments the pending items on the same issue.
    await stack.env.sleep(timedelta(days=5, hours=1))

    def reminded() -> list[str]:
        return [c for c in rig.jira.comments(judy["key"]) if c.startswith("Reminder 1 of stage 1")]

    said = await until(reminded, "judy's reminder comment")
    assert len(said) == 1 and "3 items still wait for your decision" in said[0]
    assert item_of(stack, campaign_id, "bea@example.com").id in said[0]
    assert rig.created() == created
    assert len(rig.issues(campaign_id)) == len(REVIEWERS)


async def test_comment_decisions_refusals_web_refresh_and_stage_close(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    judy = rig.issue_of(campaign_id, "judy@example.com")
    key = judy["key"]
    bea, cyrus, dina = (item_of(stack, campaign_id, f"{n}@example.com") for n in ("bea", "cyrus", "dina"))

    # The reviewer revokes by comment, with a reason: recorded through the service as judy on Jira.
    event = await rig.comment(key, f"revoke {bea.id} reason: left the team", "judy@example.com")
    assert item_of(stack, campaign_id, "bea@example.com").verdict == "revoke"
    decision = stack.store.decisions(campaign_id, item_id=bea.id)[-1][1]
    assert decision.actor is not None and decision.actor.person.email == "judy@example.com"
    assert decision.actor.channel == "jira" and decision.reason == "left the team"
    answers = rig.answers(key)
    assert len(answers) == 1
    assert "Recorded: revoke for 1 item." in answers[0]
    # Jira delivers it again (a lost acknowledgement): nothing decided twice, no second answer.
    await asyncio.to_thread(rig.jira.redeliver, event)
    await asyncio.to_thread(rig.jira.wait_idle, DEFAULT_TIMEOUT)
    assert [d.status for d in rig.jira.deliveries_of(event)] == [200, 200]
    assert len(stack.store.decisions(campaign_id, item_id=bea.id)) == 1
    assert len(rig.answers(key)) == 1

    # Someone else comments on judy's issue: refused with a comment, recorded, nothing decided.
    await rig.comment(key, f"keep {cyrus.id}", "xena@example.com")
    answers = rig.answers(key)
    assert len(answers) == 2
    assert (
        "only judy@example.com, whom this issue is for, can decide here; nothing was recorded." in answers[1]
    )
    assert item_of(stack, campaign_id, "cyrus@example.com").verdict is None
    refusals = stack.store.refusals(campaign_id)
    assert [(r.item_id, r.channel) for r in refusals] == [(cyrus.id, "jira")]

    # A comment that is not a decision is left alone; one that cannot be read is answered.
    await rig.comment(key, "Who is cyrus?", "judy@example.com")
    assert len(rig.answers(key)) == 2
    await rig.comment(key, "keep cyrus", "judy@example.com")
    answers = rig.answers(key)
    assert len(answers) == 3 and "is not an item id of this issue" in answers[2]

    # A decision on the web page: the description follows (refreshes are batched: Temporal's clock).
    web = stack.actor("judy@example.com", channel="web")
    kept = await rig.campaigns.decide(campaign_id, [DecisionRequest(item_id=cyrus.id, verdict="keep")], web)
    assert kept.recorded == [cyrus.id]
    await stack.env.sleep(timedelta(seconds=6))
    updated = await rig.until_description(
        campaign_id, "judy@example.com", f"{cyrus.id} · cyrus@example.com · KEPT"
    )
    assert f"{bea.id} · bea@example.com · REVOKED" in str(updated["fields"]["description"])
    assert "1 of 3 items pending · 1 kept, 1 revoked." in str(updated["fields"]["description"])

    # The "Keep all" transition decides what is still pending (dina) and nothing else.
    await rig.move(key, "Keep all", "judy@example.com")
    assert item_of(stack, campaign_id, "dina@example.com").verdict == "keep"
    assert item_of(stack, campaign_id, "bea@example.com").verdict == "revoke"
    answers = rig.answers(key)
    assert len(answers) == 4 and "moved this issue to All kept (keep all):" in answers[3]
    assert "Recorded: keep for 1 item." in answers[3]
    assert len(rig.issues(campaign_id)) == len(REVIEWERS)

    # "Revoke all" moved by someone else is refused; by the reviewer, its comment is the reason.
    dan_key = rig.issue_of(campaign_id, "dan@example.com")["key"]
    dans = [
        i.id
        for i in stack.store.items(campaign_id)
        if i.assignment.reviewer is not None and i.assignment.reviewer.id == stack.ref("dan@example.com").id
    ]
    assert dans
    await rig.move(dan_key, "Revoke all", "xena@example.com", "reason: not needed")
    assert "only dan@example.com, whom this issue is for, can decide here" in rig.answers(dan_key)[-1]
    assert {item_of_id(stack, campaign_id, i).verdict for i in dans} == {None}
    xena_key = rig.issue_of(campaign_id, "xena@example.com")["key"]
    xenas = [
        i.id
        for i in stack.store.items(campaign_id)
        if i.assignment.reviewer is not None and i.assignment.reviewer.id == stack.ref("xena@example.com").id
    ]
    await rig.move(xena_key, "Revoke all", "xena@example.com", "reason: the team disbanded")
    assert xenas and {item_of_id(stack, campaign_id, i).verdict for i in xenas} == {"revoke"}
    assert {stack.store.decisions(campaign_id, item_id=i)[-1][1].reason for i in xenas} == {
        "the team disbanded"
    }

    # The owner ends stage 1: the issue is commented and moved to Done; a late comment is refused.
    await rig.campaigns.end_stage(campaign_id, stack.actor("margaret@example.com"), "all answered")
    await until_open(stack, campaign_id, stage=1)
    assert rig.jira.status_of(key) == "Done"
    assert any(c.startswith("Stage 1 closed") for c in rig.jira.comments(key))
    closed = rig.issue_of(campaign_id, "judy@example.com")
    assert "This stage is closed" in str(closed["fields"]["description"])
    await rig.comment(key, f"revoke {dina.id} reason: changed my mind", "judy@example.com")
    answers = rig.answers(key)
    assert f"stage 1 of campaign {campaign_id} is closed" in answers[-1]
    assert item_of(stack, campaign_id, "dina@example.com").verdict in (None, "keep")
    # stage 2 has its own issues, for the security group's members
    assert rig.issues(campaign_id, stage=1)


def item_of_id(stack: Stack, campaign_id: str, item_id: str) -> StoredItem:
    return stack.store.items_by_id(campaign_id, [item_id])[item_id]


# ----------------------------------------------------------------------------------- the comment syntax


def test_the_comment_syntax() -> None:
    assert parse_decision_comment("Who is cyrus?\nthanks") == []
    assert parse_decision_comment("Keep it-0a it-1b, it-0a") == [
        DecisionCommand("keep", ("it-0a", "it-1b"), every_pending=False, reason="")
    ]
    assert parse_decision_comment("revoke all reason: left the team\nkeep it-2c") == [
        DecisionCommand("revoke", (), every_pending=True, reason="left the team"),
        DecisionCommand("keep", ("it-2c",), every_pending=False, reason=""),
    ]
    with pytest.raises(CommentSyntaxError, match="names no item"):
        parse_decision_comment("keep reason: fine")
    with pytest.raises(CommentSyntaxError, match="is not an item id"):
        parse_decision_comment("revoke all it-0a")
    found = parse_digest_label_id("c-1:digest:2:p-9")
    assert found is not None and (found.campaign_id, found.stage, found.person_id) == ("c-1", 2, "p-9")
    assert parse_digest_label_id("req-123") is None


def test_a_long_digest_lists_pending_items_first_and_says_how_many_more() -> None:
    now = datetime.now(UTC)
    usage = Usage(window_start=now - timedelta(days=90), read_at=now)
    access = ItemAccess(
        via=AccessVia.GROUP, group="analytics", sources=(Source.HOOP,), connections=("pg-prod-ro",)
    )
    items = [
        CampaignItem.of(
            Subject(kind=SubjectKind.PERSON, id=f"u-{n:03}", name=f"p{n:03}@example.com"),
            access,
            usage,
            timedelta(days=90),
        )
        for n in range(MAX_LISTED + 20)
    ]
    decided = {i.id for i in items[:30]}  # decided items go after every pending one
    rows = [JiraDigestRow(item=i, verdict="keep" if i.id in decided else None) for i in items]
    text = render_description(
        campaign_name="Analytics access review",
        stage=0,
        stages=2,
        closes_at=now + timedelta(days=7),
        default_sentence="the recommendation decides",
        rows=rows,
    )
    listed = [line for line in text.splitlines() if line.startswith("* it-")]
    assert len(listed) == MAX_LISTED
    assert all(line.endswith("PENDING") for line in listed[: MAX_LISTED + 20 - 30])
    assert sum(line.endswith("KEPT") for line in listed) == MAX_LISTED - (MAX_LISTED + 20 - 30)
    assert f"{MAX_LISTED + 20 - 30} of {MAX_LISTED + 20} items pending · 30 kept, 0 revoked." in text
    assert "… and 20 more on the review page" in text
    assert listed_pending([i.id for i in reversed(items)]) == sorted(i.id for i in items)[:MAX_LISTED]


# ----------------------------------------------------------------------------------- items changing hands


def described(issue: dict[str, Any]) -> str:
    return str(issue["fields"]["description"])


def pending_row(item: StoredItem) -> str:
    return f"* {item.id} · {item.subject.name} · PENDING"


async def escalated(stack: Stack, campaign_id: str) -> None:
    """Real time: the escalation's activity runs while Temporal's clock waits for nothing else."""
    for _ in range(600):
        if (await handle(stack, campaign_id).query(CampaignWorkflow.state)).escalated:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign {campaign_id} never escalated")


async def test_an_escalation_opens_the_managers_issue_and_shows_on_the_reviewers(rig: Rig) -> None:
    stack = rig.stack
    record = await rig.campaigns.launch(
        SPEC.replace('reminders = ["2d"]', 'reminders = ["2d"]\nescalation = "1d"'),
        stack.actor("margaret@example.com"),
    )
    rig.launched.append(record.id)
    campaign_id = record.id
    await until_open(stack, campaign_id)
    dan_key = rig.issue_of(campaign_id, "dan@example.com")["key"]  # dan reviews judy's item
    assert "ken@example.com" not in rig.people_with_issues(campaign_id)  # dan's manager reviews nobody
    bea, cyrus, dina = (item_of(stack, campaign_id, f"{n}@example.com") for n in ("bea", "cyrus", "dina"))
    judys_access = item_of(stack, campaign_id, "judy@example.com")

    await stack.env.sleep(timedelta(days=6, hours=1))  # stage 1 lasts 7 days; escalation 1 day before
    await escalated(stack, campaign_id)

    entries = [e for e in stack.store.ledger_entries(subject=campaign_id) if e.kind == "campaign.escalated"]
    managers = {str(e.data["manager"]) for e in entries}
    assert {"dan@example.com", "ken@example.com"} <= managers
    # One issue per person and stage: dan's is updated in place, ken (new to the stage) gets his own.
    assert rig.people_with_issues(campaign_id) == sorted(REVIEWERS | managers)
    dan = rig.issue_of(campaign_id, "dan@example.com")
    assert dan["key"] == dan_key
    for item in (bea, cyrus, dina):
        assert f"{pending_row(item)}\n" in described(dan)
    assert described(dan).count("Escalated to you: judy@example.com has not decided it.") == 3
    ken = rig.issue_of(campaign_id, "ken@example.com")
    assert ken["fields"]["assignee"]["accountId"] == rig.accounts["ken@example.com"]
    assert pending_row(judys_access) in described(ken)
    assert "Escalated to you: dan@example.com has not decided it." in described(ken)
    # The reviewer's issue says who else may now decide their items.
    judy = rig.issue_of(campaign_id, "judy@example.com")
    assert described(judy).count("Escalated to dan@example.com, who may decide it too.") == 3

    # The escalation again (a retry after a lost reply): nothing opened, nothing rewritten.
    created, edits = rig.created(), len(rig.jira.calls_to("PUT", "/issue/"))
    await ActivityEnvironment().run(
        rig.activity("escalate"), EscalationInput(campaign_id=campaign_id, stage=0)
    )
    assert rig.created() == created
    assert len(rig.jira.calls_to("PUT", "/issue/")) == edits
    assert rig.people_with_issues(campaign_id) == sorted(REVIEWERS | managers)

    # dina's items were escalated to judy; one of them moves (eli reports to ken now): the escalation
    # lapses, so the item leaves judy's issue as well as dina's, and reaches ken's as his own.
    eli = item_of(stack, campaign_id, "eli@example.com")
    assert f"{pending_row(eli)}\n" in described(judy)
    assert "Escalated to you: dina@example.com has not decided it." in described(judy)
    server = stack.scim_server
    assert server is not None
    server.set_manager("eli@example.com", "ken@example.com")
    await synced_in_place(rig.stack, rig.task_queue)
    assert eli.id not in described(rig.issue_of(campaign_id, "judy@example.com"))
    assert eli.id not in described(rig.issue_of(campaign_id, "dina@example.com"))
    ken = rig.issue_of(campaign_id, "ken@example.com")
    assert f"{pending_row(eli)}\n  Access:" in described(ken)
    assert rig.people_with_issues(campaign_id) == sorted(REVIEWERS | managers)


async def test_delegated_items_open_the_delegates_issue_and_leave_the_delegators(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    bea, cyrus = (item_of(stack, campaign_id, f"{n}@example.com") for n in ("bea", "cyrus"))
    judy_key = rig.issue_of(campaign_id, "judy@example.com")["key"]
    assert "ken@example.com" not in rig.people_with_issues(campaign_id)
    judy = stack.actor("judy@example.com", channel="web")

    await rig.campaigns.delegate(campaign_id, "ken@example.com", judy, item_ids=[bea.id])
    await until(lambda: "ken@example.com" in rig.people_with_issues(campaign_id), "ken's issue opened")
    ken = rig.issue_of(campaign_id, "ken@example.com")
    assert ken["fields"]["assignee"]["accountId"] == rig.accounts["ken@example.com"]
    assert pending_row(bea) in described(ken) and cyrus.id not in described(ken)
    left = await rig.until_description(campaign_id, "judy@example.com", bea.id, present=False)
    assert left["key"] == judy_key and pending_row(cyrus) in described(left)

    # A second delegation to him: his issue is updated in place, never a second one.
    created = rig.created()
    await rig.campaigns.delegate(campaign_id, "ken@example.com", judy, item_ids=[cyrus.id])
    more = await rig.until_description(campaign_id, "ken@example.com", pending_row(cyrus))
    assert more["key"] == ken["key"] and pending_row(bea) in described(more)
    await rig.until_description(campaign_id, "judy@example.com", cyrus.id, present=False)
    assert rig.created() == created
    assert rig.people_with_issues(campaign_id) == sorted(REVIEWERS | {"ken@example.com"})


async def test_items_rerouted_by_a_mover_open_the_new_reviewers_issue_at_once(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    eli, fay = (item_of(stack, campaign_id, f"{n}@example.com") for n in ("eli", "fay"))
    dina_before = rig.issue_of(campaign_id, "dina@example.com")
    assert pending_row(eli) in described(dina_before)
    assert "ken@example.com" not in rig.people_with_issues(campaign_id)
    created = rig.created()
    server = stack.scim_server
    assert server is not None
    server.set_manager("eli@example.com", "ken@example.com")  # eli's manager, and reviewer, is ken now

    await synced_in_place(rig.stack, rig.task_queue)
    # At once, with the sync: not at the next reminder (none has come: stage 1 is hours old).
    ken = rig.issue_of(campaign_id, "ken@example.com")
    assert ken["fields"]["assignee"]["accountId"] == rig.accounts["ken@example.com"]
    assert pending_row(eli) in described(ken) and "1 of 1 items pending" in described(ken)
    assert not [c for c in rig.jira.comments(ken["key"]) if c.startswith("Reminder")]
    dina = rig.issue_of(campaign_id, "dina@example.com")
    assert dina["key"] == dina_before["key"]
    assert eli.id not in described(dina) and pending_row(fay) in described(dina)
    assert rig.created() == created + 1
    assert rig.people_with_issues(campaign_id) == sorted(REVIEWERS | {"ken@example.com"})


# ----------------------------------------------------------------------------------- the campaign's outcome

ONE_STAGE = """\
name = "Analytics access review"
owner = "margaret@example.com"
duration = "14d"
default_decision = "recommendation"
fallback_reviewer = "margaret@example.com"
channels = ["email", "jira"]

[scope]
groups = ["analytics"]
include_admins = false

[[stages]]
reviewers = "manager"
"""


async def test_the_outcome_is_commented_once_on_the_last_issue_even_when_told_again(rig: Rig) -> None:
    stack = rig.stack
    record = await rig.campaigns.launch(ONE_STAGE, stack.actor("margaret@example.com"))
    campaign_id = record.id
    try:
        await until_open(stack, campaign_id)
        bea, cyrus = (item_of(stack, campaign_id, f"{n}@example.com") for n in ("bea", "cyrus"))
        decisions = [
            DecisionRequest(item_id=bea.id, verdict="revoke"),
            DecisionRequest(item_id=cyrus.id, verdict="keep"),
        ]
        judy = stack.actor("judy@example.com", channel="web")
        assert len((await rig.campaigns.decide(campaign_id, decisions, judy)).recorded) == 2
        # The owner ends the stage (as at its deadline) instead of the test skipping 15 days: a long skip of
        # the shared time-skipping server also drives every earlier test's leftover timers, and its RPC can
        # time out on a busy machine.
        await rig.campaigns.end_stage(campaign_id, stack.actor("margaret@example.com"), "everyone answered")
        campaign = handle(stack, campaign_id)
        for _ in range(600):
            if (await campaign.describe()).status is not WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
        assert (await campaign.result()).status is CampaignStatus.CLOSED
    except BaseException:  # a campaign's timers must not hold up the next test's clock
        await handle(stack, campaign_id).terminate("the test failed")
        raise
    key = rig.issue_of(campaign_id, "judy@example.com")["key"]

    def outcomes() -> list[str]:
        return [c for c in rig.jira.comments(key) if c.startswith("Access review Analytics access review (")]

    said = outcomes()
    assert len(said) == 1, rig.jira.comments(key)
    assert f"({campaign_id}) is closed and its revocations were applied." in said[0]
    assert (
        "The 3 items you reviewed: 1 kept, 1 revoked, 1 decided by the default at the deadline, "
        "0 whose revocation failed." in said[0]
    )
    assert "* cyrus@example.com, member of analytics" in said[0] and "/campaigns/review/" not in said[0]
    created = rig.created()

    # Told again (a retried page): the stored mark skips her.
    tell = rig.activity("tell_outcomes")
    await ActivityEnvironment().run(tell, OutcomePageInput(campaign_id=campaign_id))
    assert len(outcomes()) == 1
    # Told again with every mark of her lost (a crash before they were written): the issue already says it.
    with stack.store.engine.begin() as conn:
        conn.execute(
            delete(schema.campaign_digests).where(
                schema.campaign_digests.c.campaign_id == campaign_id,
                schema.campaign_digests.c.stage == OUTCOME_STAGE,
                schema.campaign_digests.c.reviewer_id == stack.ref("judy@example.com").id,
            )
        )
    await ActivityEnvironment().run(tell, OutcomePageInput(campaign_id=campaign_id))
    assert len(outcomes()) == 1
    assert stack.store.digest(campaign_id, OUTCOME_STAGE, stack.ref("judy@example.com").id, "jira-outcome")
    assert rig.created() == created  # nothing new opened: the outcome goes on the last issue
    assert rig.people_with_issues(campaign_id) == sorted(REVIEWERS)
