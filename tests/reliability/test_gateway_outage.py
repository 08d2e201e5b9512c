"""The gateway down for two minutes when a grant expires: the revocation waits it out, and the operators hear.

hoop (the stand-in) answers every call with 503 from just before a grant's expiry, for two real minutes —
a gateway whose backend is gone behind its load balancer. The revocation (a critical side effect, retried
until it succeeds: ``CRITICAL_RETRY``) keeps trying; once it has failed for ``revoke_escalate_after`` (one
minute here, from the request's timings as ``settings.revoke_escalate_after`` sets them) the workflow
records ``revocation.escalated`` in the ledger and the alert reaches the operators' Slack channel and their
address by email (``build_notifier``'s operator copies, as an operator configures them). Once hoop is back
the next attempt revokes the grant and the request ends, expired.

Real time on the dev server: the outage is defined by hoop's clock, and the retries' backoff is the
product's own (1 s doubling to 30 s), so the time from recovery to revocation is what an operator would
see. About three minutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from domain.requests import DecisionInput, EndReason, GatewayTimings, RequestStatus, Verdict
from sandbox.slack import SlackStandIn
from sandbox.smtp import SmtpSink
from tests.reliability.results import record
from tests.rigs.edges import settings_for
from tests.stack import Stack, start_stack
from worker import build_activities, build_channels, build_notifier, build_worker
from workflows.access_request import AccessRequestWorkflow

pytestmark = [pytest.mark.long, pytest.mark.reliability]

SLACK_BOT = "xoxb-outage-grantflow"
OPERATOR_EMAIL = "grantflow-ops@example.com"
REQUESTER, APPROVERS = "alice@example.com", ("bob@example.com", "carol@example.com")
CONNECTION = "pg-prod-admin"
GRANT = timedelta(seconds=15)
DOWN_BEFORE_EXPIRY = timedelta(seconds=2)  # hoop goes down just before the grant ends …
DOWNTIME = timedelta(minutes=2)  # … and stays down this long
ESCALATE_AFTER = timedelta(minutes=1)  # revoke_escalate_after: well inside the outage
ALERT = "could not be revoked yet"  # templates/notifications/revocation_escalated.txt.j2


@dataclass
class OutageRig:
    stack: Stack
    slack: SlackStandIn
    smtp: SmtpSink
    operator_channel: str


@pytest_asyncio.fixture(loop_scope="session")
async def rig(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[OutageRig]:
    """The stack (dev server, hoop stand-in, store) with a worker whose notices go out through Slack and
    email, operators' channel and address included, as ``grantflow worker`` builds them from settings."""
    async with start_stack(dev_env, tmp_path, time_skipping=False, run_worker=False) as stack:
        slack = SlackStandIn(bot_token=SLACK_BOT)
        for person in stack.organisation.people:
            slack.add_user(person.email, person.display_name or person.email)
        operator_channel = slack.add_channel("grantflow-ops")
        slack.start()
        smtp = SmtpSink()
        smtp.start()
        try:
            settings = settings_for(
                tmp_path,
                slack=slack,
                smtp=smtp,
                operator_slack_channel=operator_channel,
                operator_email=OPERATOR_EMAIL,
                revoke_escalate_after=ESCALATE_AFTER,
            )
            channels = build_channels(settings, links=stack.links, store=stack.store)
            activities = build_activities(
                store=stack.store,
                gateway=stack.gateway,
                notifier=build_notifier(settings, channels),
                links=stack.links,
                channels=channels,
                policies=stack.policies,
            )
            # its own task queue: the stack's worker object (not running) already holds the stack's
            queued = dataclasses.replace(stack, task_queue=f"tq-outage-{uuid.uuid4().hex}")
            try:
                async with build_worker(stack.env.client, queued.task_queue, activities):
                    yield OutageRig(queued, slack, smtp, operator_channel)
            finally:
                await channels.aclose()
        finally:
            smtp.stop()
            slack.stop()


def operator_alerts(rig: OutageRig, request_id: str) -> tuple[list[str], list[str]]:
    """The escalation as the operators got it: Slack channel texts, email subjects."""
    texts = [
        str(m.get("text", ""))
        for m in rig.slack.messages(rig.operator_channel)
        if request_id in str(m) and ALERT in str(m.get("text", ""))
    ]
    subjects = [
        str(m.message["Subject"])
        for m in list(rig.smtp.messages)
        if OPERATOR_EMAIL in m.rcpt_tos
        and request_id in str(m.message)
        and ALERT in str(m.message["Subject"] or "")
    ]
    return texts, subjects


