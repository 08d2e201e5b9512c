"""HoopReviewDiscoveryWorkflow: finds reviews people left PENDING in hoop and opens one request per review.

hoop has no outbound "review pending" notification, so grantflow polls. Every ``poll_interval`` (or at
once on the ``poll_now`` update):

1. one activity lists the reviews PENDING in hoop (``GET /sessions?review.status=PENDING``, paged);
2. the reviews not seen before are admitted in batches (``admit_hoop_reviews``): one
   ``AccessRequestWorkflow`` per review, id ``hoop-<review id>``, under grantflow's policy for the
   connection; a review whose requester is not in the directory is rejected in hoop with a reason; one for
   a connection no policy covers is left to hoop (logged once);
3. reviews that were PENDING at the previous poll and are no longer are signalled to their request
   (``hoop_review_changed``), which reads the review and mirrors a decision taken in hoop's own UI.

State — the review ids known PENDING with a request, and those left alone — is small and carried across
continue-as-new in the input, which happens after ``polls_per_run`` polls or when the server suggests it.

Why an activity starts the requests, not child workflows: the start is idempotent by review id with
``USE_EXISTING`` + ``REJECT_DUPLICATE`` however often it is repeated (a retried activity, a second poll,
a new run after continue-as-new, a discovery restarted from scratch), whereas a child start after
continue-as-new or a restart fails as "already started" and each child adds events to this history. A
request lives for hours or weeks; it must not be tied to the discovery's lifecycle at all (not even as an
abandoned child), and admission needs the store and the policies anyway, which only activities reach.

Start it with :func:`ensure_hoop_discovery` (idempotent, fixed id); the worker does at start-up when a
hoop URL is configured.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.hoop_reviews import Admission, AdmitInput, AdmitOutcome, HoopReviewActivities
    from domain.durations import PositiveDuration
    from domain.requests import GatewayTimings, HoopReviewChanged, hoop_request_id
    from workflows.access_request import AccessRequestWorkflow

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from configuration.settings import Settings
    from domain.hoop_reviews import HoopPendingReview

HOOP_DISCOVERY_WORKFLOW_ID = "hoop-review-discovery"
# Listing fails fast: the next poll tries again anyway.
LIST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=3
)
# Admission is repeated at the next poll if it gives up (the reviews are still new then).
ADMIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=5
)
# Reviews admitted per activity: bounds one activity's run time and payload.
ADMIT_BATCH = 50


class HoopDiscoveryInput(BaseModel):
    poll_interval: PositiveDuration = timedelta(seconds=15)
    polls_per_run: int = Field(default=500, ge=1, description="polls before continue-as-new")
    channels: list[str] = Field(default_factory=list, description="where the requests are presented")
    timings: GatewayTimings = GatewayTimings()
    known_pending: list[str] = Field(default_factory=list)
    """Review ids seen PENDING with a request deciding them (carried across continue-as-new)."""
    left_alone: list[str] = Field(default_factory=list)
    """Review ids pending and left to hoop (no policy, …): logged once, not admitted again while pending."""


class PollSummary(BaseModel):
    """What one poll did."""

    poll: int
    pending: int = 0
    started: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)
    left_alone: list[str] = Field(default_factory=list)
    signalled: list[str] = Field(default_factory=list)
    error: str | None = None


class DiscoveryState(BaseModel):
    known_pending: list[str]
    left_alone: list[str]
    polls: int
    """Polls finished in this run (continue-as-new starts again at zero)."""
    last: PollSummary | None = None


@workflow.defn
class HoopReviewDiscoveryWorkflow:
    @workflow.init
    def __init__(self, inp: HoopDiscoveryInput) -> None:
        self._known = set(inp.known_pending)
        self._left_alone = set(inp.left_alone)
        self._poll_requested = False
        self._polls_started = 0
        self._polls_finished = 0
        self._last: PollSummary | None = None

    @workflow.run
    async def run(self, inp: HoopDiscoveryInput) -> None:
        while True:
            await self._poll(inp)
            if self._polls_finished >= inp.polls_per_run or workflow.info().is_continue_as_new_suggested():
                # A poll_now waiting meanwhile is answered first: it would never finish otherwise.
                await workflow.wait_condition(
                    lambda: self._poll_requested or workflow.all_handlers_finished()
                )
                if not self._poll_requested:
                    break
                continue
            try:
                await workflow.wait_condition(lambda: self._poll_requested, timeout=inp.poll_interval)
            except TimeoutError:
                pass
        workflow.continue_as_new(
            inp.model_copy(
                update={"known_pending": sorted(self._known), "left_alone": sorted(self._left_alone)}
            )
        )

    @workflow.update
    async def poll_now(self) -> PollSummary:
        """Poll at once (not waiting for the interval) and return what that poll did."""
        target = self._polls_started + 1  # a poll already running may have listed before the ask
        self._poll_requested = True
        await workflow.wait_condition(lambda: self._polls_finished >= target)
        assert self._last is not None
        return self._last

    @workflow.query
    def state(self) -> DiscoveryState:
        return DiscoveryState(
            known_pending=sorted(self._known),
            left_alone=sorted(self._left_alone),
            polls=self._polls_finished,
            last=self._last,
        )

    async def _poll(self, inp: HoopDiscoveryInput) -> None:
        self._poll_requested = False
        self._polls_started += 1
        summary = PollSummary(poll=self._polls_started)
        try:
            rows: list[HoopPendingReview] = await workflow.execute_activity_method(
                HoopReviewActivities.list_pending,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=LIST_RETRY,
            )
        except ActivityError as err:
            summary.error = f"listing pending hoop reviews failed: {err.cause}"
            workflow.logger.warning("%s", summary.error)
        else:
            await self._process(inp, rows, summary)
        self._last = summary
        self._polls_finished += 1

    async def _process(
        self, inp: HoopDiscoveryInput, rows: list[HoopPendingReview], summary: PollSummary
    ) -> None:
        pending = {r.review_id for r in rows}
        summary.pending = len(pending)
        new = [r for r in rows if r.review_id not in self._known and r.review_id not in self._left_alone]
        for start in range(0, len(new), ADMIT_BATCH):
            batch = new[start : start + ADMIT_BATCH]
            try:
                outcomes = await workflow.execute_activity_method(
                    HoopReviewActivities.admit,
                    AdmitInput(
                        reviews=batch,
                        task_queue=workflow.info().task_queue,
                        channels=inp.channels,
                        timings=inp.timings,
                    ),
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=ADMIT_RETRY,
                )
            except ActivityError as err:  # still new at the next poll: tried again then
                summary.error = f"admitting hoop reviews failed: {err.cause}"
                workflow.logger.warning("%s", summary.error)
                continue
            for outcome in outcomes:
                self._admitted(outcome, summary)
        gone = sorted(self._known - pending)
        if gone:
            await self._signal_gone(gone)
            self._known.difference_update(gone)
            summary.signalled = gone
        self._left_alone &= pending

    def _admitted(self, outcome: AdmitOutcome, summary: PollSummary) -> None:
        if outcome.admission is Admission.STARTED:
            self._known.add(outcome.review_id)
            summary.started.append(outcome.review_id)
        elif outcome.admission is Admission.REJECTED:
            summary.rejected.append(outcome.review_id)
            workflow.logger.info("hoop review %s rejected: %s", outcome.review_id, outcome.reason)
        else:
            self._left_alone.add(outcome.review_id)
            summary.left_alone.append(outcome.review_id)
            workflow.logger.info(
                "hoop review %s on %s left alone: %s", outcome.review_id, outcome.connection, outcome.reason
            )

    async def _signal_gone(self, review_ids: list[str]) -> None:
        """Tell each request its review left PENDING (all at once; a request already closed is skipped)."""

        async def signal(review_id: str) -> None:
            handle: workflow.ExternalWorkflowHandle[AccessRequestWorkflow]
            handle = workflow.get_external_workflow_handle_for(
                AccessRequestWorkflow.run, hoop_request_id(review_id)
            )
            await handle.signal(
                AccessRequestWorkflow.hoop_review_changed, HoopReviewChanged(review_id=review_id)
            )

        results = await asyncio.gather(*(signal(r) for r in review_ids), return_exceptions=True)
        for review_id, result in zip(review_ids, results, strict=True):
            if isinstance(result, Exception):
                workflow.logger.info("request for hoop review %s not signalled: %s", review_id, result)


async def ensure_hoop_discovery(
    client: Client, settings: Settings, *, workflow_id: str = HOOP_DISCOVERY_WORKFLOW_ID
) -> WorkflowHandle[HoopReviewDiscoveryWorkflow, None]:
    """Start discovery unless it already runs (fixed id, ``USE_EXISTING``): every worker may call it at
    start-up. A running discovery keeps the settings it was started with; terminate it to apply new ones."""
    inp = HoopDiscoveryInput(
        poll_interval=settings.hoop_review_poll_interval,
        channels=settings.configured_channels,
        timings=GatewayTimings(
            max_grant=settings.gateway_max_grant,
            renewal_lead=settings.renewal_lead,
            revoke_escalate_after=settings.revoke_escalate_after,
        ),
    )
    return await client.start_workflow(
        HoopReviewDiscoveryWorkflow.run,
        inp,
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
