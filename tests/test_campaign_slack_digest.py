"""Campaign digests in Slack, over real sockets: the worker posts each reviewer one digest per stage in the
Slack stand-in, reviewers decide with its buttons through the web app's Slack edge (signed clicks), and the
digest is updated in place after decisions from Slack and from the web page; refusals are ephemeral and
change nothing; a retried notice and a reminder never post a second message. Temporal is the time-skipping
server (reminders and stage deadlines are days away)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from slack_sdk.models.blocks import Block
from sqlalchemy import delete
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer

import store.schema as schema
from activities.campaign_base import ReviewerPageInput
from activities.campaign_digests import SlackDigests, digest_key
from configuration.settings import Settings
from domain.campaign_state import CampaignRecord, CampaignStatus
from domain.campaigns import (
    AccessVia,
    Assignment,
    CampaignItem,
    ItemAccess,
    Reviewer,
    Source,
    Subject,
    SubjectKind,
    Usage,
)
from domain.directory_sync import SyncInput
from domain.identity import Person
from domain.review_links import ReviewLinks
from integrations.slack import SlackChannel, build_slack_client
from integrations.slack.campaign_digest import (
    CAMPAIGN_KEEP_ACTION,
    CAMPAIGN_KEEP_ALL_ACTION,
    CAMPAIGN_REASON_BLOCK,
    CAMPAIGN_REASON_VIEW,
    CAMPAIGN_REVOKE_ACTION,
    CAMPAIGN_REVOKE_ALL_ACTION,
    digest_value,
    parse_digest_value,
)
from sandbox.slack import SlackDriver, SlackStandIn, block_kit_errors
from store import Store
from store.campaigns import spec_hash
from tests.builders import buttons
from tests.rigs.edges import DEFAULT_TIMEOUT, EdgeRig, SlackPeople, serving, settings_for, until
from tests.stack import LINK_SECRET, Stack, start_stack
from tests.test_campaign_workflow import handle, item_of, until_open
from web.auth import TokenRegistry
from web.campaign_service import CampaignService, DecisionRequest
from web.pages import COOKIE
from web.service import RequestService
from worker import build_worker
from workflows.campaign import CampaignState, CampaignWorkflow
from workflows.identity_sync import IdentitySyncWorkflow

BOT, SECRET = "xoxb-digest-grantflow", "digest-slack-signing-secret"
OUTSIDER = "zed@elsewhere.example"
REVOKE_REASON = f"{CAMPAIGN_REVOKE_ACTION}_reason"
REVOKE_ALL_REASON = f"{CAMPAIGN_REVOKE_ALL_ACTION}_reason"

SPEC = """\
name = "Analytics access review"
owner = "margaret@example.com"
duration = "14d"
default_decision = "recommendation"
fallback_reviewer = "margaret@example.com"
reminders = ["2d"]

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


