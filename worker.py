"""The grantflow Temporal worker: builds adapters from settings and registers every workflow and activity.

Tests register exactly the same lists through :func:`build_activities`, so what is tested is what runs.
The wiring lives here, not in the activities: :func:`build_channels` and :func:`build_notifier` read the
settings and hand the activities the clients they use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import jinja2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jira import JIRA
from temporalio.client import Client
from temporalio.worker import Worker

from activities.access_check import AccessCheckActivities
from activities.campaign_triggers import CampaignTriggerActivities
from activities.campaigns import CampaignActivities
from activities.channels import ChannelActivities
from activities.directory import DirectoryActivities
from activities.gateway import GatewayActivities
from activities.hoop_reviews import HoopReviewActivities, HoopReviewGateway
from activities.identity_sync import IdentitySyncActivities
from activities.jira_channel import LazyJira
from activities.notifications import NotificationActivities
from activities.records import LedgerAnchorActivities, RecordActivities
from activities.standing_access import StandingAccessActivities
from configuration.policies import configured_policies
from configuration.settings import Settings, SettingsError
from configuration.temporal import connect_client, metrics_runtime
from domain.directory_sync import SyncInput
from domain.identity import Person
from domain.policy import PolicySet
from domain.review_links import ReviewLinks
from integrations.campaign_sources import HoopScimSources
from integrations.email import EmailSender
from integrations.gateway import Gateway
from integrations.jira_tickets import JiraTickets, build_jira
from integrations.metrics import METRICS, MetricsServer
from integrations.notify import ChannelNotifier, Notifier, Notifiers, OutboxNotifier
from integrations.scim import ScimDirectory
from integrations.vendor_setup import require_channels_set_up, slack_from_settings
from store import Store
from store.evidence_bundle import BundleError, load_private_key
from store.opening import open_current_store
from workflows.access_request import AccessRequestWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.hoop_reviews import HoopReviewDiscoveryWorkflow, ensure_hoop_discovery
from workflows.identity_sync import IdentitySyncWorkflow
from workflows.ledger_anchor import LedgerAnchorWorkflow, ensure_ledger_anchoring

log = logging.getLogger("grantflow.worker")

WORKFLOWS: Sequence[type] = (
    AccessRequestWorkflow,
    CampaignWorkflow,
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
    evidence_key: Ed25519PrivateKey | None = None,
    own_key_name: str = "grantflow",
) -> list[Callable[..., Any]]:
    """``policies``: what reviews started in hoop are admitted under (without them discovery says so)."""
    records = RecordActivities(store)
    ledger_anchor = LedgerAnchorActivities(store, store.shared_anchor)
    directory = DirectoryActivities(store)
    gateway_activities = GatewayActivities(gateway)
    access_check = AccessCheckActivities(store, gateway)
    notifications = NotificationActivities(notifier, links)
    sync = IdentitySyncActivities(store, scim, max_deactivation_share=max_deactivation_share, gateway=gateway)
    campaign_triggers = CampaignTriggerActivities(store)
    standing = StandingAccessActivities(store, gateway, scim)
    campaigns = CampaignActivities(
        store,
        HoopScimSources(gateway, scim, excluded_identities=(own_key_name,)),
        standing,
        notifier,
        links,
        evidence_key=evidence_key,
        gateway=gateway,
        tickets=channels.tickets if channels is not None else None,
        slack=channels.slack if channels is not None else None,
    )
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
        campaigns.register,
        campaigns.snapshot,
        campaigns.open_stage,
        campaigns.move_deadline,
        campaigns.record_refusal,
        campaigns.close_stage,
        campaigns.tell_reviewers,
        campaigns.refresh_digests,
        campaigns.escalate,
        campaigns.tell_delegates,
        campaigns.close_digests,
        campaigns.tell_outcomes,
        campaigns.settle_partition,
        campaigns.apply_partition,
        campaigns.follow_directory,
        campaign_triggers.fire,
        campaigns.evidence,
        campaigns.finish,
    ]


STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT = timedelta(seconds=2)
"""How long a workflow task waits on the sticky queue of the worker that last ran the workflow before
Temporal hands it to any worker. The SDK's default (10 s) delays a timer that fires while that worker is
down — a grant's expiry — by that much; 2 s bounds the delay and is still ample for a live worker."""


