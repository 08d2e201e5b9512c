"""A running grantflow for tests: worker with the real activities, store, hoop stand-in, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.channels import ChannelActivities
from configuration.settings import Settings
from domain.identity import Actor, Organisation, PersonRef, load_organisation
from domain.policy import PolicySet, RolePolicy, load_policies
from domain.requests import AccessRequestInput, GatewayTimings, RequestView
from domain.review_links import ReviewLinks
from examples import ORGANISATION_FILE, POLICIES_FILE
from integrations.hoop import HoopGateway
from integrations.notify import Message, Notifiers
from integrations.scim import ScimDirectory
from sandbox.hoop import HoopStandIn
from sandbox.scim import ScimDirectoryServer
from sandbox.seed import GRANTFLOW_GROUP, seed_hoop
from store import Store
from worker import build_activities, build_channels, build_notifier, build_worker
from workflows.access_request import AccessRequestWorkflow

HOOP_KEY = "hpk_test_grantflow"
LEDGER_KEY = b"test-ledger-key-0123456789abcdef"
LINK_SECRET = "test-review-link-secret"
NEVER_SIGNED_IN = ("mallory@example.com",)
SCIM_TOKEN = "test-scim-token"
EVIDENCE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))


class RecordingNotifier:
    """Keeps every message so tests can assert who was told what."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    def to(self, email: str, event: str | None = None) -> list[Message]:
        return [
            m for m in self.messages if m.recipient.email == email and (event is None or m.event == event)
        ]


@dataclass
class Stack:
    env: WorkflowEnvironment
    task_queue: str
    store: Store
    hoop: HoopStandIn
    gateway: HoopGateway
    notifier: RecordingNotifier
    links: ReviewLinks
    organisation: Organisation
    policies: PolicySet
    tmp_path: Path
    timings: GatewayTimings = field(default_factory=GatewayTimings)
    scim_server: ScimDirectoryServer | None = None
    scim: ScimDirectory | None = None

    def person(self, email: str) -> Actor:
        return self.actor(email)

    def ref(self, email: str) -> PersonRef:
        """The person as the store knows them now (ids change when the directory comes from SCIM)."""
        person = self.store.find_person_by_email(email)
        assert person is not None, f"{email} is not in the directory"
        return person.ref

    def actor(self, email: str, channel: str = "api", admin: str | None = None) -> Actor:
        return Actor(person=self.ref(email), channel=channel, admin=self.ref(admin) if admin else None)

    def worker(self, client: Client | None = None) -> Worker:
        """Another grantflow worker on the stack's task queue, with the real activities over its store and
        stand-ins (for tests that stop and start workers themselves: ``start_stack(run_worker=False)``)."""
        activities = build_activities(
            store=self.store,
            gateway=self.gateway,
            notifier=self.notifier,
            links=self.links,
            scim=self.scim,
            policies=self.policies,
            evidence_key=EVIDENCE_KEY,
        )
        return build_worker(client or self.env.client, self.task_queue, activities)

    def channel_activities(
        self,
        settings: Settings,
        links: ReviewLinks,
        *,
        evidence_key: Ed25519PrivateKey | None = EVIDENCE_KEY,
    ) -> tuple[ChannelActivities, list[Callable[..., Any]]]:
        """The channels (Slack, Jira, email) built from ``settings`` as ``grantflow worker`` builds them
        (the caller closes them) and the worker's activities using them; every message also reaches the
        recording notifier."""
        channels = build_channels(settings, links=links, store=self.store)
        return channels, build_activities(
            store=self.store,
            gateway=self.gateway,
            notifier=Notifiers(self.notifier, build_notifier(settings, channels)),
            links=links,
            scim=self.scim,
            channels=channels,
            policies=self.policies,
            evidence_key=evidence_key,
        )

    async def start_request(
        self,
        requester: str,
        resource: str = "pg-prod",
        role: str | None = "admin",
        duration: timedelta = timedelta(hours=1),
        *,
        reason: str = "INC-1",
        break_glass: bool = False,
        timings: GatewayTimings | None = None,
        policy: RolePolicy | None = None,
    ) -> WorkflowHandle[AccessRequestWorkflow, RequestView]:
        role_name, role_policy = self.policies.role(resource, role)
        policy = policy or role_policy
        request_id = f"req-{uuid.uuid4().hex[:12]}"
        now = await self.now()
        actor = self.actor(requester)
        inp = AccessRequestInput(
            request_id=request_id,
            requester=actor.person,
            submitted_by=actor,
            resource=resource,
            role=role_name,
            policy=policy,
            duration=duration,
            reason=reason,
            break_glass=break_glass,
            created_at=now,
            timings=timings or self.timings,
        )
        return await self.env.client.start_workflow(
            AccessRequestWorkflow.run, inp, id=request_id, task_queue=self.task_queue
        )

    async def connect(self, email: str, connection: str) -> str:
        """Open a session as ``hoop connect`` would (off the loop: the stand-in reads Temporal's clock)."""
        return await asyncio.to_thread(self.hoop.connect, email, connection)

    async def now(self) -> datetime:
        if self.env.supports_time_skipping:
            return (await self.env.get_current_time()).astimezone(UTC)
        return datetime.now(UTC)

    async def wait_for(
        self,
        handle: WorkflowHandle[AccessRequestWorkflow, RequestView],
        predicate: Callable[[RequestView], bool],
        timeout: float = 20.0,
    ) -> RequestView:
        """Poll the workflow's view until ``predicate`` holds (real time; for the dev server)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            view = await handle.query(AccessRequestWorkflow.view)
            if predicate(view):
                return view
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting; last view: {view.model_dump_json(indent=1)}")
            await asyncio.sleep(0.05)


def _temporal_clock(env: WorkflowEnvironment, loop: asyncio.AbstractEventLoop) -> Callable[[], datetime]:
    """The stand-in's clock, read from the time-skipping server so the gateway and Temporal agree."""

    import threading

    last = [datetime.now(UTC)]

    def now() -> datetime:
        if threading.get_ident() == loop_thread:
            # Called from the test's own loop (a direct inspection): it cannot wait for the server
            # without deadlocking, so it sees the time of the last gateway call.
            return last[0]
        future = asyncio.run_coroutine_threadsafe(env.get_current_time(), loop)
        last[0] = future.result(timeout=10).astimezone(UTC)
        return last[0]

    loop_thread = threading.get_ident()
    return now


