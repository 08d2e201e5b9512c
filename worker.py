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
from activities.notifications import NotificationActivities, build_notifier
from activities.records import LedgerAnchorActivities, RecordActivities
from activities.standing_access import StandingAccessActivities
from config.settings import ServiceUnreachable, Settings, SettingsError
from domain.identity import Person
from domain.policy import PolicySet, load_policies
from domain.review_links import ReviewLinks
from integrations.gateway import Gateway
from integrations.notify import Notifier
from integrations.scim import ScimDirectory
from integrations.vendor_setup import require_channels_set_up
from store import Store
from store.anchors import shared_anchor_from_settings
from workflows.access_request import AccessRequestWorkflow
from workflows.hoop_reviews import HoopReviewDiscoveryWorkflow, ensure_hoop_discovery
from workflows.identity_sync import IdentitySyncWorkflow
from workflows.ledger_anchor import LedgerAnchorWorkflow, ensure_ledger_anchoring

log = logging.getLogger("grantflow.worker")

WORKFLOWS: Sequence[type] = (
    AccessRequestWorkflow,
    IdentitySyncWorkflow,
    HoopReviewDiscoveryWorkflow,
    LedgerAnchorWorkflow,
)


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
    ledger_anchor = LedgerAnchorActivities(store, store.shared_anchor)
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
        ledger_anchor.anchor_head,
        ledger_anchor.alert,
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
    """A client of the configured Temporal; :class:`ServiceUnreachable` naming the setting when the
    frontend cannot be reached (the SDK's own error is a RuntimeError with a gRPC dump)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            api_key=api_key,
            tls=bool(api_key) or settings.temporal_tls,
        )
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ServiceUnreachable(
            f"GRANTFLOW_TEMPORAL_ADDRESS={settings.temporal_address}: Temporal cannot be reached ({reason})"
        ) from None


STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT = timedelta(seconds=2)
"""How long a workflow task waits on the sticky queue of the worker that last ran the workflow before
Temporal hands it to any worker. The SDK's default (10 s) delays a timer that fires while that worker is
down — a grant's expiry — by that much; 2 s bounds the delay and is still ample for a live worker."""


def build_worker(
    client: Client, task_queue: str, activities: list[Callable[..., Any]], **options: Any
) -> Worker:
    options.setdefault("sticky_queue_schedule_to_start_timeout", STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT)
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
    """The store; ``migrate=False`` for read-only uses (an auditor's ``ledger verify`` needs no DDL).
    Only ``grantflow dev`` migrates here: deployments run ``grantflow migrate``, and their workers and
    servers use :func:`open_current_store`."""
    store = Store(
        settings.effective_database_url,
        ledger_key=settings.require_secret("ledger_key").encode(),
        # One shared anchor when configured (production); else the per-process file (dev, tests).
        anchor_path=None if settings.ledger_anchor else settings.effective_anchor_path,
        shared_anchor=shared_anchor_from_settings(settings),
    )
    if migrate:
        store.migrate()
    return store


def database_location(settings: Settings) -> str:
    """The database URL without its credentials, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(settings.effective_database_url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by whatever parses it next
        return "(unparsable URL)"


def open_current_store(settings: Settings) -> Store:
    """The store of a worker or web server, whose schema must already be at this release's revision.

    Never migrates (``grantflow migrate`` is the only writer of the schema, run once per release while
    old processes may still be running). :class:`ServiceUnreachable` when the database cannot be reached,
    :class:`SettingsError` when its schema is not current (saying to run ``grantflow migrate``)."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from store.migration import SchemaNotCurrent

    where = f"GRANTFLOW_DATABASE_URL={database_location(settings)}"
    try:
        store = open_store(settings, migrate=False)
    except ArgumentError as exc:
        raise SettingsError(f"{where}: not a database URL ({exc})") from None
    try:
        store.check_schema()
    except SchemaNotCurrent as exc:
        store.close()
        raise SettingsError(f"{where}: {exc}") from None
    except SQLAlchemyError as exc:
        store.close()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ServiceUnreachable(f"{where}: the database cannot be reached ({reason})") from None
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
        raise SettingsError("GRANTFLOW_HOOP_URL is not set: the worker grants and revokes in hoop")
    return HoopGateway(base_url=settings.hoop_url, api_key=settings.require_secret("hoop_api_key"))


def worker_policies(settings: Settings) -> PolicySet:
    """The configured policies; never the examples (``grantflow dev`` configures those explicitly)."""
    from domain.policy import PolicyError

    if settings.policies_file is None:
        raise SettingsError("GRANTFLOW_POLICIES_FILE is not set: the access policies file is required")
    try:
        return load_policies(settings.policies_file)
    except PolicyError as exc:
        raise SettingsError(f"GRANTFLOW_POLICIES_FILE: {exc}") from None


def load_organisation_file(settings: Settings) -> list[Person]:
    """The people of ``GRANTFLOW_ORGANISATION_FILE``; :class:`SettingsError` naming it if unusable."""
    from domain.identity import load_organisation

    assert settings.organisation_file is not None
    where = f"GRANTFLOW_ORGANISATION_FILE={settings.organisation_file}"
    try:
        return list(load_organisation(settings.organisation_file).people)
    except FileNotFoundError:
        raise SettingsError(f"{where}: the organisation file does not exist") from None
    except (OSError, ValueError) as exc:  # TOML and validation errors are ValueErrors
        raise SettingsError(f"{where}: {exc}") from None


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Run the worker until ``stop`` is set; used by ``grantflow worker`` and ``grantflow dev``.

    Start-up checks everything it can before polling, and fails with :class:`SettingsError` or
    :class:`ServiceUnreachable` naming the setting: configuration first, then the database (its schema
    must be current: the worker never migrates), then Temporal."""
    policies = worker_policies(settings)
    people = None
    if not settings.scim_url and settings.organisation_file is not None:
        # Without an identity provider the directory is the organisation file, reloaded at every start.
        people = load_organisation_file(settings)
    gateway = build_gateway(settings)
    store = await asyncio.to_thread(open_current_store, settings)
    if people is not None:
        store.replace_directory(people)
    client = await connect_client(settings)
    scim = build_scim(settings)
    channels = build_channels(settings, links=review_links(settings), store=store)
    await require_channels_set_up(settings)  # a missing Slack scope or Jira transition stops us here
    activities = build_activities(
        store=store,
        gateway=gateway,
        notifier=build_notifier(settings, channels),
        links=review_links(settings),
        scim=scim,
        max_deactivation_share=settings.sync_max_deactivation_share,
        channels=channels,
        policies=policies,
    )
    if scim is not None:
        await ensure_sync_schedules(client, settings)
    if settings.hoop_url:
        await ensure_hoop_discovery(client, settings)
    if store.shared_anchor is not None:
        await ensure_ledger_anchoring(client, settings)
    worker = build_worker(client, settings.task_queue, activities)
    log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
    await gateway.aclose()
    await channels.aclose()
    if scim is not None:
        await scim.aclose()
    store.close()