async def test_a_revocation_outlasts_a_two_minute_gateway_outage_and_is_escalated(rig: OutageRig) -> None:
    stack, hoop = rig.stack, rig.stack.hoop
    timings = GatewayTimings(revoke_escalate_after=ESCALATE_AFTER)
    handle = await stack.start_request(REQUESTER, "pg-prod", "admin", GRANT, reason="INC-77", timings=timings)
    await stack.wait_for(handle, lambda v: v.approvers_resolved)
    for approver in APPROVERS:
        await handle.execute_update(
            AccessRequestWorkflow.decide, DecisionInput(actor=stack.actor(approver), verdict=Verdict.APPROVE)
        )
    active = await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)
    assert active.expires_at is not None
    [grant] = active.grants
    assert hoop.review(grant.review_id)["status"] == "APPROVED"

    # down from just before the expiry
    down_in = (active.expires_at - DOWN_BEFORE_EXPIRY - await stack.now()).total_seconds()
    await asyncio.sleep(max(0.0, down_in))
    calls_before = len(hoop.calls)
    hoop.fail_next("/", 503, count=1_000_000)
    down_at = time.monotonic()
    escalated_seen_at: float | None = None
    while time.monotonic() - down_at < DOWNTIME.total_seconds():
        if (
            escalated_seen_at is None
            and (await handle.query(AccessRequestWorkflow.view)).revocation_escalated
        ):
            escalated_seen_at = time.monotonic()
        await asyncio.sleep(0.5)
    during = hoop.calls[calls_before:]
    hoop.clear_faults()
    recovered_at = time.monotonic()

    # nothing was revoked while hoop was down; every call it saw then failed
    assert during and all(c.injected and c.status == 503 for c in during), during
    view = await handle.query(AccessRequestWorkflow.view)
    assert view.status is RequestStatus.REVOKING and view.revocation_escalated, view.status
    assert escalated_seen_at is not None

    final = await asyncio.wait_for(handle.result(), 120)
    revoked = [e for e in hoop.events("grant.revoked") if e.review_id == grant.review_id]
    assert [e.kind for e in revoked] == ["grant.revoked"]
    recovery_to_revocation = revoked[0].monotonic - recovered_at
    assert final.status is RequestStatus.ENDED and final.end_reason is EndReason.EXPIRED
    assert final.revocation_escalated
    assert hoop.review(grant.review_id)["status"] == "REVOKED"

    # the ledger: started, escalated once, then ended, in that order
    kinds = [e.kind for e in stack.store.ledger_entries(subject=final.id)]
    revocation = [k for k in kinds if k in ("revocation.started", "revocation.escalated", "request.ended")]
    assert revocation == ["revocation.started", "revocation.escalated", "request.ended"], kinds
    [escalated] = [
        e for e in stack.store.ledger_entries(subject=final.id) if e.kind == "revocation.escalated"
    ]
    assert escalated.data["after"] == "1m", escalated.data
    [ended] = [e for e in stack.store.ledger_entries(subject=final.id) if e.kind == "request.ended"]

    # the operators heard, once in each place, while hoop was still down
    texts, subjects = operator_alerts(rig, final.id)
    assert len(texts) == 1 and len(subjects) == 1, (texts, subjects)
    revoke_calls = {c.path for c in during}
    attempts = ended.data["attempts"]
    # every attempt of the revocation during the outage reached hoop and failed there
    assert attempts >= 2 and len(during) >= attempts - 1, (attempts, len(during))

    record(
        "gateway-outage",
        title="The gateway down for two minutes at an expiry",
        injected=(
            f"hoop answering every call with 503 for {DOWNTIME.total_seconds():.0f} s from "
            f"{DOWN_BEFORE_EXPIRY.total_seconds():.0f} s before a grant's expiry; "
            f"revoke_escalate_after {ESCALATE_AFTER.total_seconds():.0f} s"
        ),
        counts={
            "downtime (s)": round(recovered_at - down_at, 1),
            "calls hoop saw while down": len(during),
            "revocation attempts": attempts,
            "escalated after outage start (s)": round(escalated_seen_at - down_at, 1),
            "recovery to revocation (s)": round(recovery_to_revocation, 1),
            "operator Slack alerts": len(texts),
            "operator emails": len(subjects),
            "revocation.escalated in the ledger": 1,
        },
        outcome=(
            "the revocation was retried through the outage and succeeded once hoop was back; after "
            "revoke_escalate_after the operators were alerted in Slack and by email and the ledger "
            "recorded revocation.escalated"
        ),
        details={"paths while down": sorted(revoke_calls)},
    )
