"""Campaign items changing hands within a stage.

Escalation: at the spec's offset before the deadline, every reviewer who still has undecided items is
escalated to their manager *as the directory has it then* (a manager changed mid-campaign is the new one),
or to the owner when they have none; a reviewer with nothing pending is never escalated; the manager may
then decide those items beside the reviewer, both are told, and the ledger names reviewer, manager and items.

Delegation: a reviewer hands one item or all their undecided items to another active person, who then
decides them while the delegator no longer can; delegating to the subject, to an unknown or inactive
person, or to oneself is refused with the reason — through the service, the REST API, the CLI and the
review page. Temporal is the time-skipping server; each campaign is ended by its test."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from domain.campaign_decisions import refusal
from domain.campaign_spec import CampaignSpecError, parse_campaign_spec
from domain.campaign_state import CampaignStatus
from domain.campaigns import (
    AccessVia,
    Assignment,
    CampaignItem,
    ItemAccess,
    Reviewer,
    Source,
    Subject,
    SubjectKind,
)
from domain.directory_sync import SyncInput
from domain.identity import Actor, PersonRef
from integrations.slack.campaign_digest import CAMPAIGN_KEEP_ACTION, CAMPAIGN_REVOKE_ACTION, digest_value
from store.ledger_records import LedgerEntry
from tests.stack import Stack
from tests.test_campaign_edge import Edge, edge  # noqa: F401  (the REST + CLI fixture)
from tests.test_campaign_slack_digest import SPEC, Rig, all_text, launched, rig  # noqa: F401  (the Slack rig)
from tests.test_campaign_workflow import ANALYTICS, finished, handle, item_of, synced, until_open
from web.campaign_service import DecisionRequest
from web.service import BadInput, Refused
from workflows.campaign import CampaignWorkflow
from workflows.identity_sync import IdentitySyncWorkflow

ESCALATING = ANALYTICS.replace('reminders = ["2d"]', 'reminders = ["2d"]\nescalation = "3d"')
"""ANALYTICS (14 days, stage 1 reviewed by each member's manager) escalating 3 days before the deadline:
judy reviews bea, cyrus and dina; dan reviews judy; xena reviews amir; dina reviews eli and fay."""


# ----------------------------------------------------------------------------------------- the spec


def test_escalation_is_an_offset_before_each_stages_deadline_and_may_differ_per_stage() -> None:
    spec = parse_campaign_spec(
        ANALYTICS.replace('reminders = ["2d"]', 'escalation = "2d"')
        + '\n[[stages]]\nreviewers = "group"\ngroup = "security"\nescalation = "1d"\n'
    )
    assert spec.escalation_before(0) == timedelta(days=2)
    assert spec.escalation_before(1) == timedelta(days=1)  # the stage's own
    assert parse_campaign_spec(ANALYTICS).escalation_before(0) is None


def test_an_escalation_that_could_never_happen_is_refused_with_its_line() -> None:
    with pytest.raises(CampaignSpecError) as caught:
        parse_campaign_spec(ESCALATING.replace('escalation = "3d"', 'escalation = "14d"'), "q.toml")
    assert "stage 1's escalation 14d before its deadline falls before the stage opens (it lasts 14d)" in str(
        caught.value
    )
    with pytest.raises(CampaignSpecError, match="escalation"):
        parse_campaign_spec(ESCALATING.replace('escalation = "3d"', 'escalation = "soon"'))


def test_the_manager_an_item_was_escalated_to_may_decide_it_and_nobody_else_besides_its_reviewer() -> None:
    spec = parse_campaign_spec(ANALYTICS)
    stack_people = {n: Actor(person=_ref(n), channel="web") for n in ("judy", "dan", "ken")}
    item = _bea_item()
    by_judy = Assignment(stage=0, reviewer=Reviewer(kind="person", id="p-judy", name="judy@x"), via="manager")
    escalated = refusal(
        item, by_judy, stack_people["dan"], "revoke", "", spec, stage_open=True, escalated_to="p-dan"
    )
    assert escalated is None
    assert (
        refusal(
            item, by_judy, stack_people["judy"], "revoke", "", spec, stage_open=True, escalated_to="p-dan"
        )
        is None
    )
    other = refusal(
        item, by_judy, stack_people["ken"], "revoke", "", spec, stage_open=True, escalated_to="p-dan"
    )
    assert other == "this item is reviewed by judy@x, not by ken@x"
    group = Assignment(stage=0, reviewer=Reviewer(kind="group", id="security", name="security"), via="group")
    assert (
        refusal(item, group, stack_people["dan"], "revoke", "", spec, stage_open=True, escalated_to="p-dan")
        is None
    )


def _ref(name: str) -> PersonRef:
    return PersonRef(id=f"p-{name}", email=f"{name}@x")


def _bea_item() -> CampaignItem:
    return CampaignItem.of(
        Subject(kind=SubjectKind.PERSON, id="p-bea", name="bea@x"),
        ItemAccess(via=AccessVia.GROUP, group="analytics", sources=(Source.HOOP,), connections=("pg",)),
    )


# ----------------------------------------------------------------------------------------- escalation


def entries(stack: Stack, campaign_id: str, kind: str) -> list[LedgerEntry]:
    return [e for e in stack.store.ledger_entries(subject=campaign_id) if e.kind == kind]


async def until(check: Callable[[], Any], what: str) -> Any:
    """Real time (only activities run meanwhile: Temporal's clock is not skipped by queries)."""
    for _ in range(600):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what}")


async def synced_in_place(stack: Stack, task_queue: str | None = None) -> None:
    """An identity sync, waited for by polling (real time): waiting on its result would let the
    time-skipping server jump to the campaign's next timers while the sync runs."""
    sync = await stack.env.client.start_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=True),
        id=f"sync-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue or stack.task_queue,
    )
    for _ in range(600):
        if (await sync.describe()).status is WorkflowExecutionStatus.COMPLETED:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the identity sync never completed")


