"""Campaigns end to end on the time-skipping server: the snapshot from hoop and SCIM, reviewers told,
decisions checked and recorded, reminders about pending items only, defaults at the deadline, revocations
applied in hoop and the identity provider with the sessions they enabled killed — and the owner's cancel,
extend and apply, a second stage, a dry run, and continue-as-new."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle

from domain.campaign_state import CampaignStatus, ItemOutcome
from domain.directory_sync import SyncInput, SyncReport
from domain.identity import Actor
from store.campaigns import StoredItem
from tests.stack import Stack
from web.campaign_service import CampaignService, DecisionRequest
from web.service import BadInput, Refused
from workflows.campaign import CampaignResult, CampaignWorkflow
from workflows.identity_sync import IdentitySyncWorkflow

ANALYTICS = """\
name = "Analytics access review"
owner = "margaret@example.com"
duration = "14d"
default_decision = "revoke"
reasons_required = ["keep"]
fallback_reviewer = "margaret@example.com"
reminders = ["2d"]

[scope]
groups = ["analytics"]
include_admins = false

[[stages]]
reviewers = "manager"
"""


async def synced(stack: Stack) -> CampaignService:
    report: SyncReport = await stack.env.client.execute_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=True),
        id=f"sync-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )
    assert report.applied
    return CampaignService(stack.env.client, stack.store, stack.task_queue)


async def until_open(stack: Stack, campaign_id: str, stage: int = 0) -> None:
    """Until ``stage`` is open and its reviewers were told (real time: only activities run meanwhile)."""
    for _ in range(600):
        state = await handle(stack, campaign_id).query(CampaignWorkflow.state)
        if state.stage == stage and state.stage_opened and state.notice_cursor is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign {campaign_id} never opened stage {stage + 1}: {state}")


def handle(stack: Stack, campaign_id: str) -> WorkflowHandle[CampaignWorkflow, CampaignResult]:
    return stack.env.client.get_workflow_handle_for(CampaignWorkflow.run, f"campaign-{campaign_id}")


async def finished(
    stack: Stack, campaign_id: str, *, after: timedelta = timedelta(days=15)
) -> CampaignResult:
    """Let Temporal's clock run past the deadline (the service started the workflow, so waiting on this
    handle does not skip time by itself), then wait for the result."""
    await stack.env.sleep(after)
    return await handle(stack, campaign_id).result()


def item_of(stack: Stack, campaign_id: str, email: str) -> StoredItem:
    person = stack.store.find_person_by_email(email)
    assert person is not None
    items = stack.store.items(campaign_id, subject_id=person.id)
    assert len(items) == 1, items
    return items[0]


def hoop_groups(stack: Stack, email: str) -> list[str]:
    return list(stack.hoop.user(email)["groups"])


def idp_members(stack: Stack, group: str) -> set[str]:
    server = stack.scim_server
    assert server is not None
    emails = {server.user_id(p.email): p.email for p in stack.organisation.people}
    found = next(g for g in server.groups() if g.display_name == group)
    return {emails[m.value] for m in found.members or [] if m.value in emails}


async def test_a_campaign_from_snapshot_to_revocations_read_back(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)

    # The snapshot: every analytics member, from hoop and the IdP, each assigned to their manager.
    items = stack.store.items(record.id)
    assert {i.subject.name for i in items} == {
        f"{n}@example.com" for n in ("judy", "amir", "bea", "cyrus", "dina", "eli", "fay")
    }
    assert all({s.value for s in i.access.sources} == {"hoop", "scim"} for i in items)
    bea = item_of(stack, record.id, "bea@example.com")
    assert bea.assignment.reviewer is not None and bea.assignment.reviewer.name == "judy@example.com"
    assert bea.access.connections == ("pg-prod-ro", "warehouse-ro")
    assert bea.recommendation is not None and bea.recommendation.verdict == "revoke"  # never used
    stored = stack.store.campaign(record.id)
    assert stored is not None and stored.population_hash and stored.item_count == 7
    # Reviewers were told once, with their signed link; nobody else.
    notices = [m for m in stack.notifier.messages if m.event == "campaign_notice"]
    assert {m.recipient.email for m in notices} == {
        "judy@example.com",  # bea, cyrus, dina
        "dan@example.com",  # judy
        "xena@example.com",  # amir
        "dina@example.com",  # eli, fay
    }
    judy_notice = next(m for m in notices if m.recipient.email == "judy@example.com")
    assert judy_notice.link is not None and "/campaigns/review/" in judy_notice.link
    assert "3 items" in judy_notice.subject

    # bea is using warehouse-ro right now: revoking analytics must end that session.
    session = await stack.connect("bea@example.com", "warehouse-ro")
    judy = stack.actor("judy@example.com", channel="web")
    cyrus = item_of(stack, record.id, "cyrus@example.com")
    dina = item_of(stack, record.id, "dina@example.com")
    result = await service.decide(
        record.id,
        [
            DecisionRequest(item_id=bea.id, verdict="revoke"),
            DecisionRequest(item_id=cyrus.id, verdict="keep", reason="runs the weekly revenue report"),
            DecisionRequest(item_id=dina.id, verdict="keep"),  # no reason: this spec requires one to keep
            DecisionRequest(
                item_id=item_of(stack, record.id, "judy@example.com").id, verdict="keep", reason="x"
            ),
        ],
        judy,
    )
    assert sorted(result.recorded) == sorted([bea.id, cyrus.id])
    assert result.refused[dina.id] == "a reason is required to keep access in this campaign"
    assert result.refused[item_of(stack, record.id, "judy@example.com").id].startswith(
        "judy@example.com cannot review their own access"
    )
    assert len(stack.store.refusals(record.id)) == 2
    keep_dina = DecisionRequest(item_id=dina.id, verdict="keep", reason="owns the warehouse models")
    assert (await service.decide(record.id, [keep_dina], judy)).recorded == [dina.id]

    outcome = await finished(stack, record.id)  # the reminder, the deadline, the revocations
    assert outcome.status is CampaignStatus.CLOSED
    assert outcome.outcomes == {"revoked": 5, "kept": 2}
    # Reminders went only to reviewers with pending items (judy had decided all of hers), naming them.
    reminders = {m.recipient.email: m for m in stack.notifier.messages if m.event == "campaign_reminder"}
    assert set(reminders) == {"xena@example.com", "dina@example.com", "dan@example.com"}
    assert "2 items still" in reminders["dina@example.com"].subject  # eli and fay
    # Revoked where the membership lives: hoop and the IdP, read back; the session bea had open is gone.
    for name in ("judy", "amir", "bea", "eli", "fay"):
        assert "analytics" not in hoop_groups(stack, f"{name}@example.com")
    assert idp_members(stack, "analytics") == {"cyrus@example.com", "dina@example.com"}
    assert "analytics" in hoop_groups(stack, "cyrus@example.com")
    assert stack.hoop.session(session)["status"] == "done"
    revoked_bea = item_of(stack, record.id, "bea@example.com")
    assert revoked_bea.outcome is ItemOutcome.REVOKED and revoked_bea.revocation is not None
    assert revoked_bea.revocation.systems == ("scim", "hoop")
    assert session in revoked_bea.revocation.sessions_killed
    defaulted = [d for _, d in stack.store.decisions(record.id) if d.default]
    assert len(defaulted) == 4 and all(d.verdict == "revoke" and d.actor is None for d in defaulted)
    kinds = [e.kind for e in stack.store.ledger_entries(subject=record.id)]
    for kind in (
        "campaign.launched",
        "campaign.snapshot",
        "campaign.stage_opened",
        "campaign.decided",
        "campaign.decision_refused",
        "campaign.stage_closed",
        "campaign.item_revoked",
        "campaign.closed",
    ):
        assert kind in kinds, kind
    assert kinds.count("campaign.item_revoked") == 5
    # After the close nothing can be decided any more.
    late = await service.decide(record.id, [DecisionRequest(item_id=cyrus.id, verdict="revoke")], judy)
    assert late.recorded == [] and "CLOSED" in late.refused[cyrus.id]


TWO_STAGES = """\
name = "Database owners review"
owner = "margaret@example.com"
duration = "10d"
default_decision = "keep"
auto_apply = false
fallback_reviewer = "margaret@example.com"

