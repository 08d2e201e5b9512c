"""Recurring campaigns on the dev server: the spec's [schedule] as a Temporal Schedule (calendar, time zone,
no overlap, catch-up window), updated in place, and a scheduled run that records its own campaign with its
nominal time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.campaign_spec import parse_campaign_spec
from domain.campaign_state import CampaignStatus
from examples import EXAMPLES_DIR
from tests.stack import Stack
from web.campaign_schedules import calendar, campaign_schedule, schedule_id
from web.campaign_service import CampaignService
from web.service import BadInput

SPEC = (EXAMPLES_DIR / "campaign.toml").read_text()


def test_the_example_schedule_is_quarterly_in_berlin_without_overlap() -> None:
    spec = parse_campaign_spec(SPEC)
    built = campaign_schedule(spec, SPEC, "grantflow")
    assert built.spec.time_zone_name == "Europe/Berlin"
    assert [m.start for m in calendar(spec).month] == [1, 4, 7, 10]
    assert [r.start for r in calendar(spec).day_of_month] == [4]
    assert ([r.start for r in calendar(spec).hour], [r.start for r in calendar(spec).minute]) == ([9], [0])
    assert built.policy.overlap.name == "SKIP"
    assert built.policy.catchup_window == timedelta(days=2)
    monthly = parse_campaign_spec(SPEC.replace('every = "quarter"', 'every = "month"'))
    assert [m.start for m in calendar(monthly).month] == list(range(1, 13))
    assert schedule_id(spec) == "campaign-schedule-quarterly-production-access-review"


async def test_scheduling_creates_then_updates_and_a_run_records_its_campaign(stack: Stack) -> None:
    service = CampaignService(stack.env.client, stack.store, stack.task_queue)
    margaret = stack.actor("margaret@example.com")
    with pytest.raises(BadInput, match=r"has no \[schedule\] table"):
        await service.schedule(SPEC.split("[schedule]")[0], margaret)
    created = await service.schedule(SPEC, margaret)
    assert (
        not created.updated and created.schedule_id == "campaign-schedule-quarterly-production-access-review"
    )
    berlin = ZoneInfo("Europe/Berlin")
    for when in created.next_runs:
        local = when.astimezone(berlin)
        assert (local.month, local.day, local.hour, local.minute) in {(m, 4, 9, 0) for m in (1, 4, 7, 10)}
    updated = await service.schedule(
        SPEC.replace('catch_up_window = "2d"', 'catch_up_window = "3d"'), margaret
    )
    assert updated.updated
    handle = stack.env.client.get_schedule_handle(created.schedule_id)
    assert (await handle.describe()).schedule.policy.catchup_window == timedelta(days=3)
    try:
        await handle.trigger()  # a run now, as the calendar would start one
        for _ in range(400):
            campaigns = stack.store.list_campaigns()
            if campaigns and campaigns[0].status is CampaignStatus.OPEN:
                break
            await asyncio.sleep(0.05)
        record = campaigns[0]
        assert record.status is CampaignStatus.OPEN and record.nominal_time is not None
        assert record.id.startswith("cmp-quarterly-production-access-review-")
        assert record.workflow_id.startswith(created.schedule_id)
        kinds = [e.kind for e in stack.store.ledger_entries(subject=record.id)]
        assert kinds[:2] == ["campaign.launched", "campaign.snapshot"]
        await service.cancel(record.id, margaret, "test over")
    finally:
        await handle.delete()
    scheduled = [e for e in stack.store.ledger_entries(subject=created.schedule_id)]
    assert [e.data["updated"] for e in scheduled] == [False, True]
