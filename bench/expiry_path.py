"""Where an expiry's time goes, read back from each workflow's Temporal history after a jit run.

The stand-in tells how long a grant outlived its expiry; the history tells why. From the workflow's last
run, for the activity that ends the grant (grantflow's ``revoke_access``, the baseline's ``bare_jit_end``):

- ``timer_fired_late``: the timer that woke the workflow fired this long after the scheduled expiry;
- ``workflow_task_waited``: the workflow task that timer scheduled waited this long for a worker slot
  (queue and sticky queue);
- ``workflow_task_ran``: the worker took this long to run it and the server to accept its commands;
- ``activity_waited``: the revocation activity waited this long on its task queue;
- ``activity_ran``: and ran this long (its gateway calls, read-backs included: a little more than the
  stand-in's "revoked and killed").

Event times are the server's, so the stages share one clock. A grant whose revocation was not scheduled
by a timer (an early end) has no breakdown and is left out; ``explained`` counts the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

STAGES = ("timer_fired_late", "workflow_task_waited", "workflow_task_ran", "activity_waited", "activity_ran")
SLOWEST_SHARE = 0.01
"""The share of grants, slowest end to end first, whose stages are averaged in ``slowest``."""
FETCHING_AT_ONCE = 16


def stages_of(
    events: list[HistoryEvent], activity_type: str, expires_at: datetime
) -> dict[str, float] | None:
    """The stages of the last ``activity_type`` scheduled in ``events``, or None when no timer led to it."""
    by_id = {e.event_id: e for e in events}
    scheduled = next(
        (
            e
            for e in reversed(events)
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
        ),
        None,
    )
    if scheduled is None:
        return None
    scheduled_by = scheduled.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
    task_completed = by_id[scheduled_by]
    attributes = task_completed.workflow_task_completed_event_attributes
    task_started, task_scheduled = by_id[attributes.started_event_id], by_id[attributes.scheduled_event_id]
    fired = next(
        (
            e
            for e in reversed(events)
            if e.event_id < task_scheduled.event_id and e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
        ),
        None,
    )
    # the timer must be what this workflow task answered: nothing but it since the task before
    if fired is None or any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        for e in events
        if fired.event_id < e.event_id < task_scheduled.event_id
    ):
        return None

    started = completed = None
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            if e.activity_task_started_event_attributes.scheduled_event_id == scheduled.event_id:
                started = e
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            if e.activity_task_completed_event_attributes.scheduled_event_id == scheduled.event_id:
                completed = e
    if started is None or completed is None:
        return None

    def at(e: HistoryEvent) -> datetime:
        return e.event_time.ToDatetime(tzinfo=expires_at.tzinfo)

    return {
        "timer_fired_late": (at(fired) - expires_at).total_seconds(),
        "workflow_task_waited": (at(task_started) - at(fired)).total_seconds(),
        "workflow_task_ran": (at(task_completed) - at(task_started)).total_seconds(),
        "activity_waited": (at(started) - at(scheduled)).total_seconds(),
        "activity_ran": (at(completed) - at(started)).total_seconds(),
    }


async def expiry_path(
    client: Client,
    workflows: list[tuple[str, datetime]],
    activity_type: str,
    percentiles: Callable[[list[float]], dict[str, Any]],
) -> dict[str, Any]:
    """Each stage's percentiles over ``workflows`` ((workflow id, scheduled expiry) pairs), and the mean of
    each stage over the slowest ``SLOWEST_SHARE`` of them end to end."""
    gate = asyncio.Semaphore(FETCHING_AT_ONCE)

    async def one(workflow_id: str, expires_at: datetime) -> dict[str, float] | None:
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        return stages_of(list(history.events), activity_type, expires_at)

    found = [s for s in await asyncio.gather(*(one(w, e) for w, e in workflows)) if s is not None]
    slowest_first = sorted(found, key=lambda s: sum(s.values()), reverse=True)
    slowest = slowest_first[: max(1, round(len(found) * SLOWEST_SHARE))]
    return {
        "explained": len(found),
        **{stage: percentiles([s[stage] for s in found]) for stage in STAGES},
        "slowest": {
            stage: round(sum(s[stage] for s in slowest) / len(slowest), 3) if slowest else None
            for stage in STAGES
        },
    }
