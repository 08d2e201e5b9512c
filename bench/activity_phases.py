"""Where a campaign's time goes, read back from its workflow's Temporal histories after a run.

A phase is a run of activities of one type scheduled one after the other (the partitions' settlements,
the partitions' revocations, the pages of outcome notices...); for each, in order, its activity type, when
its first activity was scheduled and its last one completed (seconds after the workflow started, over every
run of it: continue-as-new makes several) and how many it ran. The two sides name their activities
differently; their phases still line up (snapshot, settlement, revocations, telling people, evidence).
Event times are the server's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client


async def activity_phases(client: Client, workflow_id: str) -> list[dict[str, Any]]:
    """``[{"activity", "from_s", "to_s", "count"}]`` in the order the phases began."""
    began: datetime | None = None
    phases: list[dict[str, Any]] = []
    phase_of: dict[tuple[str, int], dict[str, Any]] = {}  # (run, scheduled event id) -> its phase
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    for run in sorted(runs, key=lambda w: w.start_time):
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        for event in history.events:
            at = event.event_time.ToDatetime()
            began = began or at
            offset = round((at - began).total_seconds(), 3)
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                if not phases or phases[-1]["activity"] != name:
                    phases.append({"activity": name, "from_s": offset, "to_s": offset, "count": 0})
                phases[-1]["count"] += 1
                phase_of[(run.run_id, event.event_id)] = phases[-1]
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                of = event.activity_task_completed_event_attributes.scheduled_event_id
                phase = phase_of[(run.run_id, of)]
                phase["to_s"] = max(phase["to_s"], offset)
    return phases