[scope]
groups = ["db-owners"]
include_admins = false

[[stages]]
reviewers = "manager"
duration = "4d"

[[stages]]
reviewers = "group"
group = "security"
"""


async def test_two_stages_an_extension_and_revocations_applied_on_the_owners_word(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(TWO_STAGES, margaret)
    await until_open(stack, record.id)
    ken = stack.actor("ken@example.com")
    bob, carol, dan = (item_of(stack, record.id, f"{n}@example.com") for n in ("bob", "carol", "dan"))
    with pytest.raises(Refused, match="only its owner"):
        await service.extend(record.id, ken, timedelta(days=1))
    moved = await service.extend(record.id, margaret, timedelta(days=1))
    assert "stage 1 now closes at" in moved
    decided = await service.decide(
        record.id,
        [
            DecisionRequest(item_id=bob.id, verdict="keep"),
            DecisionRequest(item_id=carol.id, verdict="revoke"),
        ],
        ken,
    )
    assert len(decided.recorded) == 2
    # Stage 2 opens after stage 1's (extended) deadline: bob and dan move on to the security group.
    await stack.env.sleep(timedelta(days=5, hours=1))
    await until_open(stack, record.id, stage=1)
    stage_two = {i.id: i for i in stack.store.items(record.id, stage=1)}
    assert set(stage_two) == {bob.id, dan.id}
    assert all(i.assignment.reviewer and i.assignment.reviewer.name == "security" for i in stage_two.values())
    assert item_of(stack, record.id, "carol@example.com").outcome is ItemOutcome.REVOKE  # ended in stage 1
    trent = stack.actor("trent@example.com")  # a member of security
    stale = await service.decide(
        record.id, [DecisionRequest(item_id=bob.id, verdict="revoke")], trent, stage=0
    )
    assert "made for stage 1, which has closed: the item is in stage 2 now" in stale.refused[bob.id]
    assert item_of(stack, record.id, "bob@example.com").verdict is None  # stage 1's keep is not stage 2's
    assert (
        await service.decide(record.id, [DecisionRequest(item_id=bob.id, verdict="revoke")], trent)
    ).recorded
    outsider = await service.decide(record.id, [DecisionRequest(item_id=dan.id, verdict="revoke")], ken)
    assert (
        outsider.refused[dan.id] == "this item is reviewed by members of security; ken@example.com is not one"
    )
    # Auto-apply is off: after the deadline the campaign waits for its owner.
    await stack.env.sleep(timedelta(days=6))
    for _ in range(200):
        state = await handle(stack, record.id).query(CampaignWorkflow.state)
        if state.phase.value == "await_apply":
            break
        await asyncio.sleep(0.05)
    assert state.phase.value == "await_apply"
    assert "db-owners" in hoop_groups(stack, "carol@example.com")  # nothing applied yet
    with pytest.raises(Refused, match="only its owner"):
        await service.apply(record.id, ken)
    await service.apply(record.id, margaret)
    outcome = await finished(stack, record.id, after=timedelta(minutes=1))
    assert outcome.outcomes == {
        "revoked": 2,
        "kept": 1,
    }  # carol (stage 1), bob (stage 2); dan kept by default
    assert "db-owners" not in hoop_groups(stack, "carol@example.com")
    assert "db-owners" not in hoop_groups(stack, "bob@example.com")
    assert "db-owners" in hoop_groups(stack, "dan@example.com")
    kinds = [e.kind for e in stack.store.ledger_entries(subject=record.id)]
    assert (
        "campaign.extended" in kinds
        and "campaign.extend_refused" in kinds
        and "campaign.apply_refused" in kinds
    )


async def test_a_dry_run_changes_nothing_and_a_cancelled_campaign_revokes_nothing(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    dry = await service.launch(ANALYTICS, margaret, dry_run=True)
    result = await finished(stack, dry.id, after=timedelta(seconds=1))
    assert result.status is CampaignStatus.DRY_RUN
    assert len(stack.store.items(dry.id)) == 7
    assert not stack.notifier.messages
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)
    with pytest.raises(Refused, match="only its owner"):
        await service.cancel(record.id, stack.actor("judy@example.com"), "no")
    admin = Actor(person=stack.ref("ken@example.com"), channel="cli", admin=stack.ref("grace@example.com"))
    await service.cancel(record.id, admin, "wrong scope")
    outcome = await finished(stack, record.id, after=timedelta(seconds=1))
    assert outcome.status is CampaignStatus.CANCELLED
    assert "analytics" in hoop_groups(stack, "bea@example.com")
    closed = stack.store.campaign(record.id)
    assert closed is not None and closed.status is CampaignStatus.CANCELLED
    with pytest.raises(Refused, match="already CANCELLED"):
        await service.cancel(record.id, margaret)


async def test_bad_specs_are_refused_before_anything_starts(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    bad = ANALYTICS.replace('"revoke"', '"maybe"', 1)
    with pytest.raises(BadInput, match=r"q\.toml: line 4: default_decision"):
        await service.launch(bad, stack.actor("margaret@example.com"), source="q.toml")
    assert stack.store.list_campaigns() == []


async def test_a_long_campaign_continues_as_new_and_still_finishes(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    record = await service.launch(
        ANALYTICS.replace('reminders = ["2d"]', 'reminders = ["10d", "8d", "6d", "4d", "2d", "1d"]'),
        stack.actor("margaret@example.com"),
        continue_as_new_after=60,
    )
    outcome = await finished(stack, record.id)
    assert outcome.status is CampaignStatus.CLOSED
    history = await handle(stack, record.id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id, "the last run should continue an earlier one"
    assert len(history.events) < 200
    assert sum(outcome.outcomes.values()) == 7


async def test_leavers_and_movers_reach_open_campaigns(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    record = await service.launch(ANALYTICS, stack.actor("margaret@example.com"))
    await until_open(stack, record.id)
    server = stack.scim_server
    assert server is not None
    # judy leaves: her own item closes as revoked by the leaver flow; the three she reviewed go on to the
    # next reviewer — their manager is gone, so the fallback.
    judy_items = {i.id for i in stack.store.items(record.id, reviewer_id=stack.ref("judy@example.com").id)}
    assert len(judy_items) == 3
    judy_own = item_of(stack, record.id, "judy@example.com")
    server.deactivate("judy@example.com")
    # eli moves: his manager is xena now, who reviews his item instead of dina.
    server.set_manager("eli@example.com", "xena@example.com")
    await synced(stack)
    closed = stack.store.item(record.id, judy_own.id)
    assert closed is not None and closed.outcome is ItemOutcome.REVOKED
    assert closed.revocation is not None and closed.revocation.systems == ("leaver flow",)
    for item_id in judy_items:
        moved = stack.store.item(record.id, item_id)
        assert moved is not None and moved.assignment.reviewer is not None
        assert (moved.assignment.reviewer.name, moved.assignment.via) == ("margaret@example.com", "fallback")
        assert any("inactive" in note for note in moved.assignment.notes)
    eli = item_of(stack, record.id, "eli@example.com")
    assert eli.assignment.reviewer is not None and eli.assignment.reviewer.name == "xena@example.com"
    entries = stack.store.ledger_entries(subject=record.id)
    assert sum(e.kind == "campaign.item_rerouted" for e in entries) == 4
    assert sum(e.kind == "campaign.item_closed_leaver" for e in entries) == 1
    told = [m for m in stack.notifier.messages if m.event == "campaign_notice"]
    assert any(m.recipient.email == "margaret@example.com" and "3 items" in m.subject for m in told)
    assert any(m.recipient.email == "xena@example.com" and "2 items" in m.subject for m in told)
    # A second sync with nothing new changes nothing.
    await synced(stack)
    assert len(stack.store.ledger_entries(subject=record.id)) == len(entries)
    # Ended here, so that no timer of this campaign fires for a worker that is gone (the module shares
    # one time-skipping server: a pending activity nobody runs would stop its clock for the next test).
    await service.cancel(record.id, stack.actor("margaret@example.com"), "test over")
    assert (await finished(stack, record.id, after=timedelta(seconds=1))).status is CampaignStatus.CANCELLED


MACHINES = """\
name = "Machine identities"
owner = "margaret@example.com"
duration = "7d"
default_decision = "revoke"
fallback_reviewer = "margaret@example.com"