@asynccontextmanager
async def start_stack(
    env: WorkflowEnvironment,
    tmp_path: Path,
    *,
    time_skipping: bool,
    with_scim: bool = False,
    run_worker: bool = True,
) -> AsyncIterator[Stack]:
    """With ``with_scim`` the directory lives in a seeded scim2-server and the store starts empty: the
    test runs the first identity sync. Without, the store is seeded from the example organisation. With
    ``run_worker=False`` nothing polls the task queue: the test starts its own workers."""
    organisation = load_organisation(ORGANISATION_FILE)
    policies = load_policies(POLICIES_FILE)
    store = Store(
        f"sqlite:///{tmp_path / 'grantflow.db'}", ledger_key=LEDGER_KEY, anchor_path=tmp_path / "anchor"
    )
    store.migrate()
    scim_server: ScimDirectoryServer | None = None
    scim: ScimDirectory | None = None
    if with_scim:
        scim_server = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
        scim = ScimDirectory(scim_server.start(), SCIM_TOKEN)
        scim_server.seed_organisation(organisation)
    else:
        store.replace_directory(organisation.people)
    clock = _temporal_clock(env, asyncio.get_running_loop()) if time_skipping else None
    hoop = HoopStandIn(
        clock=clock, api_keys={HOOP_KEY: ["admin", GRANTFLOW_GROUP]}, api_key_names={HOOP_KEY: "grantflow"}
    )
    url = hoop.start()
    seed_hoop(hoop, organisation, policies, never_signed_in=NEVER_SIGNED_IN)
    gateway = HoopGateway(base_url=url, api_key=HOOP_KEY)
    notifier = RecordingNotifier()
    links = ReviewLinks(LINK_SECRET, "http://127.0.0.1:9", timedelta(hours=1))
    task_queue = f"tq-{uuid.uuid4().hex}"
    activities = build_activities(
        store=store,
        gateway=gateway,
        notifier=notifier,
        links=links,
        scim=scim,
        policies=policies,
        evidence_key=EVIDENCE_KEY,
    )
    worker = build_worker(env.client, task_queue, activities)
    try:
        async with worker if run_worker else contextlib.nullcontext():
            yield Stack(
                env=env,
                task_queue=task_queue,
                store=store,
                hoop=hoop,
                gateway=gateway,
                notifier=notifier,
                links=links,
                organisation=organisation,
                policies=policies,
                tmp_path=tmp_path,
                scim_server=scim_server,
                scim=scim,
            )
    finally:
        await gateway.aclose()
        if scim is not None and scim_server is not None:
            await scim.aclose()
            scim_server.stop()
        hoop.stop()
        store.close()
