"""IdentitySyncWorkflow: one identity sync, then every running request concerned is told at once.

Run by a Temporal Schedule (incremental often, full less often — only a full listing sees deletions)
and on demand by ``grantflow sync``. The sync itself is one activity that applies all or nothing; the
workflow then signals each affected ``AccessRequestWorkflow`` (a leaver's grants end with
``end_reason=leaver``, their pending requests are cancelled, their votes withdrawn; joiners become
eligible) while, at the same time, the gateway is told: leavers' hoop users set inactive and all their
open sessions killed, re-activated people set active again (``apply_in_gateway``). Nothing reaches the
gateway unless the sync was applied: a dry run or a sync the safety guard stopped changes nothing there.
A gateway that still fails after ``GATEWAY_RETRY`` is escalated in the ledger and reported, without
holding up the requests' signals. Open campaigns follow the changes too (``campaign_follow_directory``:
items about leavers closed, a leaver's items and a mover's manager-reviewed items re-routed). Nothing waits
for a timer.

Campaigns triggered by movers (``[trigger] on = "mover"`` specs) are fired after every applied sync
(``campaign_fire_triggers``): one campaign per spec, person and change, started once however often the sync
is retried; a campaign that could not start is retried by the next sync, and the sync never fails for it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.campaign_base import DirectoryChangesInput
    from activities.campaign_triggers import CampaignTriggerActivities, TriggerInput
    from activities.campaigns import CampaignActivities
    from activities.identity_sync import GatewayChangesInput, IdentitySyncActivities
    from domain.directory_sync import SyncInput, SyncReport
    from workflows.access_request import AccessRequestWorkflow

# A failing provider is retried a few times; the next scheduled run tries again anyway.
SYNC_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=5
)

# Leavers must lose hoop access now: retried briskly, then escalated (the activity writes the alert).
GATEWAY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20), maximum_attempts=8
)

SYNC_WORKFLOW_ID = "identity-sync"
CAMPAIGN_TRIGGERS_PATCH = "campaign-triggers"
"""Syncs recorded before triggered campaigns existed replay without the trigger activity."""


@workflow.defn
class IdentitySyncWorkflow:
    @workflow.run
    async def run(self, inp: SyncInput) -> SyncReport:
        if not inp.sync_id:
            inp = inp.model_copy(update={"sync_id": workflow.info().workflow_id})
        report = await workflow.execute_activity_method(
            IdentitySyncActivities.sync_directory,
            inp,
            start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=SYNC_RETRY,
        )
        if not report.applied:
            return report  # a dry run, or stopped by the guard: nothing is written to the gateway either
        in_gateway = None
        if report.leavers or report.reactivated:
            in_gateway = workflow.start_activity_method(
                IdentitySyncActivities.apply_in_gateway,
                GatewayChangesInput(
                    sync_id=inp.sync_id,
                    leavers=report.leavers,
                    reactivated=report.reactivated,
                    final_attempt=GATEWAY_RETRY.maximum_attempts,
                ),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=GATEWAY_RETRY,
            )
        for signal in report.signals:
            handle = workflow.get_external_workflow_handle_for(AccessRequestWorkflow.run, signal.request_id)
            try:
                if signal.person_left is not None:
                    await handle.signal(AccessRequestWorkflow.person_left, signal.person_left)
                if signal.approvers_changed is not None:
                    await handle.signal(AccessRequestWorkflow.approvers_changed, signal.approvers_changed)
            except FailureError as err:  # the request finished meanwhile: nothing left to tell it
                workflow.logger.info("request %s not signalled: %s", signal.request_id, err)
        if report.leavers or report.movers:
            await self._follow_in_campaigns(inp, report)
        if workflow.patched(CAMPAIGN_TRIGGERS_PATCH):
            await self._fire_campaign_triggers(inp, report)
        if in_gateway is not None:
            try:
                report.gateway = await in_gateway
            except ActivityError as err:  # escalated in the ledger by the activity's last attempt
                report.gateway_error = str(err.cause or err)
                workflow.logger.error(
                    "identity sync %s: gateway not updated: %s", inp.sync_id, report.gateway_error
                )
        return report

    @staticmethod
    async def _fire_campaign_triggers(inp: SyncInput, report: SyncReport) -> None:
        """Movers open their triggered campaigns, and campaigns an earlier sync could not start are started
        now. Starts that fail are recorded by the activity and left pending for the next sync; should the
        activity itself fail (the store unreachable), that is logged and the sync goes on."""
        try:
            fired = await workflow.execute_activity_method(
                CampaignTriggerActivities.fire,
                TriggerInput(
                    sync_id=inp.sync_id,
                    task_queue=workflow.info().task_queue,
                    movers=report.movers,
                    department_changes=report.department_changes,
                ),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=SYNC_RETRY,
            )
        except ActivityError as err:
            workflow.logger.error(
                "identity sync %s: triggered campaigns not started: %s", inp.sync_id, err.cause or err
            )
            report.campaign_trigger_error = str(err.cause or err)
            return
        report.campaigns_triggered = fired.fired
        report.campaigns_not_started = fired.failed

    @staticmethod
    async def _follow_in_campaigns(inp: SyncInput, report: SyncReport) -> None:
        """Open campaigns follow the organisation (re-routing is recorded by the activity). A failure is
        logged and left to the next sync, which sees the same people as left or moved no more: the
        campaign's own deadline still settles every item."""
        try:
            await workflow.execute_activity_method(
                CampaignActivities.follow_directory,
                DirectoryChangesInput(sync_id=inp.sync_id, leavers=report.leavers, movers=report.movers),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=SYNC_RETRY,
            )
        except ActivityError as err:
            workflow.logger.error(
                "identity sync %s: campaigns not updated: %s", inp.sync_id, err.cause or err
            )