MAX_CONCURRENT_WORKFLOW_TASKS = 32
"""Workflow tasks one worker runs at once. The SDK's default (100 slots, each with its own thread) lets a
worker that has just started take a hundred tasks together — after a crash, every open request's history
is replayed at once — and, as workflow code holds the GIL, each of them takes a hundredth of the process:
on a 2-core machine tasks ran 9-22 s, past Temporal's 10 s workflow-task timeout, and were retried over
and over (the worker-crashes scenario, ``tests/reliability/test_worker_crashes.py``). A task not yet taken
waits on its queue, where no timeout runs. Too few slots cost throughput instead: a slot is held while the
task's completion goes to the server, so in steady state they wait on the network, not the CPU — with 8,
1,000 grants approved at 8 a second saw approval → grant p50 6.3 s instead of 0.4 s (``python -m bench
jit``, 2026-12-07). 32 keeps a restart's tasks to about a third of the default's time each and leaves
steady-state throughput to the server."""


MAX_CACHED_WORKFLOWS: int = Settings.model_fields["worker_cached_workflows"].default
"""Workflows one worker keeps in memory between their tasks (``GRANTFLOW_WORKER_CACHED_WORKFLOWS``). A
workflow not in this cache is rebuilt by replaying its whole history for its next task or query, and takes
another's place. The SDK's default (1,000) is below what grantflow keeps open — every waiting or active
request, every campaign's review tasks — and past it each approval or expiry evicted a workflow that was
about to need its own: with 1,000 grants open, approval → grant visible was p99 58.6 s; with 2,000 cached,
1.03 s (``python -m bench jit --grants 1000``, 2026-12-07)."""


def build_worker(
    client: Client, task_queue: str, activities: list[Callable[..., Any]], **options: Any
) -> Worker:
    options.setdefault("sticky_queue_schedule_to_start_timeout", STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT)
    options.setdefault("max_concurrent_workflow_tasks", MAX_CONCURRENT_WORKFLOW_TASKS)
    options.setdefault("max_cached_workflows", MAX_CACHED_WORKFLOWS)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities,
        activity_executor=ThreadPoolExecutor(max_workers=16),
        **options,
    )


GRACEFUL_SHUTDOWN = timedelta(seconds=30)
"""How long a stopping worker lets its running activities finish (a revocation half-way through its
gateway calls) before they are cancelled; a worker that was never given this cancels them at once."""

SERVER_CHECK_INTERVAL = 0.5
"""Seconds between the worker's health checks of the Temporal frontend while it runs."""


class ServerWatch:
    """Tells when the Temporal server answers again after it could not be reached.

    Why this exists: the SDK retries a failed task poll with a backoff that doubles up to 10 s and cannot
    be configured (sdk-core ``client/src/retry.rs``, ``task_poll_retry_policy``: 200 ms, x2, at most
    10 s). After an outage of ten seconds or more, a worker's pollers may sleep up to 10 s more once the
    server is back, and every expiry that fell due in the outage is late by that much on top. The health
    check here is one cheap RPC without retries, so the worker learns within ``interval`` that the server
    is back and starts fresh pollers (:func:`poll_until_stopped`)."""

    def __init__(self, client: Client, interval: float = SERVER_CHECK_INTERVAL) -> None:
        self._client = client
        self._interval = interval

    async def back_after_outage(self) -> float:
        """Wait until the server has failed a health check and then passed one; the outage's seconds."""
        down_since: float | None = None
        while True:
            healthy = await self._healthy()
            now = time.monotonic()
            if not healthy and down_since is None:
                down_since = now
                log.warning("Temporal cannot be reached: the worker waits for it to answer again")
            elif healthy and down_since is not None:
                return now - down_since
            await asyncio.sleep(self._interval)

    async def _healthy(self) -> bool:
        try:
            timeout = timedelta(seconds=max(self._interval, 1.0))
            return await self._client.service_client.check_health(timeout=timeout)
        except Exception:  # unreachable, refusing, or not serving yet: all mean "not back"
            return False