@dataclass
class Rig(EdgeRig, SlackPeople):
    slack: SlackStandIn
    driver: SlackDriver
    settings: Settings
    slack_users: dict[str, str]  # email -> Slack user id
    campaigns: CampaignService
    activities: list[Callable[..., Any]]
    task_queue: str
    launched: list[str] = field(default_factory=list)  # campaign ids, ended with the test

    def digests(self, campaign_id: str, email: str | None = None, stage: int = 0) -> list[dict[str, Any]]:
        """The digests in Slack for ``stage`` of the campaign (in one person's DM, when given)."""
        channel = self.slack.dm_channel(self.slack_users[email]) if email is not None else None
        found = []
        for m in self.slack.messages(channel):
            payload = (m.get("metadata") or {}).get("event_payload") or {}
            if payload.get("campaign_id") == campaign_id and payload.get("stage") == stage:
                found.append(m)
        return found

    def digest(self, campaign_id: str, email: str, stage: int = 0) -> dict[str, Any]:
        found = self.digests(campaign_id, email, stage)
        assert len(found) == 1, found
        return found[0]

    def posts_to(self, email: str) -> int:
        """Every message grantflow posted to ``email``'s DM (digests and anything else)."""
        channel = self.slack.dm_channel(self.slack_users[email])
        return sum(
            1
            for c in self.slack.calls_to("chat.postMessage")
            if c.status == 200 and (c.response or {}).get("channel") == channel
        )

    async def click_row(
        self, who: str, message: dict[str, Any], subject: str, action: str, value: str | None = None
    ) -> httpx.Response:
        """``who`` clicks ``action`` on the row of ``subject``'s item in a digest (a copy of it, when
        ``who`` is not its reader)."""
        block_id = row_buttons(message, subject)
        return await asyncio.to_thread(
            self.driver.click_button,
            self.slack_users[who],
            message["channel"],
            message["ts"],
            action,
            value,
            block_id=block_id,
        )

    async def until_shows(self, campaign_id: str, email: str, text: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            message = self.digest(campaign_id, email)
            return message if text in all_text(message) else None

        return await until(found, f"{email}'s digest showing {text!r}")


def all_text(message: dict[str, Any]) -> str:
    parts: list[str] = []
    for b in message.get("blocks") or []:
        parts.append(str((b.get("text") or {}).get("text", "")))
    return "\n".join(parts)


def row_buttons(message: dict[str, Any], subject: str) -> str:
    """The block id of the buttons under ``subject``'s row (a decided row's button is its section's)."""
    blocks = message["blocks"]
    for i, b in enumerate(blocks):
        if b["type"] == "section" and f"*{subject}*" in b["text"]["text"]:
            if b.get("accessory"):
                return str(b["block_id"])
            assert blocks[i + 1]["type"] == "actions", blocks[i + 1]
            return str(blocks[i + 1]["block_id"])
    raise AssertionError(f"no row for {subject} in {all_text(message)}")


def item_rows(message: dict[str, Any]) -> int:
    return sum(1 for b in message["blocks"] if str(b.get("block_id", "")).startswith("gf_decide_"))


@pytest_asyncio.fixture(loop_scope="session")
async def rig(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Rig]:
    """The stack (directory in scim2-server) with a worker whose channels are the Slack stand-in, and the
    web app (Slack edge and review pages) in front of it."""
    async with start_stack(time_env, tmp_path, time_skipping=True, with_scim=True, run_worker=False) as stack:
        slack = SlackStandIn(bot_token=BOT, signing_secret=SECRET)
        slack.start()
        task_queue = f"tq-digest-{uuid.uuid4().hex}"  # the stack's own (idle) worker holds its queue
        try:
            users = {p.email: slack.add_user(p.email, p.display_name) for p in stack.organisation.people}
            users[OUTSIDER] = slack.add_user(OUTSIDER, "Zed Outsider")
            settings = settings_for(
                stack.tmp_path, slack=slack, review_link_secret=LINK_SECRET, task_queue=task_queue
            )
            service = RequestService(stack.env.client, stack.store, stack.policies, task_queue)
            async with serving(stack, settings, service, tokens=TokenRegistry(None)) as web:
                links = ReviewLinks(LINK_SECRET, web.url, timedelta(hours=1))
                web.context.links = links
                channels, activities = stack.channel_activities(settings, links)  # Slack alone
                try:
                    async with build_worker(stack.env.client, task_queue, activities):
                        with SlackDriver(SECRET, f"{web.url}/slack/events", slack=slack) as driver:
                            running = Rig(
                                stack=stack,
                                service=service,
                                context=web.context,
                                url=web.url,
                                slack=slack,
                                driver=driver,
                                settings=settings,
                                slack_users=users,
                                campaigns=await synced(stack, task_queue),
                                activities=activities,
                                task_queue=task_queue,
                            )
                            try:
                                yield running
                            finally:  # a campaign's timers must not hold up the next test's clock
                                for campaign_id in running.launched:
                                    await handle(stack, campaign_id).terminate("the test is over")
                finally:
                    await channels.aclose()
        finally:
            slack.stop()


async def synced(stack: Stack, task_queue: str) -> CampaignService:
    """The directory read from SCIM into the store (the first identity sync), and the campaign service."""
    report = await stack.env.client.execute_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=True),
        id=f"sync-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    assert report.applied
    return CampaignService(stack.env.client, stack.store, task_queue)


async def launched(rig: Rig) -> str:
    record = await rig.campaigns.launch(SPEC, rig.stack.actor("margaret@example.com"))
    rig.launched.append(record.id)
    await until_open(rig.stack, record.id)
    return record.id


# ----------------------------------------------------------------------------------- one digest, kept current


