"""Reviews decided in hoop's own UI, end to end over real sockets: what every channel shows.

A review a person leaves PENDING in hoop becomes a request (grantflow's discovery, ``poll_now``) that is
presented in Slack, Jira and by email like any other. When a reviewer then decides it directly in hoop's own
UI (``PUT /reviews/{id}`` with their own hoop session), the next poll signals the request, which mirrors the
decision (``workflows/hoop_decided.py``, ``HoopDecided._read_decision``): approved there → ACTIVE, tracked to
hoop's ``revoke_at`` and ended on time (the review revoked, the session opened under it killed); rejected
there → DENIED. Both carry an ``outcome_note`` saying where it was decided. Every place a person saw the
request must then show how it ended: each approver's Slack DM (no buttons left), the requester's DMs and
emails, the Jira ticket. And a review grantflow approves itself is APPROVED in hoop while the request is
ACTIVE, and REVOKED once it ended.

One rig (``tests/channel_stack.py``) serves the whole module, and each flow runs once (a module-scoped
fixture) for the tests that look at it, each with a requester of its own (one open request per person and
connection). The dev server runs in real time: the grants last ``GRANT``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from domain.requests import EndReason, RequestStatus, RequestView
from integrations.slack import APPROVE_ACTION, DENY_ACTION
from sandbox.seed import GRANTFLOW_GROUP
from tests.channel_stack import (
    ACC,
    DENIED,
    DONE,
    NO_SLACK,
    Asked,
    ChannelStack,
    buttons,
    message_id,
    start_channel_stack,
)
from tests.stack import start_stack
from workflows.hoop_decided import APPROVED_IN_HOOP, REJECTED_IN_HOOP
from workflows.hoop_reviews import HoopReviewDiscoveryWorkflow, PollSummary

pytestmark = pytest.mark.e2e

BOB, CAROL, DAN = "bob@example.com", "carol@example.com", "dan@example.com"
APPROVERS = (BOB, CAROL, DAN)  # db-owners: eligible for pg-prod admin (two needed); dan has no Slack
SLACK_APPROVERS = tuple(a for a in APPROVERS if a != NO_SLACK)
CONNECTION = "pg-prod-admin"
GRANT = timedelta(seconds=10)
ON_TIME = timedelta(seconds=3)  # the end may come this much after the expiry (a workflow task, a revoke)
# The requester connects this long into the grant: hoop ends such a session by itself at connect time + the
# grant's length, so it outlives the grant by as much, and only grantflow's kill ends it on time.
CONNECT_AFTER = timedelta(seconds=4)
# Requesters no other flow of this module uses (engineers outside db-owners, in Slack and in hoop).
APPROVED_THERE = "gus@example.com"
REJECTED_THERE = "hana@example.com"
APPROVED_HERE = "ida@example.com"
REJECTION = "use the migration pipeline instead"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ChannelStack]:
    """Every channel on, for the whole module (each flow below runs once, for several tests)."""
    with pytest.MonkeyPatch.context() as env:  # settings from the test, never the developer's environment
        for name in list(os.environ):
            if name.startswith("GRANTFLOW_"):
                env.delenv(name)
        tmp: Path = tmp_path_factory.mktemp("hoop-channels")
        async with start_stack(dev_env, tmp, time_skipping=False) as stack:
            async with start_channel_stack(stack) as running:
                yield running


# ---------------------------------------------------------------------------------------------------- helpers


def text_of(message: dict[str, Any]) -> str:
    return message["text"] + json.dumps(message.get("blocks"), ensure_ascii=False)


def hoop_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def review_of(rig: ChannelStack, request_id: str) -> str:
    view = rig.stack.store.get_request(request_id)
    assert view is not None and view.origin is not None, request_id
    return view.origin.review_id


def data_of(rig: ChannelStack, request_id: str, kind: str) -> dict[str, Any]:
    [entry] = rig.ledger(request_id, kind)
    return dict(entry.data)


async def asked_everywhere(rig: ChannelStack, request_id: str) -> None:
    """Wait until every approver was asked: a Slack DM with buttons (dan has no Slack), an email each, the
    ticket. A decision taken before that would leave nobody asked (there is nothing to decide then)."""
    for approver in SLACK_APPROVERS:
        await rig.asked_dm(request_id, approver)
    await rig.ticket(request_id)
    asks = [f"<{request_id}.ask.request.{rig.ref(a).id}@" for a in APPROVERS]

    def emailed() -> bool:
        sent = [message_id(m) for m in rig.emails(request_id)]
        return all(any(s.startswith(ask) for s in sent) for ask in asks)

    await rig.until(emailed, f"the emails asking {', '.join(APPROVERS)} about {request_id}")


async def decide_in_hoop_ui(rig: ChannelStack, review_id: str, as_email: str, **body: Any) -> dict[str, Any]:
    """A reviewer decides in hoop's own web UI, with their own hoop session (not grantflow's API key)."""
    hoop = rig.stack.hoop
    token = await asyncio.to_thread(hoop.issue_user_token, as_email)
    async with httpx.AsyncClient(base_url=hoop.api_url, timeout=10) as web:
        answer = await web.put(
            f"/reviews/{review_id}", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def poll(rig: ChannelStack) -> PollSummary:
    """Have discovery poll now (it saw the review PENDING before: a review gone from the list is
    signalled to its request)."""
    assert rig.discovery is not None
    summary: PollSummary = await rig.discovery.execute_update(HoopReviewDiscoveryWorkflow.poll_now)
    return summary


def asked(what: str) -> Asked:
    return Asked(duration=f"{int(GRANT.total_seconds())}s", reason=f"INC-4712 {what}")


def assert_no_buttons(message: dict[str, Any]) -> None:
    assert not {APPROVE_ACTION, DENY_ACTION} & set(buttons(message)), buttons(message)


def missing_note(rig: ChannelStack, final: RequestView, note: str) -> list[str]:
    """Every place a person saw the request that does not show ``note`` (where it was decided)."""
    rid, requester = final.id, final.requester.email
    note = note.lower()  # shown as a sentence: "Approved in hoop's own UI."

    def lowered(message: dict[str, Any]) -> str:
        return text_of(message).lower()

    missing: list[str] = []
    for approver in SLACK_APPROVERS:
        missing += [f"{approver}'s Slack DM" for m in rig.asking(rid, approver) if note not in lowered(m)]
    for dm in rig.messages(rid, requester):
        if note not in lowered(dm):
            missing.append(f"the requester's {dm['metadata']['event_payload'].get('status')} Slack DM")
    for mail in rig.emails(rid, requester):
        if ".outcome." in message_id(mail) and note not in (mail.text or "").lower():
            missing.append(f"the requester's email {message_id(mail)}")
    [ticket] = rig.tickets(rid)
    comments = rig.jira.comments(ticket["key"])
    if not any(note in c.lower() for c in comments):
        missing.append(f"the Jira ticket {ticket['key']} (comments: {comments})")
    return missing


# ------------------------------------------------------------------------------------------------------ flows


@dataclass(frozen=True)
class Flow:
    request_id: str
    review_id: str
    requester: str
    polled: PollSummary | None  # the poll after the decision in hoop's UI (None: decided in grantflow)
    active: RequestView | None  # the view once ACTIVE (None: never granted)
    hoop_active: dict[str, Any] | None  # the review in hoop while the request was ACTIVE
    session: str  # the session the requester opened while ACTIVE ("" without one)
    final: RequestView


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def approved_in_hoop(rig: ChannelStack) -> Flow:
    """A jit review approved by bob in hoop's UI before grantflow's quorum; the requester connects; the
    grant runs out."""
    rid = await rig.request_by_hoop(APPROVED_THERE, "jit", asked("approved in hoop"), connection=CONNECTION)
    review_id = review_of(rig, rid)
    await asked_everywhere(rig, rid)
    await decide_in_hoop_ui(rig, review_id, BOB, status="APPROVED")
    polled = await poll(rig)
    active = await rig.wait_status(rid, RequestStatus.ACTIVE)
    hoop_active = rig.stack.hoop.review(review_id)
    await asyncio.sleep(CONNECT_AFTER.total_seconds())
    session = await rig.stack.connect(APPROVED_THERE, CONNECTION)
    assert rig.stack.hoop.session(session)["status"] == "open"
    final = await rig.final(rid, timeout=60)
    return Flow(rid, review_id, APPROVED_THERE, polled, active, hoop_active, session, final)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rejected_in_hoop(rig: ChannelStack) -> Flow:
    """A jit review bob approved in Slack (1 of 2), then carol rejected in hoop's UI, with a reason."""
    rid = await rig.request_by_hoop(REJECTED_THERE, "jit", asked("rejected in hoop"), connection=CONNECTION)
    review_id = review_of(rig, rid)
    await asked_everywhere(rig, rid)
    await rig.approve(rid, BOB, "slack")
    await decide_in_hoop_ui(rig, review_id, CAROL, status="REJECTED", rejection_reason=REJECTION)
    polled = await poll(rig)
    final = await rig.final(rid)
    return Flow(rid, review_id, REJECTED_THERE, polled, None, None, "", final)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def approved_by_grantflow(rig: ChannelStack) -> Flow:
    """A jit review grantflow approves itself (bob in Slack, carol in Jira); the requester connects."""
    rid = await rig.request_by_hoop(
        APPROVED_HERE, "jit", asked("approved in grantflow"), connection=CONNECTION
    )
    review_id = review_of(rig, rid)
    await rig.approve(rid, BOB, "slack")
    await rig.approve(rid, CAROL, "jira")
    active = await rig.wait_status(rid, RequestStatus.ACTIVE)
    hoop_active = rig.stack.hoop.review(review_id)
    await asyncio.sleep(CONNECT_AFTER.total_seconds())
    session = await rig.stack.connect(APPROVED_HERE, CONNECTION)
    assert rig.stack.hoop.session(session)["status"] == "open"
    final = await rig.final(rid, timeout=60)
    return Flow(rid, review_id, APPROVED_HERE, None, active, hoop_active, session, final)


