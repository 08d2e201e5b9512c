"""The grantflow Temporal worker: builds adapters from settings and registers every workflow and activity.

Tests register exactly the same lists through :func:`build_activities`, so what is tested is what runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.directory import DirectoryActivities
from activities.gateway import GatewayActivities
from activities.notifications import NotificationActivities
from activities.records import RecordActivities
from grantflow.settings import Settings
from integrations.gateway import Gateway
from integrations.notify import Notifier, OutboxNotifier
from store import Store
from web.links import ReviewLinks
from workflows.access_request import AccessRequestWorkflow

log = logging.getLogger("grantflow.worker")

WORKFLOWS: Sequence[type] = (AccessRequestWorkflow,)


def build_activities(
    *, store: Store, gateway: Gateway, notifier: Notifier, links: ReviewLinks | None
) -> list[Callable[..., Any]]:
    records = RecordActivities(store)
    directory = DirectoryActivities(store)
    gateway_activities = GatewayActivities(gateway)
    notifications = NotificationActivities(notifier, links)
    return [
        records.record,
        directory.resolve_approvers,
        gateway_activities.grant,
        gateway_activities.revoke,
        notifications.notify,
    ]


async def connect_client(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
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


def open_store(settings: Settings) -> Store:
    store = Store(
        settings.effective_database_url,
        ledger_key=settings.require_secret("ledger_key").encode(),
        anchor_path=settings.effective_anchor_path,
    )
    store.migrate()
    return store


def build_gateway(settings: Settings) -> Gateway:
    from integrations.hoop import HoopGateway

    if not settings.hoop_url:
        raise ValueError("GRANTFLOW_HOOP_URL is not set")
    return HoopGateway(base_url=settings.hoop_url, api_key=settings.require_secret("hoop_api_key"))


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Run the worker until ``stop`` is set; used by ``grantflow worker`` and ``grantflow dev``."""
    store = open_store(settings)
    gateway = build_gateway(settings)
    client = await connect_client(settings)
    activities = build_activities(
        store=store,
        gateway=gateway,
        notifier=OutboxNotifier(settings.state_dir / "outbox.jsonl"),
        links=review_links(settings),
    )
    worker = build_worker(client, settings.task_queue, activities)
    log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
    await gateway.aclose()
    store.close()
