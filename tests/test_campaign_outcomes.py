"""Campaigns reaching reviewers where they are, on the time-skipping server: notice and reminder emails list
the reviewer's items (a reminder only the pending ones) with their signed link; when the campaign ends each
reviewer and the owner get one summary of what was kept, revoked, decided by the default and not revoked
(with its remediation record) — not again when the telling activity is retried — and a cancelled campaign
says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from activities.campaign_base import MAX_ITEMS_EMAILED
from activities.campaign_outcomes import MAX_ITEMS_LISTED, Tally, outcome_category
from domain.campaign_report import Revocation
from domain.campaign_state import CampaignStatus, ItemOutcome
from domain.campaigns import AccessVia, Assignment, CampaignItem, ItemAccess, Source, Subject, SubjectKind
from integrations.notify import Message
from sandbox.slack import block_kit_errors
from store.campaigns import StoredItem
from templates import template_environment
from tests.builders import buttons
from tests.stack import Stack
from tests.test_campaign_slack_digest import Rig, all_text, rig  # noqa: F401  (fixture)
from tests.test_campaign_workflow import ANALYTICS, finished, handle, item_of, synced, until_open
from web.campaign_service import DecisionRequest


def outcome_messages(stack: Stack) -> dict[str, list[Message]]:
    told: dict[str, list[Message]] = {}
    for message in stack.notifier.messages:
        if message.event == "campaign_outcome":
            told.setdefault(message.recipient.email, []).append(message)
    return told


def counts_line(message: Message) -> dict[str, int]:
    """The summary's counts, as the email states them."""
    found: dict[str, int] = {}
    for label, key in (
        ("Kept:", "kept"),
        ("Revoked:", "revoked"),
        ("Decided by the default:", "defaulted"),
        ("Revocation failed:", "failed"),
    ):
        line = next(line for line in message.text.splitlines() if line.strip().startswith(label))
        found[key] = int(line.split(":", 1)[1].split()[0])
    return found