async def test_one_digest_per_reviewer_updated_in_place_after_slack_and_web_decisions(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    # Exactly one digest per reviewer, and nothing else in their DMs (the notice's Slack side is the digest).
    assert {m["channel"] for m in rig.digests(campaign_id)} == {
        rig.slack.dm_channel(rig.slack_users[e]) for e in REVIEWERS
    }
    for email in REVIEWERS:
        assert len(rig.digests(campaign_id, email)) == 1
        assert rig.posts_to(email) == 1
    assert not rig.digests(campaign_id, "bea@example.com")
    notices = [m for m in stack.notifier.messages if m.event == "campaign_notice"]
    assert {m.recipient.email for m in notices} == REVIEWERS  # the email side is unchanged

    judy = rig.digest(campaign_id, "judy@example.com")
    assert block_kit_errors(judy["blocks"]) == []
    assert [b.to_dict() for b in Block.parse_all(judy["blocks"])] == judy["blocks"]
    head = judy["blocks"][0]["text"]["text"]
    assert "*Access review: Analytics access review* · stage 1 of 2 · closes <!date^" in head
    assert "At the deadline, " in head and "3 of 3 items pending." in head
    text = all_text(judy)
    for name in ("bea", "cyrus", "dina"):
        assert f"*{name}@example.com*" in text
    assert "member of analytics (hoop+scim) → pg-prod-ro, warehouse-ro" in text
    assert "_Usage:_ not used in the records; 0 sessions since" in text
    assert "_Recommendation:_ revoke: not used in the records" in text
    assert item_rows(judy) == 3
    bea, cyrus, dina = (item_of(stack, campaign_id, f"{n}@example.com") for n in ("bea", "cyrus", "dina"))
    bulk = parse_digest_value(buttons(judy)[CAMPAIGN_KEEP_ALL_ACTION]["value"])
    assert (bulk.campaign_id, bulk.stage, set(bulk.item_ids)) == (campaign_id, 0, {bea.id, cyrus.id, dina.id})
    link = buttons(judy)["grantflow_open"]["url"]
    assert link.startswith(f"{rig.url}/campaigns/review/")

    # Keep in Slack: recorded through the service as judy on the Slack channel; the digest changes in place.
    before = len(rig.said_to("judy@example.com"))
    answer = await rig.click_row("judy@example.com", judy, "bea@example.com", CAMPAIGN_KEEP_ACTION)
    assert answer.status_code == 200, answer.text
    told = await rig.told_new("judy@example.com", before)
    assert told == "Recorded: keep for 1 item. You can change it until the stage closes."
    assert item_of(stack, campaign_id, "bea@example.com").verdict == "keep"
    decision = stack.store.decisions(campaign_id, item_id=bea.id)[-1][1]
    assert decision.actor is not None and decision.actor.person.email == "judy@example.com"
    assert decision.actor.channel == "slack"
    updated = await rig.until_shows(campaign_id, "judy@example.com", "✅ *Kept* · *bea@example.com*")
    assert updated["ts"] == judy["ts"] and "edited" in updated
    assert "2 of 3 items pending · 1 kept, 0 revoked." in updated["blocks"][0]["text"]["text"]
    assert item_rows(updated) == 2  # bea's row lost its Keep / Revoke buttons …
    change = rig.slack.message(updated["channel"], updated["ts"])["blocks"]
    bea_row = next(b for b in change if b.get("accessory") and "bea@example.com" in b["text"]["text"])
    assert bea_row["accessory"]["action_id"] == CAMPAIGN_REVOKE_ACTION  # … for one to change it
    after_click = parse_digest_value(buttons(updated)[CAMPAIGN_REVOKE_ALL_ACTION]["value"])
    assert set(after_click.item_ids) == {cyrus.id, dina.id}  # the bulk buttons act on what is pending

    # Revoke on the web page (judy's link from the digest): the Slack digest follows, still in place.
    path = link.removeprefix(rig.url)
    async with httpx.AsyncClient(base_url=rig.url, timeout=DEFAULT_TIMEOUT) as browser:
        page = await browser.get(path)
        assert page.status_code == 200, page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None and browser.cookies.get(COOKIE) is not None
        posted = await browser.post(path, data={"csrf": csrf.group(1), f"d:{cyrus.id}": "revoke"})
        assert posted.status_code == 200 and "1 decision recorded" in posted.text
    # refreshes are batched: at most one every few seconds (Temporal's clock; skipped here)
    await stack.env.sleep(timedelta(seconds=6))
    web_updated = await rig.until_shows(campaign_id, "judy@example.com", "🚫 *Revoked* · *cyrus@example.com*")
    assert web_updated["ts"] == judy["ts"]
    remaining = parse_digest_value(buttons(web_updated)[CAMPAIGN_KEEP_ALL_ACTION]["value"])
    assert remaining.item_ids == (dina.id,)

    # Bulk "Keep all shown" from Slack decides what is still pending; then nothing is.
    before = len(rig.said_to("judy@example.com"))
    bulk_click = await asyncio.to_thread(
        rig.driver.click_button,
        rig.slack_users["judy@example.com"],
        judy["channel"],
        judy["ts"],
        CAMPAIGN_KEEP_ALL_ACTION,
    )
    assert bulk_click.status_code == 200
    assert (await rig.told_new("judy@example.com", before)).startswith("Recorded: keep for 1 item.")
    assert item_of(stack, campaign_id, "cyrus@example.com").verdict == "revoke"  # not overwritten
    assert item_of(stack, campaign_id, "dina@example.com").verdict == "keep"
    await stack.env.sleep(timedelta(seconds=6))
    done = await rig.until_shows(campaign_id, "judy@example.com", "Nothing is pending")
    assert done["ts"] == judy["ts"] and CAMPAIGN_KEEP_ALL_ACTION not in buttons(done)
    for email in REVIEWERS:
        assert rig.posts_to(email) == 1  # every change was an update
    # Three batches of decisions (one signal each, never one per item), one refresh activity each at most;
    # and the history replays on the current code.
    history = await handle(stack, campaign_id).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signals) == 3 and 1 <= scheduled.count("campaign_refresh_digests") <= 3
    replayer = Replayer(workflows=[CampaignWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


# ----------------------------------------------------------------------------------- refusals


async def test_clicks_by_others_on_their_own_access_and_after_the_stage_closed_are_refused(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    judy = rig.digest(campaign_id, "judy@example.com")
    bea = item_of(stack, campaign_id, "bea@example.com")
    own = item_of(stack, campaign_id, "judy@example.com")  # dan reviews judy's access

    async def refused(who: str, subject: str, action: str, value: str | None = None) -> str:
        before = len(rig.said_to(who))
        answer = await rig.click_row(who, judy, subject, action, value)
        assert answer.status_code == 200, answer.text
        return await rig.told_new(who, before)

    # Someone who is not the reviewer, with a copy of judy's digest.
    said = await refused("xena@example.com", "bea@example.com", CAMPAIGN_REVOKE_ACTION)
    assert "this item is reviewed by judy@example.com, not by xena@example.com" in said
    assert said.startswith("Nothing was recorded for 1 item(s)")
    # Judy, on her own access (a button value naming her item).
    said = await refused(
        "judy@example.com",
        "bea@example.com",
        CAMPAIGN_KEEP_ACTION,
        digest_value(campaign_id, 0, [own.id]),
    )
    assert "judy@example.com cannot review their own access" in said
    # A Slack account that is nobody in the directory.
    said = await refused(OUTSIDER, "bea@example.com", CAMPAIGN_KEEP_ACTION)
    assert f"your Slack account ({OUTSIDER}) is not in the directory; nothing was recorded" in said
    # A button that carries no campaign decision.
    said = await refused("judy@example.com", "bea@example.com", CAMPAIGN_KEEP_ACTION, "garbage")
    assert said == "this button does not carry a campaign decision; nothing was recorded."
    assert stack.store.decisions(campaign_id) == []
    assert {i.verdict for i in stack.store.items(campaign_id)} == {None}
    refusals = stack.store.refusals(campaign_id)
    assert [(r.item_id, r.channel) for r in refusals] == [
        (bea.id, "slack"),
        (own.id, "slack"),
        (bea.id, "slack"),
    ]

    # Judy keeps dina's access on the web page; then the owner ends stage 1: stage 2 opens (the security
    # group reviews what stage 1 kept or left), and a click on judy's stage-1 digest is stale.
    dina = item_of(stack, campaign_id, "dina@example.com")
    web = stack.actor("judy@example.com", channel="web")
    kept = await rig.campaigns.decide(campaign_id, [DecisionRequest(item_id=dina.id, verdict="keep")], web)
    assert kept.recorded == [dina.id]
    await rig.campaigns.end_stage(campaign_id, stack.actor("margaret@example.com"), "all answered")
    await until_open(stack, campaign_id, stage=1)
    # The closed stage's digest says so, in place, without buttons; dina's row shows judy's keep.
    closed = rig.digest(campaign_id, "judy@example.com")
    assert closed["ts"] == judy["ts"] and "This stage is closed" in closed["blocks"][0]["text"]["text"]
    assert not buttons(closed) or set(buttons(closed)) == {"grantflow_open"}
    assert not any(b.get("accessory") for b in closed["blocks"])
    assert "✅ *Kept* · *dina@example.com*" in all_text(closed)
    # A click on the buttons judy still saw (her Slack had not shown the update yet) is stale.
    before = len(rig.said_to("judy@example.com"))
    block_id = row_buttons(judy, "bea@example.com")
    value = next(
        el["value"]
        for b in judy["blocks"]
        if b.get("block_id") == block_id
        for el in b["elements"]
        if el["action_id"] == CAMPAIGN_KEEP_ACTION
    )
    user = rig.slack_users["judy@example.com"]
    with SlackDriver(SECRET, rig.driver.target_url) as detached:  # the message as it was, not as it is
        answer = await asyncio.to_thread(
            detached.click_button,
            user,
            judy["channel"],
            judy["ts"],
            CAMPAIGN_KEEP_ACTION,
            value,
            block_id=block_id,
            response_url=rig.slack.issue_response_url(judy["channel"], judy["ts"], user),
        )
    assert answer.status_code == 200, answer.text
    said = await rig.told_new("judy@example.com", before)
    assert said == (
        f"stage 1 of campaign {campaign_id} is closed; decisions on its items are no longer accepted; "
        "nothing was recorded."
    )
    assert [d.item_id for _, d in stack.store.decisions(campaign_id) if d.actor is not None] == [dina.id]
    # Stage 2 has digests of its own (the security group's members), one each; what stage 1 kept is
    # pending again there.
    trent = rig.digest(campaign_id, "trent@example.com", stage=1)
    assert "stage 2 of 2" in trent["blocks"][0]["text"]["text"]
    assert row_buttons(trent, "dina@example.com").startswith("gf_decide_")
    assert "*Kept*" not in all_text(trent)
    assert rig.posts_to("judy@example.com") == 1  # no second message for judy
    history = await handle(stack, campaign_id).fetch_history()  # closing the digests replays too
    replayer = Replayer(workflows=[CampaignWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


# ----------------------------------------------------------------------------------- retries and reminders


async def test_a_retried_notice_and_a_reminder_update_the_digest_and_never_post_again(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    judy = rig.digest(campaign_id, "judy@example.com")
    posts = len(rig.slack.calls_to("chat.postMessage"))
    tell = next(a for a in rig.activities if getattr(a, "__name__", "") == "tell_reviewers")
    notice = ReviewerPageInput(campaign_id=campaign_id, stage=0, kind="notice")

    # The notice activity again (a retry after a lost reply): nothing is posted, nothing needs updating.
    updates = len(rig.slack.calls_to("chat.update"))
    await ActivityEnvironment().run(tell, notice)
    assert len(rig.slack.calls_to("chat.postMessage")) == posts
    assert len(rig.slack.calls_to("chat.update")) == updates

    # A retry after the post whose handle never reached the store: found again in Slack by its key.
    judy_id = stack.ref("judy@example.com").id
    with stack.store.engine.begin() as conn:
        conn.execute(
            delete(schema.campaign_digests).where(schema.campaign_digests.c.campaign_id == campaign_id)
        )
    await ActivityEnvironment().run(tell, notice)
    assert len(rig.slack.calls_to("chat.postMessage")) == posts
    kept = stack.store.digest(campaign_id, 0, judy_id, "slack")
    assert kept is not None and (kept.conversation, kept.message_ts) == (judy["channel"], judy["ts"])
    assert judy["metadata"]["event_payload"]["grantflow_key"] == digest_key(campaign_id, 0, judy_id)

    # Two days before stage 1's deadline the reminder refreshes the same digest.
    await stack.env.sleep(timedelta(days=5, hours=1))
    reminded = await rig.until_shows(campaign_id, "judy@example.com", "⏰ *Reminder:* 3 items still wait")
    assert reminded["ts"] == judy["ts"]
    assert len(rig.slack.calls_to("chat.postMessage")) == posts
    reminders = [m for m in stack.notifier.messages if m.event == "campaign_reminder"]
    assert {m.recipient.email for m in reminders} == REVIEWERS  # the email reminder is as it was


async def test_a_notice_rate_limited_or_cut_off_still_posts_each_reviewer_one_digest(rig: Rig) -> None:
    """Slack answers the first digest's post with a 429, then drops the connection after storing the
    retry: the notice tries again after ``Retry-After`` and finds the message it posted, so the reviewer
    gets their digest with the notice (not only with a reminder), and only one."""
    rig.slack.fail_next("chat.postMessage", status=429, retry_after=1)
    rig.slack.drop_next("chat.postMessage", after_write=True)
    campaign_id = await launched(rig)
    for email in REVIEWERS:
        assert len(rig.digests(campaign_id, email)) == 1, email
        assert len(rig.slack.messages(rig.slack.dm_channel(rig.slack_users[email]))) == 1, email
    assert len([c for c in rig.slack.calls_to("chat.postMessage") if c.status == 429]) == 1


# ----------------------------------------------------------------------------------- the organisation moves


async def test_a_movers_item_leaves_one_digest_and_joins_another_in_place(rig: Rig) -> None:
    campaign_id = await launched(rig)
    stack = rig.stack
    dina, xena = rig.digest(campaign_id, "dina@example.com"), rig.digest(campaign_id, "xena@example.com")
    assert "*eli@example.com*" in all_text(dina) and "*eli@example.com*" not in all_text(xena)
    server = stack.scim_server
    assert server is not None
    server.set_manager("eli@example.com", "xena@example.com")  # eli's manager, and reviewer, is xena now
    await synced(stack, rig.task_queue)
    moved = rig.digest(campaign_id, "dina@example.com")
    assert "*eli@example.com*" not in all_text(moved) and "*fay@example.com*" in all_text(moved)
    gained = rig.digest(campaign_id, "xena@example.com")
    assert "*eli@example.com*" in all_text(gained) and "*amir@example.com*" in all_text(gained)
    assert (moved["ts"], gained["ts"]) == (dina["ts"], xena["ts"])
    assert rig.posts_to("dina@example.com") == rig.posts_to("xena@example.com") == 1


# ----------------------------------------------------------------------------------- a long digest


async def test_thirty_items_show_24_rows_with_buttons_and_a_link_for_the_rest(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}", ledger_key=b"k" * 32, anchor_path=None)
    store.migrate()
    slack = SlackStandIn(bot_token=BOT)
    slack.start()
    channel = SlackChannel(build_slack_client(BOT, slack.api_url))
    try:
        reviewer = Person(id="u-rita", email="rita@example.com")
        store.replace_directory([reviewer])
        user = slack.add_user(reviewer.email, "Rita")
        now = datetime.now(UTC)
        spec = SPEC.replace('reminders = ["2d"]\n', "")
        store.create_campaign(
            CampaignRecord(
                id="cmp-long",
                name="Analytics access review",
                owner="margaret@example.com",
                spec_toml=spec,
                spec_sha256=spec_hash(spec),
                status=CampaignStatus.OPEN,
                launched_at=now,
                workflow_id="campaign-cmp-long",
                updated_at=now,
            )
        )
        store.update_campaign("cmp-long", now, stage_open=True, stage_closes_at=now + timedelta(days=7))
        usage = Usage(window_start=now - timedelta(days=90), read_at=now)
        rita = Reviewer(kind="person", id="u-rita", name="rita@example.com")
        rows = []
        for n in range(30):
            subject = Subject(kind=SubjectKind.PERSON, id=f"u-{n:02}", name=f"p{n:02}@example.com")
            access = ItemAccess(
                via=AccessVia.GROUP, group="analytics", sources=(Source.HOOP,), connections=("pg-prod-ro",)
            )
            item = CampaignItem.of(subject, access, usage, timedelta(days=90))
            rows.append((item, Assignment(stage=0, reviewer=rita, via="manager")))
        store.add_items("cmp-long", rows)
        links = ReviewLinks(LINK_SECRET, "https://grantflow.example", timedelta(days=30))
        digests = SlackDigests(store, channel, links)
        posted = await digests.publish("cmp-long", 0, reviewer.ref)
        assert posted is not None
        [message] = slack.messages(slack.dm_channel(user))
        assert len(message["blocks"]) == 50 and block_kit_errors(message["blocks"]) == []
        assert item_rows(message) == 24
        assert "Shown: 24 · and 6 more on the web page." in message["blocks"][0]["text"]["text"]
        shown = buttons(message)
        assert shown["grantflow_open"]["url"].startswith("https://grantflow.example/campaigns/review/")
        assert shown["grantflow_open"]["text"]["text"] == "Open the web page (6 more)"
        assert len(parse_digest_value(shown[CAMPAIGN_REVOKE_ALL_ACTION]["value"]).item_ids) == 24
        # Published again (a retry, another group's notice): the same message, not a second one.
        assert await digests.publish("cmp-long", 0, reviewer.ref) == posted
        assert len(slack.messages(slack.dm_channel(user))) == 1
        assert len(slack.calls_to("chat.postMessage")) == 1
    finally:
        await channel.aclose()
        slack.stop()
        store.close()


# ----------------------------------------------------------------------------------- without Slack


async def test_without_slack_one_refresh_says_so_and_the_stage_asks_for_no_more(scim_stack: Stack) -> None:
    stack = scim_stack  # the stack's own worker: no Slack configured
    service = await synced(stack, stack.task_queue)
    record = await service.launch(SPEC, stack.actor("margaret@example.com"))
    try:
        await until_open(stack, record.id)
        judy = stack.actor("judy@example.com", channel="web")
        bea, cyrus = (item_of(stack, record.id, f"{n}@example.com") for n in ("bea", "cyrus"))
        first = await service.decide(record.id, [DecisionRequest(item_id=bea.id, verdict="keep")], judy)
        assert first.recorded == [bea.id]
        await until_async(lambda: seen(stack, record.id, 1), "the first batch seen, digests off")
        second = await service.decide(record.id, [DecisionRequest(item_id=cyrus.id, verdict="revoke")], judy)
        assert second.recorded == [cyrus.id]
        state = await until_async(lambda: seen(stack, record.id, 2), "the second batch seen")
        assert state.digests_due == []
        await stack.env.sleep(timedelta(seconds=6))
        history = await handle(stack, record.id).fetch_history()
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert scheduled.count("campaign_refresh_digests") == 1
    finally:
        await handle(stack, record.id).terminate("the test is over")


async def seen(stack: Stack, campaign_id: str, batches: int) -> CampaignState | None:
    """The campaign's state once it counted ``batches`` decisions and knows there are no digests."""
    state = await handle(stack, campaign_id).query(CampaignWorkflow.state)
    return state if state.decisions_recorded == batches and state.digests_off else None


async def until_async(check: Callable[[], Any], what: str) -> Any:
    for _ in range(400):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ----------------------------------------------------------------------------------- reasons


def newest_view(rig: Rig, user_id: str) -> dict[str, Any] | None:
    opened = rig.slack.views(user_id)
    return opened[-1] if opened else None


async def launched_with_reasons(rig: Rig) -> str:
    """SPEC, with a reason required to revoke."""
    spec = SPEC.replace('reminders = ["2d"]\n', 'reminders = ["2d"]\nreasons_required = ["revoke"]\n')
    assert spec != SPEC
    record = await rig.campaigns.launch(spec, rig.stack.actor("margaret@example.com"))
    rig.launched.append(record.id)
    await until_open(rig.stack, record.id)
    return record.id


async def test_a_verdict_that_needs_a_reason_asks_for_it_in_a_form_and_records_it(rig: Rig) -> None:
    """``reasons_required = ["revoke"]``: Keep stays one click; Revoke… opens a form, decides nothing until
    it is submitted, refuses an empty reason in the form itself, and records the reason typed; the bulk
    form decides only what is still pending when it is submitted."""
    campaign_id = await launched_with_reasons(rig)
    stack, judy_id = rig.stack, rig.slack_users["judy@example.com"]
    judy = rig.digest(campaign_id, "judy@example.com")
    assert block_kit_errors(judy["blocks"]) == []
    assert "A reason is required to revoke: Slack asks for it when you click." in all_text(judy)
    shown = buttons(judy)
    assert set(shown) >= {CAMPAIGN_KEEP_ACTION, CAMPAIGN_KEEP_ALL_ACTION, REVOKE_REASON, REVOKE_ALL_REASON}
    assert CAMPAIGN_REVOKE_ACTION not in shown and CAMPAIGN_REVOKE_ALL_ACTION not in shown
    assert shown[REVOKE_REASON]["text"]["text"] == "Revoke…"
    bea, cyrus, dina = (item_of(stack, campaign_id, f"{n}@example.com") for n in ("bea", "cyrus", "dina"))

    # Revoke… on bea's row: a form opens in Slack, nothing is decided yet.
    answer = await rig.click_row("judy@example.com", judy, "bea@example.com", REVOKE_REASON)
    assert answer.status_code == 200, answer.text
    form = await until(lambda: newest_view(rig, judy_id), "the reason form")
    assert form["callback_id"] == CAMPAIGN_REASON_VIEW
    assert "Revoke the access of *bea@example.com*" in form["blocks"][0]["text"]["text"]
    assert item_of(stack, campaign_id, "bea@example.com").verdict is None

    # An empty reason keeps the form open with the error under the field; nothing is recorded.
    empty = await asyncio.to_thread(
        rig.driver.submit_view, judy_id, view_id=form["id"], values={CAMPAIGN_REASON_BLOCK: {"reason": "  "}}
    )
    assert empty.status_code == 200
    assert empty.json() == {
        "response_action": "errors",
        "errors": {CAMPAIGN_REASON_BLOCK: "Say why: it is kept as evidence"},
    }
    assert item_of(stack, campaign_id, "bea@example.com").verdict is None

    # With a reason: recorded as judy's revoke, with the reason, and she is told.
    before = len(rig.said_to("judy@example.com"))
    typed = {CAMPAIGN_REASON_BLOCK: {"reason": "left the analytics team in October"}}
    submitted = await asyncio.to_thread(rig.driver.submit_view, judy_id, view_id=form["id"], values=typed)
    assert submitted.status_code == 200 and not submitted.content
    assert (await rig.told_new("judy@example.com", before)).startswith("Recorded: revoke for 1 item.")
    decision = stack.store.decisions(campaign_id, item_id=bea.id)[-1][1]
    assert decision.verdict == "revoke" and decision.reason == "left the analytics team in October"
    assert decision.actor is not None and decision.actor.person.email == "judy@example.com"

    # Keep needs no reason: one click. Then "Revoke all shown…" asks once for all that is still pending.
    await rig.click_row("judy@example.com", judy, "cyrus@example.com", CAMPAIGN_KEEP_ACTION)
    await rig.told("judy@example.com", "Recorded: keep for 1 item.")
    assert item_of(stack, campaign_id, "cyrus@example.com").verdict == "keep"
    bulk = await asyncio.to_thread(
        rig.driver.click_button, judy_id, judy["channel"], judy["ts"], REVOKE_ALL_REASON
    )
    assert bulk.status_code == 200
    bulk_form = await until(
        lambda: next((v for v in rig.slack.views(judy_id) if v["id"] != form["id"]), None), "the bulk form"
    )
    assert "Revoke the access of *dina@example.com*" in bulk_form["blocks"][0]["text"]["text"]
    typed = {CAMPAIGN_REASON_BLOCK: {"reason": "no longer on the analytics rota"}}
    await asyncio.to_thread(rig.driver.submit_view, judy_id, view_id=bulk_form["id"], values=typed)

    def revokes_told() -> int | None:  # the form's answers come by chat.postEphemeral, in order
        told = [t for t in rig.said_to("judy@example.com") if t.startswith("Recorded: revoke for 1 item.")]
        return len(told) if len(told) == 2 else None

    await until(revokes_told, "judy told of the second revoke")
    assert item_of(stack, campaign_id, "cyrus@example.com").verdict == "keep"  # decided meanwhile: kept
    assert item_of(stack, campaign_id, "dina@example.com").verdict == "revoke"
    assert (
        stack.store.decisions(campaign_id, item_id=dina.id)[-1][1].reason == "no longer on the analytics rota"
    )
    assert cyrus.id not in {d.item_id for _, d in stack.store.decisions(campaign_id) if d.verdict == "revoke"}
    assert rig.posts_to("judy@example.com") == 1  # forms and answers, never a second digest


async def test_a_forged_reason_form_decides_nothing(rig: Rig) -> None:
    """The form's metadata comes back from Slack under its signature: metadata grantflow did not write is
    refused in the form, and a tampered submission is refused before any handler runs."""
    campaign_id = await launched_with_reasons(rig)
    stack, judy_id = rig.stack, rig.slack_users["judy@example.com"]
    judy = rig.digest(campaign_id, "judy@example.com")
    bea = item_of(stack, campaign_id, "bea@example.com")
    await rig.click_row("judy@example.com", judy, "bea@example.com", REVOKE_REASON)
    form = await until(lambda: newest_view(rig, judy_id), "the reason form")
    typed = {CAMPAIGN_REASON_BLOCK: {"reason": "because"}}
    garbage = await asyncio.to_thread(
        rig.driver.submit_view, judy_id, view_id=form["id"], values=typed, private_metadata="{not json"
    )
    assert garbage.json()["errors"] == {CAMPAIGN_REASON_BLOCK: "this form does not carry a campaign decision"}
    tampered = await asyncio.to_thread(
        rig.driver.submit_view, judy_id, view_id=form["id"], values=typed, tampered=True
    )
    assert tampered.status_code == 401
    assert item_of(stack, campaign_id, "bea@example.com").verdict is None
    assert stack.store.decisions(campaign_id, item_id=bea.id) == []