def assert_ended_on_time(rig: ChannelStack, flow: Flow) -> None:
    """Expired at hoop's revoke_at, ended on time: the review revoked in hoop, the session killed."""
    final, active, hoop_active = flow.final, flow.active, flow.hoop_active
    assert active is not None and hoop_active is not None
    assert final.status is RequestStatus.ENDED and final.end_reason is EndReason.EXPIRED, final.status
    assert final.expires_at == active.expires_at == hoop_time(hoop_active["revoke_at"])
    assert final.granted_at and final.expires_at and final.ended_at
    assert final.expires_at <= final.ended_at < final.expires_at + ON_TIME
    session = rig.stack.hoop.session(flow.session)
    assert session["status"] == "done" and session["review"] is None, session  # hoop links no session to it
    ended = data_of(rig, flow.request_id, "request.ended")
    assert ended["revoked_review_ids"] == [flow.review_id], ended
    assert ended["killed_session_ids"] == [flow.session], ended
    after = rig.stack.hoop.review(flow.review_id)
    assert after["status"] == "REVOKED", after
    assert hoop_time(after["revoke_at"]) <= final.ended_at


# ------------------------------------------------------------------------------------------- approved in hoop


async def test_approved_in_hoops_own_ui_is_mirrored_active_and_ends_on_time(
    rig: ChannelStack, approved_in_hoop: Flow
) -> None:
    flow = approved_in_hoop
    assert flow.polled is not None and flow.review_id in flow.polled.signalled, flow.polled
    active, hoop_active = flow.active, flow.hoop_active
    assert active is not None and hoop_active is not None
    # mirrored: ACTIVE with the note, no votes in grantflow; hoop shows bob's approval, and its clock rules
    assert active.outcome_note == APPROVED_IN_HOOP
    assert active.approvals == [] and active.denials == []
    assert hoop_active["status"] == "APPROVED", hoop_active
    [group] = hoop_active["review_groups_data"]
    assert group["status"] == "APPROVED" and group["reviewed_by"]["email"] == BOB, group
    approved_at = hoop_time(group["review_date"])
    assert active.expires_at is not None
    assert abs((active.expires_at - approved_at) - GRANT) < timedelta(seconds=1)
    approved = data_of(rig, flow.request_id, "hoop.review_approved")
    assert approved["decided_in"] == "hoop" and approved["note"] == APPROVED_IN_HOOP, approved
    # … tracked to its end
    assert_ended_on_time(rig, flow)
    assert flow.final.outcome_note == APPROVED_IN_HOOP and flow.final.approvals == []
    assert rig.ledger(flow.request_id, "hoop.review_rejected") == []
    # the notifier (the workflow's own messages) carries the note to the requester
    told = [m for m in rig.stack.notifier.to(flow.requester) if m.request_id == flow.request_id]
    assert [m.event for m in told] == ["active", "closed"], told
    assert APPROVED_IN_HOOP in told[0].text, told[0].text