async def test_reminders_name_pending_items_and_everyone_gets_one_summary_despite_a_retry(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)

    # The notice lists each reviewer's items, with their signed link, in one email.
    judy_notice = stack.notifier.to("judy@example.com", "campaign_notice")
    assert len(judy_notice) == 1
    for name in ("bea", "cyrus", "dina"):
        assert f"{name}@example.com: member of analytics" in judy_notice[0].text
    assert "Recommendation: revoke" in judy_notice[0].text  # bea never used it
    assert judy_notice[0].link is not None and judy_notice[0].link in judy_notice[0].text

    bea = item_of(stack, record.id, "bea@example.com")
    cyrus = item_of(stack, record.id, "cyrus@example.com")
    eli = item_of(stack, record.id, "eli@example.com")
    amir = item_of(stack, record.id, "amir@example.com")
    judy = stack.actor("judy@example.com", channel="web")
    decided = await service.decide(
        record.id,
        [
            DecisionRequest(item_id=bea.id, verdict="revoke"),
            DecisionRequest(item_id=cyrus.id, verdict="keep", reason="runs the revenue report"),
        ],
        judy,
    )
    assert sorted(decided.recorded) == sorted([bea.id, cyrus.id])
    dina_reviewer = stack.actor("dina@example.com", channel="web")
    keep_eli = DecisionRequest(item_id=eli.id, verdict="keep", reason="on call for the warehouse")
    assert (await service.decide(record.id, [keep_eli], dina_reviewer)).recorded == [eli.id]
    xena = stack.actor("xena@example.com", channel="web")
    revoke_amir = DecisionRequest(item_id=amir.id, verdict="revoke")
    assert (await service.decide(record.id, [revoke_amir], xena)).recorded == [amir.id]

    # bea's revocation fails in hoop (a permission refusal, which no retry changes): remediation.
    bea_user = stack.hoop.user("bea@example.com")
    stack.hoop.fail_next(f"/users/{bea_user['id']}", 403, method="PUT")
    # The first attempt at recording that everyone was told fails after the messages went out: the
    # activity is retried and must send nothing twice.
    ledger_attempts: list[str] = []
    append = stack.store.append_ledger

    def failing_once(**entry: Any) -> Any:
        if entry["kind"] == "campaign.outcomes_told":
            ledger_attempts.append(entry["kind"])
            if len(ledger_attempts) == 1:
                raise RuntimeError("the database went away")
        return append(**entry)

    stack.store.append_ledger = failing_once  # type: ignore[method-assign]
    try:
        outcome = await finished(stack, record.id)
    finally:
        stack.store.append_ledger = append  # type: ignore[method-assign]
    assert outcome.status is CampaignStatus.CLOSED

    # Reminders: only to reviewers with pending items, naming only those.
    reminders = {m.recipient.email: m for m in stack.notifier.messages if m.event == "campaign_reminder"}
    assert set(reminders) == {"judy@example.com", "dina@example.com", "dan@example.com"}
    assert "1 item still" in reminders["judy@example.com"].subject
    assert "dina@example.com: member of analytics" in reminders["judy@example.com"].text
    assert "bea@example.com" not in reminders["judy@example.com"].text
    assert "cyrus@example.com" not in reminders["judy@example.com"].text
    assert "fay@example.com" in reminders["dina@example.com"].text
    assert "eli@example.com" not in reminders["dina@example.com"].text

    failed = item_of(stack, record.id, "bea@example.com")
    assert failed.outcome is ItemOutcome.FAILED and failed.revocation is not None
    remediation = failed.revocation.remediation
    assert remediation

    # One summary each, despite the retried activity.
    assert len(ledger_attempts) == 2
    told = outcome_messages(stack)
    assert set(told) == {
        "judy@example.com",
        "dan@example.com",
        "xena@example.com",
        "dina@example.com",
        "margaret@example.com",
    }
    assert all(len(messages) == 1 for messages in told.values()), told
    summaries = {email: messages[0] for email, messages in told.items()}
    assert counts_line(summaries["judy@example.com"]) == {
        "kept": 1,
        "revoked": 0,
        "defaulted": 1,
        "failed": 1,
    }
    assert counts_line(summaries["xena@example.com"]) == {
        "kept": 0,
        "revoked": 1,
        "defaulted": 0,
        "failed": 0,
    }
    assert counts_line(summaries["dina@example.com"]) == {
        "kept": 1,
        "revoked": 0,
        "defaulted": 1,
        "failed": 0,
    }
    assert counts_line(summaries["dan@example.com"]) == {"kept": 0, "revoked": 0, "defaulted": 1, "failed": 0}
    owner = summaries["margaret@example.com"]
    assert counts_line(owner) == {"kept": 2, "revoked": 1, "defaulted": 3, "failed": 1}
    # The failed revocation is shown with its remediation, to its reviewer and the owner; failed first.
    for message in (summaries["judy@example.com"], owner):
        assert (
            "bea@example.com, member of analytics (hoop+scim) → pg-prod-ro, warehouse-ro: "
            f"revocation failed; remediation {remediation}"
        ) in message.text
    assert owner.text.index("bea@example.com") < owner.text.index("cyrus@example.com")
    assert "cyrus@example.com" not in summaries["dina@example.com"].text  # reviewers see their own items
    assert "Access review closed" in owner.subject

    entries = [e for e in stack.store.ledger_entries(subject=record.id) if e.kind == "campaign.outcomes_told"]
    assert len(entries) == 1
    assert entries[0].data["items"] == {"kept": 2, "revoked": 1, "defaulted": 3, "failed": 1, "unchanged": 0}
    assert entries[0].data["reviewers_told"] == 4 and entries[0].data["owner_told"] is True


async def test_a_cancelled_campaign_tells_everyone_nothing_was_revoked(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)
    await service.cancel(record.id, margaret, "wrong scope")
    outcome = await finished(stack, record.id, after=timedelta(seconds=1))
    assert outcome.status is CampaignStatus.CANCELLED
    told = outcome_messages(stack)
    assert set(told) == {
        "judy@example.com",
        "dan@example.com",
        "xena@example.com",
        "dina@example.com",
        "margaret@example.com",
    }
    for messages in told.values():
        assert len(messages) == 1
        assert "Access review cancelled" in messages[0].subject
        assert "Nothing was revoked" in messages[0].text and "wrong scope" in messages[0].text
    assert "all 7 items of the campaign keep" in told["margaret@example.com"][0].text
    assert "the 3 items you review keep" in told["judy@example.com"][0].text
    entries = [e for e in stack.store.ledger_entries(subject=record.id) if e.kind == "campaign.outcomes_told"]
    assert len(entries) == 1 and entries[0].data["items"]["unchanged"] == 7


def test_each_outcome_reads_as_its_reviewer_sees_it() -> None:
    assert outcome_category(ItemOutcome.FAILED, True) == "failed"  # a failed default is still failed
    assert outcome_category(ItemOutcome.REVOKED, True) == "defaulted"
    assert outcome_category(ItemOutcome.KEPT, False) == "kept"
    assert outcome_category(ItemOutcome.REVOKED, False) == "revoked"
    assert outcome_category(ItemOutcome.REVOKE, False) == "unchanged"  # decided, never applied: cancelled


ONE_STAGE = """\
name = "Analytics access review"
owner = "margaret@example.com"
duration = "14d"
default_decision = "recommendation"
fallback_reviewer = "margaret@example.com"

[scope]
groups = ["analytics"]
include_admins = false

[[stages]]
reviewers = "manager"
"""