async def escalated(stack: Stack, campaign_id: str) -> None:
    for _ in range(600):
        if (await handle(stack, campaign_id).query(CampaignWorkflow.state)).escalated:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"campaign {campaign_id} never escalated")


async def test_pending_items_escalate_to_the_manager_of_the_moment_who_may_decide_them(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ESCALATING, margaret)
    await until_open(stack, record.id)
    judy = stack.actor("judy@example.com", channel="web")
    bea, cyrus, dina_item = (item_of(stack, record.id, f"{n}@example.com") for n in ("bea", "cyrus", "dina"))
    decided = await service.decide(
        record.id,
        [
            DecisionRequest(item_id=bea.id, verdict="revoke"),
            DecisionRequest(item_id=cyrus.id, verdict="keep", reason="weekly revenue report"),
            DecisionRequest(item_id=dina_item.id, verdict="keep", reason="warehouse models"),
        ],
        judy,
    )
    assert len(decided.recorded) == 3  # judy has nothing pending: she is never escalated
    # Mid-campaign the organisation changes: dina (reviewer of eli and fay) now reports to xena, not judy;
    # xena (reviewer of amir) has no manager any more.
    server = stack.scim_server
    assert server is not None
    server.set_manager("dina@example.com", "xena@example.com")
    server.set_manager("xena@example.com", None)
    before = await stack.env.get_current_time()
    await synced_in_place(stack)
    assert await stack.env.get_current_time() - before < timedelta(days=1)
    assert not entries(stack, record.id, "campaign.escalated")  # nothing before the escalation is due

    await stack.env.sleep(timedelta(days=11, hours=1))  # the escalation is 3 days before day 14
    await escalated(stack, record.id)

    by_reviewer = {e.data["reviewer"]: e for e in entries(stack, record.id, "campaign.escalated")}
    assert set(by_reviewer) == {"dan@example.com", "xena@example.com", "dina@example.com"}
    eli, fay = item_of(stack, record.id, "eli@example.com"), item_of(stack, record.id, "fay@example.com")
    to_new_manager = by_reviewer["dina@example.com"].data
    assert (to_new_manager["manager"], to_new_manager["via"]) == ("xena@example.com", "manager")
    assert sorted(to_new_manager["items"]) == sorted([eli.id, fay.id])  # judy, her manager at launch, is not
    assert by_reviewer["dan@example.com"].data["manager"] == "ken@example.com"
    no_manager = by_reviewer["xena@example.com"].data
    assert (no_manager["manager"], no_manager["via"]) == ("margaret@example.com", "owner")
    assert no_manager["why"] == "xena@example.com has no manager in the directory"
    assert no_manager["items"] == [item_of(stack, record.id, "amir@example.com").id]

    # Shown to both: the manager gets the items with their link, the reviewer a note naming the manager.
    to_xena = stack.notifier.to("xena@example.com", "campaign_escalation")
    assert len(to_xena) == 1 and "2 items dina@example.com has not reviewed" in to_xena[0].subject
    assert to_xena[0].link is not None and "/campaigns/review/" in to_xena[0].link
    assert not stack.notifier.to("judy@example.com", "campaign_escalation")
    note = stack.notifier.to("dina@example.com", "campaign_escalated")
    assert len(note) == 1 and "escalated to xena@example.com" in note[0].subject
    assert not stack.notifier.to("judy@example.com", "campaign_escalated")  # she had decided everything
    assert len(stack.notifier.to("margaret@example.com", "campaign_escalation")) == 1

    # The new manager decides one of the items; the old one cannot; the reviewer still can.
    xena = stack.actor("xena@example.com", channel="web")
    by_xena = await service.decide(record.id, [DecisionRequest(item_id=eli.id, verdict="revoke")], xena)
    assert by_xena.recorded == [eli.id], by_xena.refused
    by_old = await service.decide(record.id, [DecisionRequest(item_id=fay.id, verdict="revoke")], judy)
    assert by_old.refused[fay.id] == "this item is reviewed by dina@example.com, not by judy@example.com"
    dina = stack.actor("dina@example.com", channel="web")
    assert (
        await service.decide(record.id, [DecisionRequest(item_id=fay.id, verdict="revoke")], dina)
    ).recorded
    decided_entry = entries(stack, record.id, "campaign.decided")[-2]
    assert decided_entry.actor == "xena@example.com"
    assert decided_entry.data["decisions"][0] == {
        "item": eli.id,
        "stage": 1,
        "verdict": "revoke",
        "reason": "",
        "as": "escalation",
    }
    # The escalated items are on the manager's review page.
    mine = {i.id for i in await service.items_for_reviewer(record.id, stack.ref("xena@example.com").id)}
    assert {eli.id, fay.id} <= mine

    outcome = await finished(stack, record.id, after=timedelta(days=3))
    assert outcome.status is CampaignStatus.CLOSED
    assert len(entries(stack, record.id, "campaign.escalated")) == 3  # once per stage, never again


