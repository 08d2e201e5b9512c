"""LedgerAnchorWorkflow: the one job that anchors the ledger head in the shared anchor every few seconds.

One workflow with a fixed id (``ledger-anchor``), started by every worker with ``USE_EXISTING``
(:func:`ensure_ledger_anchoring`), so however many workers and servers append to the ledger, exactly one
writer puts heads into the shared anchor and processes never race. Each tick reads the head and writes it
when it moved (``store/anchors.py``: one write-once object per anchored head).

A failed write is retried (a few quick attempts, then again at every tick). When a tick gives up, the
first failure of a streak raises the alert — an ``ledger.anchor_failed`` entry in the ledger and an error
log line — and the first success after it records ``ledger.anchor_restored``. The alert entries are
themselves anchored once the anchor works again.

History stays bounded: after ``ticks_per_run`` ticks the workflow continues as new, carrying the last
anchored head and the failure streak.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.records import (
        AnchorAlertInput,
        AnchorHeadInput,
        AnchorHeadResult,
        LedgerAnchorActivities,
    )

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from configuration.settings import Settings

LEDGER_ANCHOR_WORKFLOW_ID = "ledger-anchor"
# A few quick attempts per tick; the next tick tries again anyway.
ANCHOR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5), maximum_attempts=3
)
ALERT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


class LedgerAnchorInput(BaseModel):
    interval: timedelta = Field(default=timedelta(seconds=5), gt=timedelta(0))
    ticks_per_run: int = Field(default=200, ge=1)
    last_seq: int = 0
    last_hash: str = ""
    failing_since: AwareDatetime | None = None
    failure_count: int = 0
    """Failure streaks so far (all runs): makes each alert's idempotency key unique."""


@workflow.defn
class LedgerAnchorWorkflow:
    def __init__(self) -> None:
        self._state = LedgerAnchorInput()

    @workflow.query
    def state(self) -> LedgerAnchorInput:
        """The last anchored head and whether anchoring is failing."""
        return self._state

    @workflow.run
    async def run(self, inp: LedgerAnchorInput) -> None:
        self._state = inp.model_copy()
        for _ in range(inp.ticks_per_run):
            await self._tick()
            await workflow.sleep(inp.interval)
        workflow.continue_as_new(self._state)

    async def _tick(self) -> None:
        state = self._state
        try:
            result: AnchorHeadResult = await workflow.execute_activity_method(
                LedgerAnchorActivities.anchor_head,
                AnchorHeadInput(last_seq=state.last_seq, last_hash=state.last_hash),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=ANCHOR_RETRY,
            )
        except ActivityError as exc:
            if state.failing_since is None:
                state.failing_since = workflow.now()
                state.failure_count += 1
                await self._alert("ledger.anchor_failed", _reason(exc), state.failing_since)
            return
        state.last_seq, state.last_hash = result.seq, result.hash
        if state.failing_since is not None:
            since, state.failing_since = state.failing_since, None
            await self._alert("ledger.anchor_restored", "", since)

    async def _alert(self, kind: str, problem: str, since: datetime) -> None:
        await workflow.execute_activity_method(
            LedgerAnchorActivities.alert,
            AnchorAlertInput(
                kind=kind,
                problem=problem,
                since=since,
                # The run id: a job started afresh (count back at 0) must not collide with old alerts.
                idempotency_key=f"ledger-anchor:{workflow.info().run_id}:{kind}:{self._state.failure_count}",
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ALERT_RETRY,
        )


def _reason(exc: ActivityError) -> str:
    """The innermost failure's message (the activity's own error, not Temporal's wrapping)."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause)


async def ensure_ledger_anchoring(
    client: Client, settings: Settings, *, workflow_id: str = LEDGER_ANCHOR_WORKFLOW_ID
) -> WorkflowHandle[LedgerAnchorWorkflow, None]:
    """Start the anchoring job unless it already runs (fixed id, ``USE_EXISTING``): every worker with a
    shared anchor calls it at start-up. A running job keeps its interval; terminate it to apply a new one."""
    return await client.start_workflow(
        LedgerAnchorWorkflow.run,
        LedgerAnchorInput(interval=settings.ledger_anchor_interval),
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
