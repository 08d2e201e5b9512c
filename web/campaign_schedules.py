"""Recurring campaigns as Temporal Schedules: ``grantflow campaign schedule SPEC`` creates or updates one.

A spec's ``[schedule]`` (``domain/campaign_spec.py``) becomes a calendar in its time zone — every quarter
(the start's month and the ones three, six and nine months later) or every month, on the start's day, hour
and minute — with no overlap (a campaign still running skips the next start) and a deliberate catch-up window:
a run whose time fell while Temporal was down starts once when it is back, if that is within the window,
and not at all after it. Each run is a ``CampaignWorkflow`` that records its own campaign, named for its
nominal time, which it reads from Temporal (``TemporalScheduledStartTime``). The schedule's id is the spec's
name, so scheduling the same spec again updates it.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.campaign_spec import CampaignSpec
from workflows.campaign import CampaignInput, CampaignWorkflow, campaign_slug


def schedule_id(spec: CampaignSpec) -> str:
    return f"campaign-schedule-{campaign_slug(spec.name)}"


def calendar(spec: CampaignSpec) -> ScheduleCalendarSpec:
    assert spec.schedule is not None
    start = spec.schedule.start
    months = (
        sorted({(start.month - 1 + 3 * k) % 12 + 1 for k in range(4)})
        if spec.schedule.every == "quarter"
        else list(range(1, 13))
    )
    return ScheduleCalendarSpec(
        second=[ScheduleRange(0)],
        minute=[ScheduleRange(start.minute)],
        hour=[ScheduleRange(start.hour)],
        day_of_month=[ScheduleRange(start.day)],
        month=[ScheduleRange(m) for m in months],
        comment=f"every {spec.schedule.every} from {start:%Y-%m-%d %H:%M} {spec.schedule.time_zone}",
    )


def campaign_schedule(spec: CampaignSpec, spec_toml: str, task_queue: str) -> Schedule:
    assert spec.schedule is not None
    sid = schedule_id(spec)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            CampaignWorkflow.run,
            CampaignInput(campaign_id="", spec=spec, schedule_id=sid, spec_toml=spec_toml),
            id=sid,  # Temporal adds each run's nominal time to it
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[calendar(spec)],
            time_zone_name=spec.schedule.time_zone,
            start_at=_local_start(spec),
        ),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=spec.schedule.catch_up_window
        ),
    )


def _local_start(spec: CampaignSpec) -> datetime | None:
    """The first run may not come before the spec's start (given in its own time zone)."""
    assert spec.schedule is not None
    start = spec.schedule.start
    return start if start.tzinfo is not None else start.replace(tzinfo=ZoneInfo(spec.schedule.time_zone))


async def create_or_update(
    client: Client, spec: CampaignSpec, spec_toml: str, task_queue: str
) -> tuple[str, bool]:
    """The schedule's id, and whether it already existed (then it was updated)."""
    sid = schedule_id(spec)
    schedule = campaign_schedule(spec, spec_toml, task_queue)
    try:
        await client.create_schedule(sid, schedule)
        return sid, False
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(sid).update(replace)
        return sid, True