async def test_an_owner_who_ends_the_stage_early_escalates_nobody(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ESCALATING, margaret)
    await until_open(stack, record.id)
    await service.end_stage(record.id, margaret, "called off")
    outcome = await finished(stack, record.id, after=timedelta(minutes=1))
    assert outcome.status is CampaignStatus.CLOSED
    assert not entries(stack, record.id, "campaign.escalated")
    assert not [m for m in stack.notifier.messages if m.event.startswith("campaign_escalat")]


# ----------------------------------------------------------------------------------------- delegation


async def test_a_delegated_item_is_decided_by_its_delegate_and_no_longer_by_the_delegator(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)
    judy = stack.actor("judy@example.com", channel="web")
    bea, cyrus = item_of(stack, record.id, "bea@example.com"), item_of(stack, record.id, "cyrus@example.com")

    handed = await service.delegate(
        record.id, "Xena@Example.com", judy, item_ids=[bea.id], reason="I am on leave"
    )
    assert (handed.delegate, handed.delegated, handed.refused) == ("xena@example.com", [bea.id], {})
    moved = item_of(stack, record.id, "bea@example.com")
    assert moved.assignment.reviewer is not None and moved.assignment.reviewer.name == "xena@example.com"
    assert moved.assignment.via == "delegated"
    assert moved.assignment.notes[-1] == "delegated by judy@example.com to xena@example.com: I am on leave"
    by_judy = await service.decide(record.id, [DecisionRequest(item_id=bea.id, verdict="revoke")], judy)
    assert by_judy.refused[bea.id] == "this item is reviewed by xena@example.com, not by judy@example.com"
    xena = stack.actor("xena@example.com", channel="web")
    assert (
        await service.decide(record.id, [DecisionRequest(item_id=bea.id, verdict="revoke")], xena)
    ).recorded
    delegated = entries(stack, record.id, "campaign.delegated")
    assert len(delegated) == 1 and delegated[0].actor == "judy@example.com"
    assert {k: delegated[0].data[k] for k in ("from", "to", "items", "reason", "stage")} == {
        "from": "judy@example.com",
        "to": "xena@example.com",
        "items": [bea.id],
        "reason": "I am on leave",
        "stage": 1,
    }
    told = await until(
        lambda: stack.notifier.to("xena@example.com", "campaign_delegation"), "xena told of the delegation"
    )
    assert "judy@example.com delegated 1 item to you" in told[0].subject and told[0].link

    # Refused, with the reason, and recorded: the subject, an unknown person, someone inactive, oneself,
    # an item that is not theirs to hand over.
    with pytest.raises(
        Refused, match=r"cyrus@example\.com is the subject of this item .*nobody reviews their own"
    ):
        await service.delegate(record.id, "cyrus@example.com", judy, item_ids=[cyrus.id])
    with pytest.raises(BadInput, match=r"nobody@example\.com is not in the directory"):
        await service.delegate(record.id, "nobody@example.com", judy)
    server = stack.scim_server
    assert server is not None
    server.deactivate("zoe@example.com")
    await synced_in_place(stack)
    with pytest.raises(BadInput, match=r"zoe@example\.com is no longer active"):
        await service.delegate(record.id, "zoe@example.com", judy, item_ids=[cyrus.id])
    with pytest.raises(BadInput, match="cannot delegate items to themself"):
        await service.delegate(record.id, "judy@example.com", judy)
    with pytest.raises(Refused, match="only its reviewer can delegate it"):
        await service.delegate(record.id, "dan@example.com", judy, item_ids=[bea.id])  # xena's now
    assert item_of(stack, record.id, "cyrus@example.com").assignment.reviewer.name == "judy@example.com"  # type: ignore[union-attr]
    assert len(entries(stack, record.id, "campaign.delegation_refused")) == 5

    # All of a reviewer's undecided items at once: dina hands eli and fay to dan.
    dina = stack.actor("dina@example.com", channel="web")
    everything = await service.delegate(record.id, "dan@example.com", dina)
    eli, fay = item_of(stack, record.id, "eli@example.com"), item_of(stack, record.id, "fay@example.com")
    assert sorted(everything.delegated) == sorted([eli.id, fay.id])
    assert {i.id for i in stack.store.items(record.id, reviewer_id=stack.ref("dina@example.com").id)} == set()
    with pytest.raises(BadInput, match=r"dina@example\.com has no undecided items in stage 1"):
        await service.delegate(record.id, "dan@example.com", dina)

    await service.cancel(record.id, margaret, "test over")
    assert (await finished(stack, record.id, after=timedelta(seconds=1))).status is CampaignStatus.CANCELLED
    with pytest.raises(Refused, match="has no open review stage"):
        await service.delegate(record.id, "dan@example.com", judy)


