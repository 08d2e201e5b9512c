"""Event-triggered campaigns: a spec with ``[trigger] on = "mover"`` opens, for each person the identity sync
sees change manager (or department), one small campaign over that person's access, reviewed by their new
manager — once per change, however often the sync runs or is retried; a start that fails is recorded, the
sync goes on, and the next sync starts it.

The directory is a seeded scim2-server; Temporal is the time-skipping server. Syncs after the first are
waited for by polling (waiting on their result would let the server jump over the campaigns' timers); every
campaign a test opens is run to its end."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment

import store.schema as schema
from activities.campaign_triggers import CampaignTriggerActivities, TriggerInput
from domain.campaign_spec import CampaignSpecError, load_campaign_spec, parse_campaign_spec
from domain.campaign_state import CampaignStatus
from domain.campaign_triggers import FiringStatus, launch_spec_toml, moves_of, triggered_campaign_id
from domain.directory_sync import ManagerChange, SyncInput, SyncReport, diff_directory
from domain.identity import Actor, Person, PersonRef
from grantflow.cli import main
from tests.stack import Stack
from tests.test_campaign_edge import Edge, edge  # noqa: F401  (the REST + CLI fixture)
from tests.test_campaign_workflow import finished, handle, synced, until_open
from web.campaign_triggers import CampaignTriggerService
from web.service import BadInput
from workflows.identity_sync import IdentitySyncWorkflow

MOVERS = """\
name = "Mover review"
owner = "margaret@example.com"
duration = "7d"
default_decision = "keep"
fallback_reviewer = "margaret@example.com"

[scope]
groups = ["analytics"]
include_admins = false

