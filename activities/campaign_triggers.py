"""Campaigns triggered by the identity sync: a mover (manager or department change) opens, for every
registered mover-triggered spec that listens to that change, one small campaign over the mover's access,
reviewed by their new manager (``domain/campaign_triggers.py`` derives its spec and id).

Run by ``IdentitySyncWorkflow`` after every applied sync. Each firing is recorded first (store and ledger,
``campaign.triggered`` with the change), then its campaign is recorded and its workflow started under a
workflow id derived from spec, person and change, with Temporal's ``REJECT_DUPLICATE`` reuse policy: a retry
of this activity, of the sync, or a second sync that sees the same change finds the firing recorded and the
workflow started, and starts nothing new. A start that fails (Temporal unreachable, the store busy) leaves its
firing ``pending`` with the error, in the ledger as ``campaign.trigger_failed``, and the activity goes on
with the others; every later sync starts the pending ones first. The sync itself never fails for it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.campaign_spec import CampaignSpecError, parse_campaign_spec
from domain.campaign_state import CampaignRecord, CampaignStatus
from domain.campaign_triggers import (
    FiringStatus,
    TriggerFiring,
    launch_spec_toml,
    moves_of,
    triggered_campaign_id,
)
from domain.directory_sync import DepartmentChange, ManagerChange
from store import Store
from store.campaigns import spec_hash

log = logging.getLogger("grantflow.campaigns")

CAMPAIGN_WORKFLOW = "CampaignWorkflow"
"""``workflows/campaign.py``'s workflow, started by name (activities do not import workflows)."""
START_TIMEOUT = timedelta(seconds=15)
"""One start call may take this long; a Temporal that does not answer leaves the firing pending."""
RETRY_PAGE = 100
"""Pending firings one sync starts at most; the rest wait for the next sync."""


class TriggerInput(BaseModel):
    sync_id: str
    task_queue: str = Field(description="where the campaigns' workflows run")
    movers: list[ManagerChange] = Field(default_factory=list)
    department_changes: list[DepartmentChange] = Field(default_factory=list)


class TriggerResult(BaseModel):
    fired: list[str] = Field(default_factory=list, description="campaigns this sync's movers fired")
    started: list[str] = Field(default_factory=list, description="campaigns whose workflow started now")
    failed: dict[str, str] = Field(
        default_factory=dict,
        description="campaign id → why it did not start (pending: the next sync retries)",
    )


class CampaignTriggerActivities:
    def __init__(self, store: Store, client: Client | None = None) -> None:
        self._store = store
        self._client = client  # the worker's; None: the activity's own (``activity.client()``)

    @activity.defn(name="campaign_fire_triggers")
    async def fire(self, inp: TriggerInput) -> TriggerResult:
        """Record the firings of this sync's movers, then start every pending one (earlier failures too)."""
        result = TriggerResult()
        moves = moves_of(inp.movers, inp.department_changes)
        triggers = await asyncio.to_thread(self._store.campaign_triggers, "mover") if moves else []
        now = datetime.now(UTC)
        for trigger in triggers:
            try:
                spec = parse_campaign_spec(trigger.spec_toml, trigger.trigger_id)
            except CampaignSpecError as exc:  # registered under an older grantflow: say so, fire the rest
                log.error("campaign trigger %s cannot be used: %s", trigger.trigger_id, exc)
                continue
            assert spec.trigger is not None  # registration refuses a spec without one
            for move in moves:
                if not move.counts_for(spec.trigger):
                    continue
                change = move.change(spec.trigger)
                campaign_id = triggered_campaign_id(spec.name, move.person.id, change)
                firing = await asyncio.to_thread(
                    self._store.record_trigger_firing,
                    TriggerFiring(
                        campaign_id=campaign_id,
                        trigger_id=trigger.trigger_id,
                        person_id=move.person.id,
                        change=change,
                        spec_toml=launch_spec_toml(trigger.spec_toml, move, change),
                        sync_id=inp.sync_id,
                        status=FiringStatus.PENDING,
                        fired_at=now,
                        updated_at=now,
                    ),
                )
                await asyncio.to_thread(
                    self._store.append_ledger,
                    kind="campaign.triggered",
                    subject=campaign_id,
                    actor="identity sync",
                    channel="system",
                    data={
                        "trigger": trigger.trigger_id,
                        "spec": spec.name,
                        "spec_sha256": trigger.spec_sha256,
                        "event": "mover",
                        "person": move.person.email,
                        "person_id": move.person.id,
                        "change": change,
                        "sync_id": firing.sync_id,
                    },
                    idempotency_key=f"{campaign_id}:triggered",
                )
                result.fired.append(campaign_id)
        pending = await asyncio.to_thread(self._store.pending_trigger_firings, RETRY_PAGE)
        for firing in pending:
            activity.heartbeat({"starting": firing.campaign_id})
            try:
                await self._start(firing, inp.task_queue)
            except Exception as exc:
                await self._failed(firing, exc)
                result.failed[firing.campaign_id] = str(exc) or type(exc).__name__
                continue
            result.started.append(firing.campaign_id)
        return result

    async def _start(self, firing: TriggerFiring, task_queue: str) -> None:
        spec = parse_campaign_spec(firing.spec_toml, f"campaign {firing.campaign_id}")
        now = datetime.now(UTC)
        record = CampaignRecord(
            id=firing.campaign_id,
            name=spec.name,
            owner=spec.owner,
            spec_toml=firing.spec_toml,
            spec_sha256=spec_hash(firing.spec_toml),
            status=CampaignStatus.SNAPSHOTTING,
            launched_at=now,
            workflow_id=f"campaign-{firing.campaign_id}",
            updated_at=now,
        )
        record = await asyncio.to_thread(self._store.create_campaign, record)  # the first one on a retry
        await asyncio.to_thread(
            self._store.append_ledger,
            kind="campaign.launched",
            subject=firing.campaign_id,
            actor="identity sync",
            channel="system",
            data={"name": spec.name, "spec_sha256": record.spec_sha256, "trigger": firing.trigger_id},
            idempotency_key=f"{firing.campaign_id}:launched",
        )
        client = self._client or activity.client()
        try:
            await client.start_workflow(
                CAMPAIGN_WORKFLOW,
                {"campaign_id": firing.campaign_id, "spec": spec.model_dump(mode="json")},
                id=record.workflow_id,
                task_queue=task_queue,
                # One campaign per event, ever: not a second one once the first has finished either.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                rpc_timeout=START_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            pass  # an earlier attempt started it and did not live to record so
        await asyncio.to_thread(self._store.trigger_firing_started, firing.campaign_id, datetime.now(UTC))

    async def _failed(self, firing: TriggerFiring, exc: Exception) -> None:
        error = str(exc) or type(exc).__name__
        log.error(
            "triggered campaign %s did not start (retried by the next sync): %s", firing.campaign_id, error
        )
        try:
            await asyncio.to_thread(
                self._store.trigger_firing_failed, firing.campaign_id, error, datetime.now(UTC)
            )
            await asyncio.to_thread(
                self._store.append_ledger,
                kind="campaign.trigger_failed",
                subject=firing.campaign_id,
                actor="identity sync",
                channel="system",
                data={"trigger": firing.trigger_id, "error": error, "attempt": firing.attempts + 1},
                idempotency_key=f"{firing.campaign_id}:trigger_failed:{firing.attempts + 1}",
            )
        except Exception as store_exc:
            log.error("triggered campaign %s: failure not recorded: %s", firing.campaign_id, store_exc)