# ----------------------------------------------------------------------------------------- the edges


async def test_rest_cli_and_review_page_delegate_and_refuse_with_a_reason(edge: Edge) -> None:  # noqa: F811
    stack = edge.stack
    launched = (await edge.call("margaret", "POST", "/campaigns", json={"spec": ANALYTICS})).json()
    campaign_id = launched["id"]
    await until_open(stack, campaign_id)
    bea, cyrus = (
        item_of(stack, campaign_id, "bea@example.com"),
        item_of(stack, campaign_id, "cyrus@example.com"),
    )

    to_subject = await edge.call(
        "judy",
        "POST",
        f"/campaigns/{campaign_id}/delegate",
        json={"to": "bea@example.com", "items": [bea.id]},
    )
    assert to_subject.status_code == 409
    assert "bea@example.com is the subject of this item" in to_subject.json()["detail"]
    unknown = await edge.call(
        "judy", "POST", f"/campaigns/{campaign_id}/delegate", json={"to": "who@nowhere"}
    )
    assert unknown.status_code == 422 and "who@nowhere is not in the directory" in unknown.json()["detail"]
    empty = await edge.call("judy", "POST", f"/campaigns/{campaign_id}/delegate", json={"to": ""})
    assert empty.status_code == 422
    auditor = await edge.call(
        "auditor", "POST", f"/campaigns/{campaign_id}/delegate", json={"to": "dan@example.com"}
    )
    assert auditor.status_code == 403
    handed = await edge.call(
        "judy",
        "POST",
        f"/campaigns/{campaign_id}/delegate",
        json={"to": "xena@example.com", "items": [bea.id]},
    )
    assert handed.status_code == 200 and handed.json() == {
        "delegate": "xena@example.com",
        "delegated": [bea.id],
        "refused": {},
    }

    refused = await edge.cli(
        "delegate", campaign_id, "--to", "cyrus@example.com", "--item", cyrus.id, who="judy"
    )
    assert refused.exit_code != 0 and "cyrus@example.com is the subject of this item" in refused.stderr
    by_cli = await edge.cli(
        "delegate", campaign_id, "--to", "xena@example.com", "--item", cyrus.id, "--json", who="judy"
    )
    assert by_cli.exit_code == 0, by_cli.stderr
    assert json.loads(by_cli.stdout)["delegated"] == [cyrus.id]
    assert item_of(stack, campaign_id, "cyrus@example.com").assignment.reviewer.name == "xena@example.com"  # type: ignore[union-attr]

    # judy's review page: her last undecided item (dina's) goes to dan from the form.
    notice = next(m for m in stack.notifier.to("judy@example.com", "campaign_notice"))
    assert notice.link is not None
    path = notice.link.removeprefix("http://127.0.0.1:9")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as browser:
        page = await browser.get(path)
        assert "Delegate my undecided items" in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        to_self = await browser.post(
            f"{path}/delegate", data={"csrf": csrf.group(1), "to": "judy@example.com"}
        )
        assert to_self.status_code == 422 and "cannot delegate items to themself" in to_self.text
        forged = await browser.post(f"{path}/delegate", data={"csrf": "0" * 64, "to": "dan@example.com"})
        assert forged.status_code == 403
        done = await browser.post(
            f"{path}/delegate", data={"csrf": csrf.group(1), "to": "dan@example.com", "reason": "leave"}
        )
        assert done.status_code == 200 and "1 item handed to dan@example.com" in done.text
        assert "Delegate my undecided items" not in done.text  # nothing left of hers to hand over
    dina_item = item_of(stack, campaign_id, "dina@example.com")
    assert (
        dina_item.assignment.reviewer is not None and dina_item.assignment.reviewer.name == "dan@example.com"
    )
    kinds = [e.kind for e in stack.store.ledger_entries(subject=campaign_id)]
    assert kinds.count("campaign.delegated") == 3 and kinds.count("campaign.delegation_refused") >= 4

    await edge.call("margaret", "POST", f"/campaigns/{campaign_id}/cancel", json={"reason": "test over"})
    assert (await finished(stack, campaign_id, after=timedelta(seconds=1))).status is CampaignStatus.CANCELLED