async def test_approved_in_hoops_own_ui_shows_how_it_ended_in_every_channel(
    rig: ChannelStack, approved_in_hoop: Flow
) -> None:
    rid, requester = approved_in_hoop.request_id, approved_in_hoop.requester
    # Slack: each approver's one DM, updated in place to the end, without buttons (dan has no Slack)
    assert rig.asking(rid, DAN) == []
    for approver in SLACK_APPROVERS:
        [dm] = rig.asking(rid, approver)
        assert "*Access ended* (expired)" in text_of(dm) and "ended (expired)" in dm["text"], text_of(dm)
        assert_no_buttons(dm)
    # … the requester: told it was active, then that it ended, each DM showing the end
    dms = rig.messages(rid, requester)
    assert [m["metadata"]["event_payload"].get("status") for m in dms] == ["ACTIVE", "ENDED"]
    assert all("has ended: it expired" in text_of(m) for m in dms), [text_of(m) for m in dms]
    assert len(rig.messages(rid)) == len(SLACK_APPROVERS) + len(dms)
    # email: each approver asked once, the requester told each outcome once
    received = rig.emails(rid)
    ids = sorted(message_id(m).split("@")[0] for m in received)
    expected = [f"<{rid}.ask.request.{rig.ref(a).id}" for a in APPROVERS]
    expected += [f"<{rid}.outcome.{status}" for status in ("ACTIVE", "ENDED")]
    assert ids == sorted(expected), ids
    [last] = [m for m in received if ".outcome.ENDED@" in message_id(m)]
    assert requester in last.rcpt_tos and "your access ended (expired)" in (last.text or ""), last.text
    # Jira: the one ticket, Done, saying access was granted and then ended; no decision was taken in it
    [ticket] = rig.tickets(rid)
    key = ticket["key"]
    assert ticket["fields"]["project"]["key"] == ACC
    assert rig.jira.status_of(key) == DONE
    comments = rig.jira.comments(key)
    assert any(c.startswith("Access granted at") for c in comments), comments
    assert comments[-1].startswith("Access ended at") and "(expired)" in comments[-1], comments
    assert not any(" approved request " in c for c in comments), comments
    assert len(comments) == len(set(comments)), comments