async def closed_with_decisions(running: Rig, campaign_id: str) -> None:
    """judy revokes bea's access and keeps cyrus's (dina's is left to the default); the campaign ends."""
    stack = running.stack
    bea = item_of(stack, campaign_id, "bea@example.com")
    cyrus = item_of(stack, campaign_id, "cyrus@example.com")
    judy = stack.actor("judy@example.com", channel="web")
    decisions = [
        DecisionRequest(item_id=bea.id, verdict="revoke"),
        DecisionRequest(item_id=cyrus.id, verdict="keep"),
    ]
    assert len((await running.campaigns.decide(campaign_id, decisions, judy)).recorded) == 2
    # The owner ends the stage (as at its deadline) instead of the test skipping 15 days: a long skip of the
    # shared time-skipping server also drives every earlier test's leftover timers, and its RPC can time out
    # on a busy machine.
    await running.campaigns.end_stage(campaign_id, stack.actor("margaret@example.com"), "everyone answered")
    assert (await handle(stack, campaign_id).result()).status is CampaignStatus.CLOSED


async def test_in_slack_the_last_digest_shows_the_outcome_in_place(rig: Rig) -> None:  # noqa: F811
    stack = rig.stack
    record = await rig.campaigns.launch(ONE_STAGE, stack.actor("margaret@example.com"))
    try:
        await until_open(stack, record.id)
        await closed_with_decisions(rig, record.id)
    except BaseException:  # a campaign's timers must not hold up the next test's clock
        await handle(stack, record.id).terminate("the test failed")
        raise

    # Nothing new was posted: judy's one digest now shows how her items ended, without buttons.
    assert rig.posts_to("judy@example.com") == 1
    digest = rig.digest(record.id, "judy@example.com")
    assert block_kit_errors(digest["blocks"]) == []
    head = digest["blocks"][0]["text"]["text"]
    assert "· closed" in head
    assert "Your 3 items: 1 kept, 1 revoked, 1 decided by the default at the deadline, 0 whose" in head
    text = all_text(digest)
    assert "Kept* · cyrus@example.com" in text and "Revoked* · bea@example.com" in text
    assert set(buttons(digest)) == {"grantflow_open"}
    # The email side: one summary each, the owner's about the whole campaign.
    summaries = outcome_messages(stack)
    assert len(summaries["judy@example.com"]) == 1 and len(summaries["margaret@example.com"]) == 1
    assert "The campaign's 7 items:" in summaries["margaret@example.com"][0].text


def stored(n: int, outcome: ItemOutcome, revocation: Revocation | None = None) -> StoredItem:
    subject = Subject(kind=SubjectKind.PERSON, id=f"p{n:02d}", name=f"user{n:02d}@example.com")
    access = ItemAccess(via=AccessVia.GROUP, group="analytics", sources=(Source.HOOP,), connections=("pg",))
    item = CampaignItem.of(subject, access)
    return StoredItem.model_validate(
        {
            **item.model_dump(),
            "stage": 0,
            "assignment": Assignment(stage=0, reviewer=None, via="fallback").model_dump(),
            "outcome": outcome,
            "revocation": revocation,
        }
    )


def test_long_lists_are_capped_with_the_rest_on_the_web_page() -> None:
    text = template_environment(autoescape=False)
    items = [stored(n, ItemOutcome.OPEN) for n in range(MAX_ITEMS_EMAILED)]
    reminder = text.get_template("email/campaign_reminder.txt.j2").render(
        campaign_name="Q3",
        stage=1,
        stages=1,
        default_sentence="undecided access is revoked",
        pending=MAX_ITEMS_EMAILED + 5,
        items=items,
        left_out=5,
        link="https://grantflow.example/campaigns/review/t",
    )
    subject, _, body = reminder.partition("\n")
    assert subject == f"Reminder: Q3 — {MAX_ITEMS_EMAILED + 5} items still to review"
    assert body.count("\n- user") == MAX_ITEMS_EMAILED
    assert "...and 5 more on the web page." in body
    assert "https://grantflow.example/campaigns/review/t" in body

    # The outcome: the failed item is named first even when it comes last, the rest counted.
    tally = Tally()
    for n in range(MAX_ITEMS_LISTED + 9):
        tally.add(stored(n, ItemOutcome.KEPT), defaulted=False)
    failure = Revocation(status="remediation", systems=(), error="refused", remediation="ACC-7")
    tally.add(stored(99, ItemOutcome.FAILED, failure), defaulted=False)
    assert tally.counts["kept"] == MAX_ITEMS_LISTED + 9 and tally.counts["failed"] == 1
    assert len(tally.listed) == MAX_ITEMS_LISTED
    assert tally.listed[0].subject == "user99@example.com" and tally.listed[0].detail == "ACC-7"