async def poll_until_stopped(
    client: Client,
    reconnect: Callable[[], Awaitable[Client]],
    worker_on: Callable[[Client], Worker],
    stop: asyncio.Event,
    *,
    watch_interval: float = SERVER_CHECK_INTERVAL,
) -> None:
    """Run a worker on ``client`` until ``stop`` is set; whenever the Temporal server comes back after an
    outage (:class:`ServerWatch`), start a worker with fresh pollers on a new connection (the SDK allows
    one worker per task queue per client) and retire the old one, which finishes the activities it is
    running. A worker that fails on its own is an error that stops the process, as before."""
    worker = worker_on(client)
    running = asyncio.create_task(worker.run(), name="worker")
    retiring: set[asyncio.Task[None]] = set()
    try:
        while True:
            watch = asyncio.create_task(ServerWatch(client, watch_interval).back_after_outage())
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({watch, stopped, running}, return_when=asyncio.FIRST_COMPLETED)
            for task in (watch, stopped):
                task.cancel()
            if running in done:
                running.result()  # raises what stopped the worker
                raise RuntimeError("the worker stopped polling on its own")
            if stopped in done:
                return
            outage = watch.result()
            try:
                fresh_client = await reconnect()
            except Exception as exc:  # flapping: keep the old worker, whose pollers will retry on their own
                log.warning(
                    "Temporal answered after %.1f s down but could not be reconnected: %s", outage, exc
                )
                continue
            log.warning("Temporal answered again after %.1f s down: polling with fresh pollers", outage)
            fresh = worker_on(fresh_client)
            fresh_running = asyncio.create_task(fresh.run(), name="worker")
            retiring.add(asyncio.create_task(_retire(worker, running)))
            client, worker, running = fresh_client, fresh, fresh_running
    finally:
        if not running.done():
            await worker.shutdown()
        await asyncio.gather(*retiring, return_exceptions=True)


async def _retire(worker: Worker, running: asyncio.Task[None]) -> None:
    """Stop a worker replaced after an outage: its activities finish and report, its pollers end."""
    try:
        await worker.shutdown()
        await running
    except Exception:
        log.exception("the worker replaced after the outage failed while stopping")