async def test_approved_in_hoops_own_ui_note_is_shown_in_every_channel(
    rig: ChannelStack, approved_in_hoop: Flow
) -> None:
    """Slack DMs (approvers', requester's), the requester's emails and the Jira ticket say where the
    request was approved: nobody voted in grantflow, and without the note nothing tells who decided."""
    missing = missing_note(rig, approved_in_hoop.final, APPROVED_IN_HOOP)
    assert missing == [], "no note in:\n" + "\n".join(missing)


# ------------------------------------------------------------------------------------------- rejected in hoop


async def test_rejected_in_hoops_own_ui_is_mirrored_as_denied_and_shown_in_every_channel(
    rig: ChannelStack, rejected_in_hoop: Flow
) -> None:
    flow = rejected_in_hoop
    rid, requester, final = flow.request_id, flow.requester, flow.final
    assert flow.polled is not None and flow.review_id in flow.polled.signalled, flow.polled
    # mirrored: DENIED with the note; bob's vote stays, nobody denied in grantflow
    assert final.status is RequestStatus.DENIED and final.outcome_note == f"{REJECTED_IN_HOOP}: {REJECTION}"
    assert [(d.approver.email, d.channel) for d in final.approvals] == [(BOB, "slack")]
    assert final.denials == [] and final.granted_at is None
    denied = data_of(rig, rid, "request.denied")
    assert denied["note"] == f"{REJECTED_IN_HOOP}: {REJECTION}" and denied["reason"] == REJECTION, denied
    # hoop keeps carol's rejection as she made it: grantflow neither rejects again nor approves
    in_hoop = rig.stack.hoop.review(flow.review_id)
    assert in_hoop["status"] == "REJECTED" and in_hoop["rejection_reason"] == REJECTION, in_hoop
    assert [g["reviewed_by"]["email"] for g in in_hoop["review_groups_data"]] == [CAROL]
    assert rig.ledger(rid, "hoop.review_rejected") == [] and rig.ledger(rid, "hoop.review_approved") == []
    # Slack: each approver's DM says denied, without buttons; bob's vote is still shown
    assert rig.asking(rid, DAN) == []
    for approver in SLACK_APPROVERS:
        [dm] = rig.asking(rid, approver)
        assert "❌ *Denied*" in text_of(dm) and "denied" in dm["text"], text_of(dm)
        assert f"{BOB} approved via slack" in text_of(dm), text_of(dm)
        assert_no_buttons(dm)
    # … the requester is told, once
    [outcome] = rig.messages(rid, requester)
    assert outcome["metadata"]["event_payload"].get("status") == "DENIED"
    assert "*Denied.*" in text_of(outcome) and "was denied" in text_of(outcome), text_of(outcome)
    # email: each approver asked once, the requester told once
    received = rig.emails(rid)
    ids = sorted(message_id(m).split("@")[0] for m in received)
    expected = [f"<{rid}.ask.request.{rig.ref(a).id}" for a in APPROVERS] + [f"<{rid}.outcome.DENIED"]
    assert ids == sorted(expected), ids
    [mail] = [m for m in received if ".outcome.DENIED@" in message_id(m)]
    assert requester in mail.rcpt_tos and "your request was denied." in (mail.text or ""), mail.text
    # Jira: the ticket is moved to Denied, with bob's vote and the end in its comments
    [ticket] = rig.tickets(rid)
    key = ticket["key"]
    assert rig.jira.status_of(key) == DENIED
    comments = rig.jira.comments(key)
    assert any(c.startswith(f"{BOB} approved request {rid} via slack") for c in comments), comments
    assert comments[-1].startswith("Denied"), comments
    assert len(comments) == len(set(comments)), comments
    # the notifier (the workflow's own messages) carries the note to the requester
    told = [m for m in rig.stack.notifier.to(requester) if m.request_id == rid]
    assert [m.event for m in told] == ["closed"] and REJECTED_IN_HOOP in told[0].text, told