# ----------------------------------------------------------------------------------------- Slack digests


def showing(
    slack_rig: Rig, campaign_id: str, email: str, text: str, *, present: bool = True
) -> dict[str, Any] | None:
    """The reviewer's digest once ``text`` is in it (or, ``present=False``, gone from it)."""
    message = slack_rig.digest(campaign_id, email)
    return message if (text in all_text(message)) == present else None


async def test_delegated_items_leave_the_delegators_digest_and_join_the_delegates(rig: Rig) -> None:  # noqa: F811
    campaign_id = await launched(rig)
    stack = rig.stack
    judy_before = rig.digest(campaign_id, "judy@example.com")
    assert "*bea@example.com*" in all_text(judy_before)
    assert not rig.digests(campaign_id, "ken@example.com")  # ken reviews nothing in stage 1
    bea = item_of(stack, campaign_id, "bea@example.com")
    judy = stack.actor("judy@example.com", channel="web")
    await rig.campaigns.delegate(campaign_id, "ken@example.com", judy, item_ids=[bea.id])

    ken_digest = await until(lambda: rig.digests(campaign_id, "ken@example.com"), "ken's digest posted")
    assert "*bea@example.com*" in all_text(ken_digest[0]) and "*cyrus@example.com*" not in all_text(
        ken_digest[0]
    )
    judy_after = await until(
        lambda: showing(rig, campaign_id, "judy@example.com", "*bea@example.com*", present=False),
        "bea's item gone from judy's digest",
    )
    assert judy_after["ts"] == judy_before["ts"] and "*cyrus@example.com*" in all_text(judy_after)

    # The delegate decides with the button of their own digest; the delegator's old button is refused.
    before = len(rig.said_to("ken@example.com"))
    answer = await rig.click_row("ken@example.com", ken_digest[0], "bea@example.com", CAMPAIGN_REVOKE_ACTION)
    assert answer.status_code == 200, answer.text
    assert "Recorded: revoke for 1 item" in await rig.told_new("ken@example.com", before)
    before = len(rig.said_to("judy@example.com"))
    # judy's digest no longer shows bea's row: her click carries the button value it had before
    stale = await rig.click_row(
        "judy@example.com",
        judy_after,
        "cyrus@example.com",
        CAMPAIGN_KEEP_ACTION,
        digest_value(campaign_id, 0, [bea.id]),
    )
    assert stale.status_code == 200
    assert "reviewed by ken@example.com, not by judy@example.com" in await rig.told_new(
        "judy@example.com", before
    )
    assert item_of(stack, campaign_id, "bea@example.com").verdict == "revoke"


