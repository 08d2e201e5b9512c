"""The grantflow Temporal worker: builds adapters from settings and registers every workflow and activity.

Tests register exactly the same lists through :func:`build_activities`, so what is tested is what runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.access_check import AccessCheckActivities
from activities.channels import ChannelActivities, build_channels
from activities.directory import DirectoryActivities
from activities.gateway import GatewayActivities
from activities.hoop_reviews import HoopReviewActivities, HoopReviewGateway
from activities.identity_sync import IdentitySyncActivities, SyncInput
from activities.notifications import NotificationActivities
from activities.records import RecordActivities
from activities.standing_access import StandingAccessActivities
from domain.policy import PolicySet, load_policies
from examples import POLICIES_FILE
from grantflow.settings import Settings
from integrations.gateway import Gateway
from integrations.notify import Notifier, OutboxNotifier
from integrations.scim import ScimDirectory
from store import Store
from web.links import ReviewLinks
from workflows.access_request import AccessRequestWorkflow
from workflows.hoop_reviews import HoopReviewDiscoveryWorkflow, ensure_hoop_discovery
from workflows.identity_sync import IdentitySyncWorkflow

log = logging.getLogger("grantflow.worker")

WORKFLOWS: Sequence[type] = (AccessRequestWorkflow, IdentitySyncWorkflow, HoopReviewDiscoveryWorkflow)


def build_activities(
    *,
    store: Store,
    gateway: Gateway,
    notifier: Notifier,
    links: ReviewLinks | None,
    scim: ScimDirectory | None = None,
    max_deactivation_share: float = 0.10,
    channels: ChannelActivities | None = None,
    policies: PolicySet | None = None,
) -> list[Callable[..., Any]]:
    """``policies``: what reviews started in hoop are admitted under (without them discovery says so)."""
    records = RecordActivities(store)
    directory = DirectoryActivities(store)
    gateway_activities = GatewayActivities(gateway)
    access_check = AccessCheckActivities(store, gateway)
    notifications = NotificationActivities(notifier, links)
    sync = IdentitySyncActivities(store, scim, max_deactivation_share=max_deactivation_share, gateway=gateway)
    standing = StandingAccessActivities(store, gateway, scim)
    hoop_reviews = HoopReviewActivities(
        gateway if isinstance(gateway, HoopReviewGateway) else None, store, policies
    )
    # Always registered: with no channel configured it presents nowhere, so a request made while another
    # process had channels configured never waits for an activity no worker runs.
    channels = channels or ChannelActivities(slack=None, jira=None, email=None, links=links, store=store)
    return [
        records.record,
        directory.resolve_approvers,
        access_check.check_access,
        gateway_activities.grant,
        gateway_activities.revoke,
        notifications.notify,
        sync.sync_directory,
        sync.apply_in_gateway,
        standing.revoke_membership,
        channels.present,
        hoop_reviews.list_pending,
        hoop_reviews.admit,
        hoop_reviews.read,
        hoop_reviews.approve,
        hoop_reviews.reject,
    ]


async def connect_client(settings: Settings) -> Client:
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        api_key=api_key,
        tls=bool(api_key) or settings.temporal_tls,
    )


def build_worker(
    client: Client, task_queue: str, activities: list[Callable[..., Any]], **options: Any
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities,
        activity_executor=ThreadPoolExecutor(max_workers=16),
        **options,
    )


def review_links(settings: Settings) -> ReviewLinks | None:
    if settings.review_link_secret is None:
        return None
    return ReviewLinks(
        settings.review_link_secret.get_secret_value(),
        settings.effective_public_url,
        settings.review_link_ttl,
    )


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """The store; ``migrate=False`` for read-only uses (an auditor's ``ledger verify`` needs no DDL)."""
    store = Store(
        settings.effective_database_url,
        ledger_key=settings.require_secret("ledger_key").encode(),
        anchor_path=settings.effective_anchor_path,
    )
    if migrate:
        store.migrate()
    return store


def build_scim(settings: Settings) -> ScimDirectory | None:
    if not settings.scim_url:
        return None
    return ScimDirectory.connect(settings.scim_url, settings.require_secret("scim_token"))


SYNC_SCHEDULES = {"identity-sync-incremental": False, "identity-sync-full": True}


async def ensure_sync_schedules(client: Client, settings: Settings) -> None:
    """Create or update the identity-sync schedules (idempotent; every worker may call it at start)."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleUpdate,
        ScheduleUpdateInput,
    )
    from temporalio.client import ScheduleOverlapPolicy as Overlap

    for schedule_id, full in SYNC_SCHEDULES.items():
        every = settings.full_sync_interval if full else settings.sync_interval
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                IdentitySyncWorkflow.run,
                SyncInput(sync_id="", full=full),
                id=schedule_id,
                task_queue=settings.task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
            # A missed run is made up once, not once per missed interval; overlapping runs are skipped.
            policy=SchedulePolicy(overlap=Overlap.SKIP, catchup_window=min(every, timedelta(hours=1))),
        )
        try:
            await client.create_schedule(schedule_id, schedule)
        except ScheduleAlreadyRunningError:

            def replace(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(replace)


def build_gateway(settings: Settings) -> Gateway:
    from integrations.hoop import HoopGateway

    if not settings.hoop_url:
        raise ValueError("GRANTFLOW_HOOP_URL is not set")
    return HoopGateway(base_url=settings.hoop_url, api_key=settings.require_secret("hoop_api_key"))


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Run the worker until ``stop`` is set; used by ``grantflow worker`` and ``grantflow dev``."""
    store = open_store(settings)
    if not settings.scim_url and settings.organisation_file is not None:
        # Without an identity provider the directory is the organisation file, reloaded at every start.
        from domain.identity import load_organisation

        store.replace_directory(load_organisation(settings.organisation_file).people)
    gateway = build_gateway(settings)
    client = await connect_client(settings)
    scim = build_scim(settings)
    channels = build_channels(settings, links=review_links(settings), store=store)
    activities = build_activities(
        store=store,
        gateway=gateway,
        notifier=OutboxNotifier(settings.state_dir / "outbox.jsonl"),
        links=review_links(settings),
        scim=scim,
        max_deactivation_share=settings.sync_max_deactivation_share,
        channels=channels,
        policies=load_policies(settings.policies_file or POLICIES_FILE),
    )
    if scim is not None:
        await ensure_sync_schedules(client, settings)
    if settings.hoop_url:
        await ensure_hoop_discovery(client, settings)
    worker = build_worker(client, settings.task_queue, activities)
    log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
    await gateway.aclose()
    await channels.aclose()
    if scim is not None:
        await scim.aclose()
    store.close()