async def test_rejected_in_hoops_own_ui_note_is_shown_in_every_channel(
    rig: ChannelStack, rejected_in_hoop: Flow
) -> None:
    """The DMs say "❌ Denied" with no denial to name, the ticket "Denied.": only the note says it was
    rejected in hoop's own UI (nobody denied in grantflow)."""
    # … and why: the reviewer's reason in hoop
    missing = missing_note(rig, rejected_in_hoop.final, f"{REJECTED_IN_HOOP}: {REJECTION}")
    assert missing == [], "no note in:\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------------------- approved here


async def test_a_review_grantflow_approves_is_approved_in_hoop_while_active_then_revoked(
    rig: ChannelStack, approved_by_grantflow: Flow
) -> None:
    flow = approved_by_grantflow
    active, hoop_active, final = flow.active, flow.hoop_active, flow.final
    assert active is not None and hoop_active is not None
    assert active.outcome_note is None
    assert [(d.approver.email, d.channel) for d in active.approvals] == [(BOB, "slack"), (CAROL, "jira")]
    # while ACTIVE: APPROVED in hoop, by grantflow's key (not by a person), expiring with the request
    assert hoop_active["status"] == "APPROVED", hoop_active
    # in ONE call, forced as grantflow's force-approval group (review.go doForcedReview): the reviewer groups
    # stay as they were, the force group is added and marked forced
    decided = [g for g in hoop_active["review_groups_data"] if g["status"] != "PENDING"]
    assert [(g["group"], g["status"], g["forced_review"]) for g in decided] == [
        (GRANTFLOW_GROUP, "APPROVED", True)
    ]
    assert all(g["reviewed_by"]["email"] not in APPROVERS for g in decided)
    puts = [
        c.json
        for c in rig.stack.hoop.calls
        if c.method == "PUT" and c.path == f"/api/reviews/{flow.review_id}"
    ]
    assert [b for b in puts if b["status"] == "APPROVED"] == [{"status": "APPROVED", "force_review": True}]
    approved = data_of(rig, flow.request_id, "hoop.review_approved")
    assert approved["decided_in"] == "grantflow" and "note" not in approved, approved
    assert active.granted_at is not None and active.expires_at is not None
    assert abs((active.expires_at - active.granted_at) - GRANT) < timedelta(seconds=2)
    # after the end: REVOKED in hoop, the session opened under it killed
    assert_ended_on_time(rig, flow)
    assert final.outcome_note is None
    [ticket] = rig.tickets(flow.request_id)
    assert rig.jira.status_of(ticket["key"]) == DONE
    for approver in SLACK_APPROVERS:
        [dm] = rig.asking(flow.request_id, approver)
        assert "*Access ended* (expired)" in text_of(dm), text_of(dm)
        assert_no_buttons(dm)