def evidence_signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The key campaign evidence bundles are signed with; None (bundles not written, the ledger says why)
    when unset. An unreadable key stops the worker naming the setting."""
    if settings.evidence_signing_key is None:
        return None
    try:
        return load_private_key(settings.evidence_signing_key.get_secret_value())
    except BundleError as exc:
        raise SettingsError(f"GRANTFLOW_EVIDENCE_SIGNING_KEY: {exc}") from None


def review_links(settings: Settings) -> ReviewLinks | None:
    if settings.review_link_secret is None:
        return None
    return ReviewLinks(
        settings.review_link_secret.get_secret_value(),
        settings.effective_public_url,
        settings.review_link_ttl,
    )


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


def _transition_to(transitions: dict[str, str], status: str, default: str) -> str:
    """The name of the configured transition leading to ``status`` (case-insensitive), else ``default``."""
    for name, target in transitions.items():
        if target.lower() == status.lower():
            return name
    return default


def _configured(transitions: dict[str, str], name: str) -> str:
    for configured in transitions:
        if configured.lower() == name.lower():
            return configured
    raise SettingsError(
        f"GRANTFLOW_JIRA_TRANSITIONS has no {name!r} transition (configured: {', '.join(transitions)})"
    )


def build_channels(settings: Settings, *, links: ReviewLinks | None, store: Store) -> ChannelActivities:
    """The channel activities with a client for each configured channel: Slack when a bot token is set,
    Jira when ``jira_url`` is (connected on first use), email when ``smtp_host`` is. Close with
    :meth:`ChannelActivities.aclose`. Raises ``SettingsError`` for an incomplete configuration."""
    jira: LazyJira | None = None
    transitions = dict(settings.jira_transitions)
    approve = _transition_to(transitions, settings.jira_approve_status, "Approve")
    deny = _transition_to(transitions, settings.jira_deny_status, "Deny")
    close, cancel = "Close", "Cancel"
    if settings.jira_url:
        token = settings.require_secret("jira_api_token")
        if not settings.jira_email:
            raise SettingsError("GRANTFLOW_JIRA_EMAIL is not set (the Jira API user, required with jira_url)")
        approve, deny, close, cancel = (_configured(transitions, n) for n in (approve, deny, close, cancel))
        url, user = settings.jira_url, settings.jira_email

        def tickets(client: JIRA) -> JiraTickets:
            return JiraTickets(
                client,
                project_key=settings.jira_project,
                issue_type=settings.jira_issue_type,
                transition_names=transitions,
                account_ids=settings.jira_account_ids,
                adopted_projects=[settings.jira_intake_project],
            )

        jira = LazyJira(lambda: build_jira(url, user, token), tickets)

    email: EmailSender | None = None
    if settings.smtp_host:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password is not None else None
        email = EmailSender(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            username=settings.smtp_username or None,
            password=password,
            starttls=settings.smtp_starttls,
        )

    try:
        return ChannelActivities(
            slack=slack_from_settings(settings),
            jira=jira,
            email=email,
            links=links,
            store=store,
            approve_transition=approve,
            deny_transition=deny,
            close_transition=close,
            cancel_transition=cancel,
            ticket_labels=settings.jira_labels,
            ticket_fields=settings.jira_fields,
        )
    except jinja2.TemplateSyntaxError as exc:
        raise SettingsError(f"GRANTFLOW_JIRA_LABELS or GRANTFLOW_JIRA_FIELDS: {exc.message}") from exc


def build_notifier(settings: Settings, channels: ChannelActivities) -> Notifier:
    """Notices through the channels ``channels`` was built with (its Slack, email and Jira clients) and
    the operators' channel and address; ``grantflow dev`` (``settings.dev_outbox``) also writes them to its
    outbox. Review links are written to disk nowhere else. ``SettingsError`` for an operator channel or
    address without the channel it needs."""
    if settings.operator_slack_channel and channels.slack is None:
        raise SettingsError("GRANTFLOW_OPERATOR_SLACK_CHANNEL needs Slack (GRANTFLOW_SLACK_BOT_TOKEN)")
    if settings.operator_email and channels.email is None:
        raise SettingsError("GRANTFLOW_OPERATOR_EMAIL needs email (GRANTFLOW_SMTP_HOST)")
    notifier: Notifier = ChannelNotifier(
        slack=channels.slack,
        email=channels.email,
        jira=channels.tickets,
        operator_slack_channel=settings.operator_slack_channel,
        operator_email=settings.operator_email,
    )
    if settings.dev_outbox:
        return Notifiers(OutboxNotifier(settings.state_dir / "outbox.jsonl"), notifier)
    if not settings.configured_channels:
        logging.getLogger("grantflow.notify").warning(
            "no channel is configured (GRANTFLOW_SLACK_BOT_TOKEN, GRANTFLOW_SMTP_HOST, GRANTFLOW_JIRA_URL): "
            "approvers hear of requests only through the API, and escalations reach nobody"
        )
    return notifier


def serve_worker_metrics(settings: Settings) -> MetricsServer | None:
    """grantflow's metrics on ``GRANTFLOW_METRICS_PORT`` (all interfaces), when set."""
    if settings.metrics_port is None:
        return None
    try:
        server = MetricsServer(settings.metrics_port)
    except OSError as exc:
        where = f"GRANTFLOW_METRICS_PORT={settings.metrics_port}"
        raise SettingsError(f"{where}: cannot listen ({exc.strerror or exc})") from None
    log.info("worker metrics on :%s/metrics", server.port)
    return server


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Run the worker until ``stop`` is set; used by ``grantflow worker`` and ``grantflow dev``.

    Start-up checks everything it can before polling, and fails with :class:`SettingsError` or
    :class:`ServiceUnreachable` naming the setting: configuration first, then the database (its schema
    must be current: the worker never migrates), then Temporal."""
    policies = configured_policies(settings)
    people = None
    if not settings.scim_url and settings.organisation_file is not None:
        # Without an identity provider the directory is the organisation file, reloaded at every start.
        people = load_organisation_file(settings)
    gateway = build_gateway(settings)
    store = await asyncio.to_thread(open_current_store, settings)
    store.observe_ledger(METRICS.observe_entry)
    if people is not None:
        store.replace_directory(people)
    client = await connect_client(settings, runtime=metrics_runtime(settings))
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
        evidence_key=evidence_signing_key(settings),
        own_key_name=settings.hoop_api_key_name,
    )
    if scim is not None:
        await ensure_sync_schedules(client, settings)
    if settings.hoop_url:
        await ensure_hoop_discovery(client, settings)
    if store.shared_anchor is not None:
        await ensure_ledger_anchoring(client, settings)
    runtime = metrics_runtime(settings)

    def worker_on(connected: Client) -> Worker:
        return build_worker(
            connected,
            settings.task_queue,
            activities,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            max_cached_workflows=settings.worker_cached_workflows,
        )

    metrics = serve_worker_metrics(settings)
    log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
    try:
        await poll_until_stopped(client, lambda: connect_client(settings, runtime=runtime), worker_on, stop)
    finally:
        if metrics is not None:
            metrics.close()
    await gateway.aclose()
    await channels.aclose()
    if scim is not None:
        await scim.aclose()
    store.close()