[trigger]
on = "mover"
changes = ["manager"]
"""
UNTRIGGERED = MOVERS.split("[trigger]")[0] + '[[stages]]\nreviewers = "manager"\n'
"""The same campaign as a one-off: no [trigger] table."""

# ------------------------------------------------------------------------------------------- the spec


def test_the_example_mover_review_is_a_valid_triggered_spec() -> None:
    spec = load_campaign_spec(Path(__file__).parent.parent / "examples" / "mover_review.toml")
    assert spec.trigger is not None and spec.trigger.changes == ["manager", "department"]
    assert spec.schedule is None and [s.reviewers.value for s in spec.stages] == ["manager"]


def test_a_triggered_spec_gets_one_stage_reviewed_by_the_new_manager() -> None:
    spec = parse_campaign_spec(MOVERS)
    assert spec.trigger is not None and spec.trigger.changes == ["manager"]
    assert [s.reviewers.value for s in spec.stages] == ["manager"]
    both = parse_campaign_spec(MOVERS.replace('changes = ["manager"]\n', ""))
    assert both.trigger is not None and both.trigger.changes == ["manager", "department"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: s + "\n[schedule]\nstart = 2027-01-04T09:00:00\n",
            r"m\.toml: line 11: trigger: a spec is either scheduled or triggered",
        ),
        (
            lambda s: s.replace('duration = "7d"', "deadline = 2027-01-15T17:00:00Z"),
            r"m\.toml: line 3: deadline: a triggered campaign runs for a duration",
        ),
        (
            lambda s: s + '\n[[stages]]\nreviewers = "resource_owner"\n',
            r"m\.toml: line 15: stages: a triggered campaign has one stage, reviewed by the mover's new",
        ),
        (
            lambda s: s + '\n[[stages]]\nreviewers = "manager"\n[[stages]]\nreviewers = "manager"\n',
            r"m\.toml: line 15: stages: a triggered campaign has one stage",
        ),
        (
            lambda s: s.replace('changes = ["manager"]', 'changes = ["title"]'),
            r"m\.toml: line 13: trigger\.changes\.0: Input should be 'manager' or 'department'",
        ),
        (
            lambda s: s.replace('changes = ["manager"]', "changes = []"),
            r"m\.toml: line 13: trigger\.changes: List should have at least 1 item",
        ),
        (
            lambda s: s.replace('on = "mover"', 'on = "joiner"'),
            r"m\.toml: line 12: trigger\.on: Input should be",
        ),
        (
            lambda s: s.replace('groups = ["analytics"]', 'groups = ["analytics"]\nidentities = ["api_key"]'),
            r"m\.toml: line 9: scope\.identities: a triggered campaign reviews the mover's own access",
        ),
        (
            lambda s: s.replace(
                "include_admins = false", 'include_admins = false\npeople = { ids = ["u-1"] }'
            ),
            r"m\.toml: line 10: scope\.people\.ids: a triggered campaign reviews the person its event",
        ),
    ],
)
def test_bad_triggered_specs_are_refused_with_their_line(change: Any, expected: str) -> None:
    with pytest.raises(CampaignSpecError, match=expected):
        parse_campaign_spec(change(MOVERS), "m.toml")


def test_the_launched_spec_is_the_movers_alone_and_the_same_for_the_same_change() -> None:
    bea = PersonRef(id="u-bea", email="bea@example.com")
    move = moves_of([ManagerChange(person=bea, old_manager_id="u-judy", new_manager_id="u-xena")], [])[0]
    spec = parse_campaign_spec(MOVERS)
    assert spec.trigger is not None
    change = move.change(spec.trigger)
    assert change == {"manager": {"from": "u-judy", "to": "u-xena"}}
    text = launch_spec_toml(MOVERS, move, change)
    launched = parse_campaign_spec(text)
    assert launched.trigger is None and launched.schedule is None
    assert launched.scope.people.ids == ["u-bea"] and launched.scope.groups == ["analytics"]
    assert [s.reviewers.value for s in launched.stages] == ["manager"]
    assert launched.name == "Mover review: bea@example.com"
    assert text == launch_spec_toml(MOVERS, move, change)
    same = triggered_campaign_id(spec.name, bea.id, change)
    assert same == triggered_campaign_id(spec.name, bea.id, dict(change))
    assert same != triggered_campaign_id(spec.name, bea.id, {"manager": {"from": "u-judy", "to": "u-ken"}})
    assert same != triggered_campaign_id(spec.name, "u-cyrus", change)


def test_a_department_change_is_a_mover_for_specs_that_listen_to_it() -> None:
    before = [Person(id="u-1", email="a@example.com", department="Sales", manager_id="u-9")]
    after = [Person(id="u-1", email="a@example.com", department="Finance", manager_id="u-9")]
    changes = diff_directory(before, after, {}, full=False)
    assert changes.movers == []  # the manager is the same: open campaigns re-route nothing
    assert [(d.old_department, d.new_department) for d in changes.department_changes] == [
        ("Sales", "Finance")
    ]
    assert [p.department for p in changes.upserts] == ["Finance"]  # and the store learns it
    (move,) = moves_of(changes.movers, changes.department_changes)
    managers_only = parse_campaign_spec(MOVERS).trigger
    both = parse_campaign_spec(MOVERS.replace('changes = ["manager"]', 'changes = ["department"]')).trigger
    assert managers_only is not None and both is not None
    assert not move.counts_for(managers_only)
    assert move.counts_for(both) and move.change(both) == {"department": {"from": "Sales", "to": "Finance"}}


# ------------------------------------------------------------------------------------------- the sync


async def synced_in_place(stack: Stack) -> SyncReport:
    """An identity sync, waited for by polling (real time): waiting on its result would let the
    time-skipping server jump over the triggered campaigns' timers while the sync runs."""
    sync = await stack.env.client.start_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=True),
        id=f"sync-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )
    for _ in range(600):
        if (await sync.describe()).status is WorkflowExecutionStatus.COMPLETED:
            report: SyncReport = await sync.result()
            return report
        await asyncio.sleep(0.05)
    raise AssertionError("the identity sync never completed")


def ledger(stack: Stack, kind: str) -> list[Any]:
    return [e for e in stack.store.ledger_entries() if e.kind == kind]