[scope]
identities = ["api_key", "ai_agent"]
include_admins = false

[[stages]]
reviewers = "identity_owner"

[owners]
identities = { ci-deploy = "linus@example.com" }
"""


async def test_api_keys_and_ai_agents_are_reviewed_by_their_owners_and_lose_their_groups(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    service = await synced(stack)
    stack.hoop.add_identity_key(
        "api_keys", "reporter", ["analytics", "finance"], created_by="xena@example.com"
    )
    record = await service.launch(MACHINES, stack.actor("margaret@example.com"))
    await until_open(stack, record.id)
    items = stack.store.items(record.id)
    owners = {
        (i.subject.name, i.access.group): i.assignment.reviewer.name for i in items if i.assignment.reviewer
    }
    assert owners == {
        ("ci-deploy", "platform"): "linus@example.com",  # the configured owner
        ("sql-helper", "analytics"): "dina@example.com",  # its creator
        ("reporter", "analytics"): "xena@example.com",
        ("reporter", "finance"): "xena@example.com",
    }  # and never grantflow's own key, nor a person
    keep = next(i for i in items if i.subject.name == "reporter" and i.access.group == "finance")
    xena = stack.actor("xena@example.com")
    decided = await service.decide(
        record.id, [DecisionRequest(item_id=keep.id, verdict="keep", reason="the finance export")], xena
    )
    assert decided.recorded == [keep.id]
    outcome = await finished(stack, record.id, after=timedelta(days=8))
    assert outcome.outcomes == {"revoked": 3, "kept": 1}
    assert stack.hoop.identity_key("api_keys", "reporter")["groups"] == ["finance"]  # one group removed
    assert stack.hoop.identity_key("api_keys", "ci-deploy")["status"] == "revoked"  # nothing left: revoked
    assert stack.hoop.identity_key("ai_agents", "sql-helper")["status"] == "revoked"
    assert stack.hoop.identity_key("api_keys", "grantflow")["status"] == "active"
    revoked = item_of_subject(stack, record.id, "sql-helper")
    assert revoked.revocation is not None and "revoked (no group left)" in revoked.revocation.read_back


def item_of_subject(stack: Stack, campaign_id: str, name: str) -> StoredItem:
    return next(i for i in stack.store.items(campaign_id) if i.subject.name == name)


async def test_the_owner_ends_the_stage_early_and_the_default_decides_the_rest_at_once(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)
    judy = stack.actor("judy@example.com", channel="web")
    cyrus = item_of(stack, record.id, "cyrus@example.com")
    keep = DecisionRequest(item_id=cyrus.id, verdict="keep", reason="runs the weekly revenue report")
    assert (await service.decide(record.id, [keep], judy)).recorded == [cyrus.id]
    with pytest.raises(Refused, match="only its owner"):
        await service.end_stage(record.id, judy, "done here")
    # Eleven days in: the reminder (two days before the deadline) is not due yet, and ending the stage
    # must not make it look due (the deadline becomes now): nobody is reminded about a closing stage.
    await stack.env.sleep(timedelta(days=11))
    ended = await service.end_stage(record.id, margaret, "every reviewer has answered")
    assert "stage 1 of campaign" in ended and "closing now" in ended
    # Three days before the deadline: nothing waits for it any more.
    outcome = await finished(stack, record.id, after=timedelta(minutes=1))
    assert outcome.status is CampaignStatus.CLOSED
    assert outcome.outcomes == {"revoked": 6, "kept": 1}
    assert "analytics" in hoop_groups(stack, "cyrus@example.com")
    assert "analytics" not in hoop_groups(stack, "bea@example.com")
    ended_early = [e for e in stack.store.ledger_entries(subject=record.id) if e.kind.endswith("ended_early")]
    assert len(ended_early) == 1
    assert ended_early[0].actor.startswith("margaret@example.com")
    assert ended_early[0].data["reason"] == "every reviewer has answered"
    assert not [m for m in stack.notifier.messages if m.event == "campaign_reminder"]
    with pytest.raises(Refused, match="already CLOSED"):
        await service.end_stage(record.id, margaret)