async def test_an_escalation_adds_the_pending_items_to_the_managers_digest(rig: Rig) -> None:  # noqa: F811
    record = await rig.campaigns.launch(
        SPEC.replace('reminders = ["2d"]', 'reminders = ["2d"]\nescalation = "1d"'),
        rig.stack.actor("margaret@example.com"),
    )
    rig.launched.append(record.id)
    campaign_id = record.id
    stack = rig.stack
    await until_open(stack, campaign_id)
    dan_before = rig.digest(campaign_id, "dan@example.com")  # dan reviews judy's item
    assert "*bea@example.com*" not in all_text(dan_before)
    await stack.env.sleep(timedelta(days=6, hours=1))  # stage 1 lasts 7 days; escalation 1 day before
    await escalated(stack, campaign_id)
    # judy decided nothing: her three items reach dan, her manager, in the digest he already has.
    dan_after = await until(
        lambda: showing(rig, campaign_id, "dan@example.com", "*bea@example.com*"),
        "judy's items in dan's digest",
    )
    assert dan_after["ts"] == dan_before["ts"]
    assert all(f"*{n}@example.com*" in all_text(dan_after) for n in ("judy", "bea", "cyrus", "dina"))
    # Each row says why it is there: dan's rows of judy's items, and judy's own digest, name the escalation.
    assert all_text(dan_after).count("Escalated to you: judy@example.com has not decided it.") == 3
    judy_after = await until(
        lambda: showing(rig, campaign_id, "judy@example.com", "Escalated to dan@example.com"),
        "the escalation in judy's digest",
    )
    assert all_text(judy_after).count("Escalated to dan@example.com, who may decide it too.") == 3
    before = len(rig.said_to("dan@example.com"))
    answer = await rig.click_row("dan@example.com", dan_after, "cyrus@example.com", CAMPAIGN_KEEP_ACTION)
    assert answer.status_code == 200, answer.text
    assert "Recorded: keep for 1 item" in await rig.told_new("dan@example.com", before)
    decided = [e for e in stack.store.ledger_entries(subject=campaign_id) if e.kind == "campaign.decided"][-1]
    assert decided.actor == "dan@example.com" and decided.data["decisions"][0]["as"] == "escalation"