async def started(stack: Stack, campaign_id: str) -> None:
    for _ in range(600):
        record = stack.store.campaign(campaign_id)
        if record is not None and record.status is CampaignStatus.OPEN:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"triggered campaign {campaign_id} never opened")


async def test_a_manager_change_opens_one_campaign_for_the_mover_reviewed_by_the_new_manager(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    await synced(stack)
    triggers = CampaignTriggerService(stack.store)
    registered = await triggers.register(MOVERS, stack.actor("grace@example.com"), source="movers.toml")
    assert (registered.trigger_id, registered.updated, registered.changes) == (
        "campaign-trigger-mover-review",
        False,
        ["manager"],
    )
    assert (await triggers.register(MOVERS, stack.actor("grace@example.com"))).updated

    # dina moves from judy to xena; nobody else changes.
    server = stack.scim_server
    assert server is not None
    server.set_manager("dina@example.com", "xena@example.com")
    report = await synced_in_place(stack)
    dina, judy, xena = (stack.ref(f"{n}@example.com") for n in ("dina", "judy", "xena"))
    assert [m.person.id for m in report.movers] == [dina.id]
    (campaign_id,) = report.campaigns_triggered
    assert report.campaigns_not_started == {}
    await started(stack, campaign_id)
    await until_open(stack, campaign_id)

    # One small campaign: dina's analytics access, its one reviewer her new manager.
    record = stack.store.campaign(campaign_id)
    assert record is not None and record.name == "Mover review: dina@example.com"
    items = stack.store.items(campaign_id)
    assert items and {i.subject.id for i in items} == {dina.id}
    assert {i.access.group for i in items} == {"analytics"}
    assert {i.assignment.reviewer.id for i in items if i.assignment.reviewer is not None} == {xena.id}
    assert all(i.assignment.via == "manager" for i in items)
    assert [c.id for c in stack.store.list_campaigns()] == [campaign_id]  # nobody else's, nothing else
    assert stack.notifier.to("xena@example.com") and not stack.notifier.to("judy@example.com")
    (triggered,) = ledger(stack, "campaign.triggered")
    assert triggered.subject == campaign_id
    assert triggered.data["change"] == {"manager": {"from": judy.id, "to": xena.id}}
    assert (triggered.data["person"], triggered.data["trigger"]) == (dina.email, registered.trigger_id)

    # A second sync sees no change and starts nothing; a retry of the firing (same movers again, as a
    # retried sync would send) finds the campaign fired and started, and starts nothing either.
    again = await synced_in_place(stack)
    assert again.movers == [] and again.campaigns_triggered == []
    retried = await ActivityEnvironment().run(
        CampaignTriggerActivities(stack.store, stack.env.client).fire,
        TriggerInput(sync_id=report.sync_id, task_queue=stack.task_queue, movers=report.movers),
    )
    assert (retried.fired, retried.started, retried.failed) == ([campaign_id], [], {})
    first_run = (await handle(stack, campaign_id).describe()).run_id
    # A worker that started the workflow and died before recording it: the retry meets Temporal's
    # duplicate-id refusal, records the start, and there is still one run of one workflow.
    with stack.store.engine.begin() as conn:
        f = schema.campaign_trigger_firings
        conn.execute(update(f).where(f.c.campaign_id == campaign_id).values(status="pending"))
    lost = await ActivityEnvironment().run(
        CampaignTriggerActivities(stack.store, stack.env.client).fire,
        TriggerInput(sync_id=report.sync_id, task_queue=stack.task_queue),
    )
    assert (lost.started, lost.failed) == ([campaign_id], {})
    firing = stack.store.trigger_firing(campaign_id)
    assert firing is not None and firing.status is FiringStatus.STARTED
    assert len(ledger(stack, "campaign.triggered")) == 1
    assert [c.id for c in stack.store.list_campaigns()] == [campaign_id]
    after = await handle(stack, campaign_id).describe()
    assert (after.run_id, after.status) == (first_run, WorkflowExecutionStatus.RUNNING)

    outcome = await finished(stack, campaign_id, after=timedelta(days=8))
    assert outcome.status is CampaignStatus.CLOSED


class _TemporalDown:
    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Temporal could not be reached")


async def test_a_start_that_fails_is_recorded_and_the_next_sync_starts_it(scim_stack: Stack) -> None:
    stack = scim_stack
    await synced(stack)
    await CampaignTriggerService(stack.store).register(MOVERS, stack.actor("grace@example.com"))
    bea = stack.ref("bea@example.com")
    move = ManagerChange(person=bea, old_manager_id=stack.ref("judy@example.com").id, new_manager_id=None)
    failing = CampaignTriggerActivities(stack.store, _TemporalDown())  # type: ignore[arg-type]
    result = await ActivityEnvironment().run(
        failing.fire, TriggerInput(sync_id="sync-x", task_queue=stack.task_queue, movers=[move])
    )
    (campaign_id,) = result.fired
    assert result.failed == {campaign_id: "Temporal could not be reached"}  # reported, not raised
    firing = stack.store.trigger_firing(campaign_id)
    assert firing is not None and firing.status is FiringStatus.PENDING and firing.attempts == 1
    (failed,) = ledger(stack, "campaign.trigger_failed")
    assert failed.subject == campaign_id and failed.data["error"] == "Temporal could not be reached"

    # The next sync (no change of its own) starts it; the person has no manager now: the fallback reviews.
    report = await synced_in_place(stack)
    assert report.campaigns_triggered == [] and report.campaigns_not_started == {}
    await started(stack, campaign_id)
    await until_open(stack, campaign_id)
    firing = stack.store.trigger_firing(campaign_id)
    assert firing is not None and firing.status is FiringStatus.STARTED
    items = stack.store.items(campaign_id)
    assert items and {i.subject.id for i in items} == {bea.id}
    assert (await handle(stack, campaign_id).describe()).status is WorkflowExecutionStatus.RUNNING
    outcome = await finished(stack, campaign_id, after=timedelta(days=8))
    assert outcome.status is CampaignStatus.CLOSED


async def test_only_registered_specs_fire_and_only_for_the_changes_they_listen_to(scim_stack: Stack) -> None:
    stack = scim_stack
    await synced(stack)
    server = stack.scim_server
    assert server is not None
    server.set_manager("cyrus@example.com", "xena@example.com")
    report = await synced_in_place(stack)  # a mover, but no spec is registered
    assert len(report.movers) == 1 and report.campaigns_triggered == []
    department_only = MOVERS.replace('changes = ["manager"]', 'changes = ["department"]')
    await CampaignTriggerService(stack.store).register(department_only, stack.actor("grace@example.com"))
    server.set_manager("bea@example.com", "xena@example.com")
    report = await synced_in_place(stack)  # a manager change, but the spec listens to departments only
    assert len(report.movers) == 1 and report.campaigns_triggered == []
    assert stack.store.list_campaigns() == [] and not ledger(stack, "campaign.triggered")

    # A department change is what that spec listens to: fay (reporting to dina) moves to Finance.
    server.set_department("fay@example.com", "Finance")
    report = await synced_in_place(stack)
    fay = stack.ref("fay@example.com")
    assert report.movers == [] and [d.person.id for d in report.department_changes] == [fay.id]
    (campaign_id,) = report.campaigns_triggered
    await started(stack, campaign_id)
    await until_open(stack, campaign_id)
    items = stack.store.items(campaign_id)
    assert items and {i.subject.id for i in items} == {fay.id}
    dina = stack.ref("dina@example.com")
    assert {i.assignment.reviewer.id for i in items if i.assignment.reviewer is not None} == {dina.id}
    (triggered,) = ledger(stack, "campaign.triggered")
    assert triggered.data["change"] == {"department": {"from": "", "to": "Finance"}}
    assert stack.store.get_person(fay.id).department == "Finance"  # type: ignore[union-attr]
    outcome = await finished(stack, campaign_id, after=timedelta(days=8))
    assert outcome.status is CampaignStatus.CLOSED


async def test_registering_refuses_specs_without_a_trigger_and_lists_and_removes(scim_stack: Stack) -> None:
    stack = scim_stack
    triggers = CampaignTriggerService(stack.store)
    grace = Actor(person=PersonRef(id="u-grace", email="grace@example.com"), channel="cli")
    with pytest.raises(BadInput, match=r"x\.toml: has no \[trigger\] table"):
        await triggers.register(UNTRIGGERED, grace, source="x.toml")
    with pytest.raises(BadInput, match=r"x\.toml: line 3: deadline"):
        await triggers.register(
            MOVERS.replace('duration = "7d"', "deadline = 2027-01-15T17:00:00Z"), grace, source="x.toml"
        )
    registered = await triggers.register(MOVERS, grace)
    assert [t.trigger_id for t in (await triggers.triggers()).triggers] == [registered.trigger_id]
    await triggers.remove(registered.trigger_id, grace)
    assert (await triggers.triggers()).triggers == []
    kinds = [e.kind for e in stack.store.ledger_entries()]
    assert kinds == ["campaign.trigger_registered", "campaign.trigger_removed"]


def test_the_cli_checks_the_spec_before_sending_it(tmp_path: Any) -> None:
    spec = tmp_path / "movers.toml"
    spec.write_text(MOVERS.replace('on = "mover"', 'on = "joiner"'), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["campaign", "trigger", str(spec)], env={"GRANTFLOW_URL": "http://127.0.0.1:9"}
    )
    assert result.exit_code == 2, result.output
    assert "line 12: trigger.on" in result.output
    spec.write_text(UNTRIGGERED, encoding="utf-8")
    result = CliRunner().invoke(main, ["campaign", "trigger", str(spec)])
    assert result.exit_code == 2 and "has no [trigger] table" in result.output


async def test_rest_and_cli_register_list_and_remove_like_schedules(edge: Edge) -> None:  # noqa: F811
    bad = await edge.call(
        "margaret",
        "POST",
        "/campaigns/triggers",
        json={
            "spec": MOVERS.replace("[trigger]", "[schedule]\nstart = 2027-01-04T09:00:00\n\n[trigger]"),
            "source": "m.toml",
        },
    )
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith(
        "m.toml: line 14: trigger: a spec is either scheduled or triggered"
    )
    assert (await edge.call("judy", "POST", "/campaigns/triggers", json={"spec": MOVERS})).status_code == 403
    created = await edge.call("margaret", "POST", "/campaigns/triggers", json={"spec": MOVERS})
    assert created.status_code == 200, created.text
    assert (created.json()["trigger_id"], created.json()["updated"]) == (
        "campaign-trigger-mover-review",
        False,
    )
    listed = await edge.call("auditor", "GET", "/campaigns/triggers")  # not read as a campaign id
    assert listed.status_code == 200, listed.text
    assert [t["changes"] for t in listed.json()["triggers"]] == [["manager"]]
    assert (
        await edge.call("auditor", "DELETE", "/campaigns/triggers/campaign-trigger-mover-review")
    ).status_code == 403

    spec = edge.stack.tmp_path / "movers.toml"
    spec.write_text(MOVERS, encoding="utf-8")
    replaced = await edge.cli("trigger", str(spec))
    assert replaced.exit_code == 0, replaced.output
    assert replaced.output.startswith(
        "replaced campaign-trigger-mover-review: a campaign opens for each mover"
    )
    shown = await edge.cli("trigger", "--list", "--json")
    assert json.loads(shown.output)["triggers"][0]["name"] == "Mover review"
    gone = await edge.cli("trigger", "--remove", "campaign-trigger-mover-review")
    assert gone.exit_code == 0 and "removed campaign-trigger-mover-review" in gone.output
    missing = await edge.cli("trigger", "--remove", "campaign-trigger-mover-review")
    assert (
        missing.exit_code != 0
        and "there is no campaign trigger campaign-trigger-mover-review" in missing.output
    )
    assert edge.stack.store.campaign_triggers() == []
