"""grantflow with every channel on, over real sockets, for end-to-end tests.

``start_channel_stack(stack)`` (an async context manager; the fixture ``channel_stack`` wraps it) adds to a
running :class:`~tests.stack.Stack` (dev server, store, hoop stand-in):

- the Slack stand-in: every person of the example organisation except :data:`NO_SLACK`;
- the Jira stand-in: project ``ACC`` (the default approval workflow) for the tickets, intake project
  ``ACCREQ`` with the custom fields Resource / Role / Duration (``settings.jira_intake_fields``), every
  person with an accountId and an API token, webhooks signed and sent to the web app's ``/jira/webhook``;
- the SMTP sink;
- a worker on its own task queue with grantflow's real activities, ``ChannelActivities`` included, built by
  ``build_channels`` from a :class:`Settings` pointing at the stand-ins;
- the web app (``create_app``, the Slack and Jira edges from ``build_slack_edge``/``build_jira_edge``, a
  ``RequestService`` presenting in slack, jira and email) on 127.0.0.1, its review links as the emails
  carry them;
- a :class:`SlackDriver` posting signed interactions to ``<app>/slack/events``.

:class:`ChannelStack` has the helpers people's actions need: click Approve/Deny in someone's DM (the deny
modal with its reason), move a Jira ticket as a person, open an emailed review link and decide through the
form (GET, then POST with the CSRF field and cookie), start requests by slash command, Jira intake issue or
a review left pending in hoop (:class:`Intake`, ``by_slash_command``, ``by_jira_intake``,
``by_hoop_review``), and read final states.

Faults: the stand-ins are the faulty ones of ``tests/rigs/faults.py``; a :class:`FaultPlan` passed to
``start_channel_stack`` decides which of grantflow's calls fail, and ``quick_retries=True`` shortens the
waits between the presentation activity's attempts (:class:`QuickPresentRetries`) so that a flow with a
third of the calls failing takes seconds, not minutes. The web app and people's actions in Slack and Jira
are those of ``tests/rigs/edges.py``; the Slack and email helpers ``buttons`` and ``message_id`` are
``tests/builders.py``'s.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest_asyncio
from temporalio.client import WorkflowHandle

from activities.slack_channel import ask_key, outcome_key
from configuration.settings import Settings
from domain.identity import PersonRef
from domain.requests import RequestStatus, RequestView, request_workflow_id
from domain.review_links import ReviewLinks
from integrations.slack import APPROVE_ACTION, DENY_ACTION
from sandbox.slack import SlackDriver
from sandbox.smtp import ReceivedMessage
from tests.builders import buttons, message_id
from tests.rigs.edges import DEFAULT_TIMEOUT, EdgeRig, JiraPeople, SlackPeople, serving, settings_for
from tests.rigs.faults import FaultPlan, FaultyJira, FaultySlack, FaultySmtp, QuickPresentRetries
from tests.stack import LINK_SECRET, Stack
from web.auth import TokenRegistry
from web.pages import COOKIE, derive_csrf_key
from web.service import RequestService
from worker import build_activities, build_channels, build_worker
from workflows.access_request import AccessRequestWorkflow

__all__ = [
    "ACC",
    "APPROVED",
    "DENIED",
    "DONE",
    "INTAKE_PROJECT",
    "JIRA_WEBHOOK_SECRET",
    "NO_SLACK",
    "RECORDED_AS",
    "WAITING",
    "Asked",
    "ChannelStack",
    "FaultPlan",
    "Intake",
    "QuickPresentRetries",
    "buttons",
    "by_hoop_review",
    "by_jira_intake",
    "by_slash_command",
    "channel_stack",
    "message_id",
    "start_channel_stack",
]

SLACK_BOT, SLACK_APP, SLACK_SECRET = "xoxb-e2e-grantflow", "xapp-1-e2e-grantflow", "e2e-slack-signing-secret"
JIRA_BOT, JIRA_TOKEN, JIRA_WEBHOOK_SECRET = "grantflow-bot@example.com", "e2e-jira-token", "e2e-jira-webhook"
ACC, INTAKE_PROJECT = "ACC", "ACCREQ"
NO_SLACK = "dan@example.com"
"""The one person of the example organisation without a Slack account (asked by email and in Jira)."""
WAITING, APPROVED, DENIED, DONE = "Waiting for approval", "Approved", "Denied", "Done"

RECORDED_AS = {"slack": "slack", "jira": "jira", "email": "web"}
"""The channel a decision is recorded under, by where the person decided (an emailed link opens the web
review page)."""


def jira_token(email: str) -> str:
    """The Jira API token of a person (everyone has one: people create intake issues with it)."""
    return f"jira-token-{email.split('@')[0]}"


# ---------------------------------------------------------------------------------------------- intakes


@dataclass(frozen=True)
class Asked:
    """What a requester asks for, in words (as typed in a slash command or a Jira intake issue)."""

    resource: str = "pg-prod"
    role: str = "admin"
    duration: str = "10s"
    reason: str = "INC-4711 fix the stuck orders migration"


@dataclass(frozen=True)
class Intake:
    """A way a request comes into grantflow, and how its end-to-end test approves it.

    ``start(rig, requester, asked)`` makes the request as the requester would and returns its id.
    ``approvals`` are (approver email, channel) with channel one of ``slack``, ``jira``, ``email``.
    ``final`` is the status the request ends in (ENDED for time-bound access; APPROVED for a one-time
    command); ``session`` says whether the requester opens a session that the end must kill."""

    name: str
    requester: str
    start: Callable[[ChannelStack, str, Asked], Awaitable[str]]
    approvals: tuple[tuple[str, str], ...]
    final: RequestStatus = RequestStatus.ENDED
    session: bool = True

    def __str__(self) -> str:
        return self.name


async def by_slash_command(rig: ChannelStack, requester: str, asked: Asked) -> str:
    return await rig.request_by_slash(requester, asked)


async def by_jira_intake(rig: ChannelStack, requester: str, asked: Asked) -> str:
    _, request_id = await rig.request_by_jira(requester, asked)
    return request_id


def by_hoop_review(
    kind: str, connection: str = "pg-prod-admin", command: str | None = None
) -> Callable[[ChannelStack, str, Asked], Awaitable[str]]:
    """An intake for a review left PENDING in hoop (``kind`` ``jit``: ``hoop connect`` waiting for
    approval, for ``asked.duration``; ``onetime``: ``command`` waiting to run), found by grantflow's review
    discovery. For the ``Intake`` entries of hoop's reviews; see ``ChannelStack.request_by_hoop``."""

    async def start(rig: ChannelStack, requester: str, asked: Asked) -> str:
        return await rig.request_by_hoop(requester, kind, asked, connection=connection, command=command)

    return start


# ---------------------------------------------------------------------------------------------- the stack


@dataclass
class ChannelStack(EdgeRig, SlackPeople, JiraPeople):
    """Every channel on (see the module docstring); people are known by their email."""

    settings: Settings
    slack: FaultySlack
    jira: FaultyJira
    smtp: FaultySmtp
    driver: SlackDriver
    links: ReviewLinks
    task_queue: str
    faults: FaultPlan
    slack_users: dict[str, str]  # email -> Slack user id
    jira_accounts: dict[str, str]  # email -> accountId
    jira_fields: dict[str, str]  # Resource / Role / Duration -> custom field id
    intake_issues: dict[str, str] = field(default_factory=dict)  # request id -> intake issue key
    discovery: WorkflowHandle[Any, Any] | None = None  # hoop review discovery, once started

    # ------------------------------------------------------------------ general

    def ref(self, email: str) -> PersonRef:
        return self.stack.ref(email)

    def handle(self, request_id: str) -> WorkflowHandle[AccessRequestWorkflow, RequestView]:
        return self.stack.env.client.get_workflow_handle_for(
            AccessRequestWorkflow.run, request_workflow_id(request_id)
        )

    async def view(self, request_id: str) -> RequestView:
        return await self.service.show(request_id)

    async def wait_status(
        self, request_id: str, *statuses: RequestStatus, timeout: float = DEFAULT_TIMEOUT
    ) -> RequestView:
        return await self.stack.wait_for(
            self.handle(request_id), lambda v: v.status in statuses, timeout=timeout
        )

    async def final(self, request_id: str, timeout: float = 60.0) -> RequestView:
        """The request's final view: its workflow's result, which it returns only once every channel
        has been brought up to date (``AccessRequestWorkflow._finish``)."""
        return await asyncio.wait_for(self.handle(request_id).result(), timeout)

    # ------------------------------------------------------------------ Slack

    def dm_channel(self, email: str) -> str:
        return self.slack.dm_channel(self.slack_users[email])

    def messages(self, request_id: str, email: str | None = None) -> list[dict[str, Any]]:
        """grantflow's Slack messages about a request (to one person's DM, when given), oldest first."""
        if email is not None and email not in self.slack_users:
            return []  # no Slack account: nothing can reach them there
        channel = self.dm_channel(email) if email is not None else None
        return [
            m
            for m in self.slack.messages(channel)
            if ((m.get("metadata") or {}).get("event_payload") or {}).get("request_id") == request_id
        ]

    def keyed(self, request_id: str, email: str, key: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages(request_id, email)
            if (m.get("metadata") or {}).get("event_payload", {}).get("grantflow_key") == key
        ]

    def asking(self, request_id: str, email: str, stage: str = "request") -> list[dict[str, Any]]:
        """The DMs asking ``email`` to decide (exactly one, unless something posted twice)."""
        return self.keyed(request_id, email, ask_key(request_id, stage, self.ref(email).id))

    def outcomes(self, request_id: str, email: str, status: RequestStatus) -> list[dict[str, Any]]:
        return self.keyed(request_id, email, outcome_key(request_id, status.value))

    async def asked_dm(self, request_id: str, email: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The approver's DM with Approve/Deny buttons, once it is there."""

        def found() -> dict[str, Any] | None:
            messages = self.asking(request_id, email)
            return messages[0] if messages and APPROVE_ACTION in buttons(messages[0]) else None

        return await self.until(found, f"the Slack DM asking {email} about {request_id}", timeout)

    async def click(
        self, request_id: str, approver: str, action: str, *, as_user: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Click a button of the DM asking ``approver`` (as ``as_user`` when given: a copy of the message
        in someone else's hands), signed as Slack signs it."""
        message = await self.asked_dm(request_id, approver)
        return await self.click_at(as_user or approver, (message["channel"], message["ts"]), action, **kwargs)

    async def slack_approve(
        self, request_id: str, approver: str, *, as_user: str | None = None, expect: str = ""
    ) -> str:
        """Approve with the button; what Slack showed the clicker (ephemeral) afterwards — the first new
        text containing ``expect`` (flows running side by side tell the same person about other requests)."""
        who = as_user or approver
        before = len(self.said_to(who))
        answer = await self.click(request_id, approver, APPROVE_ACTION, as_user=as_user)
        assert answer.status_code == 200, answer.text
        return await self.told_new(who, before, contains=expect)

    async def slack_deny(self, request_id: str, approver: str, reason: str, *, expect: str = "") -> str:
        """Deny: the button opens the modal, the reason is typed and submitted; what Slack showed the
        approver afterwards (the first new text containing ``expect``)."""
        user = self.slack_users[approver]
        views = len(self.slack.views(user))
        before = len(self.said_to(approver))
        answer = await self.click(request_id, approver, DENY_ACTION)
        assert answer.status_code == 200, answer.text
        await self.until(lambda: len(self.slack.views(user)) > views, f"the deny modal of {approver}")
        submitted = await self.submit_deny_reason(approver, reason)
        assert submitted.status_code == 200, submitted.text
        return await self.told_new(approver, before, contains=expect)

    async def request_by_slash(self, requester: str, asked: Asked) -> str:
        before = len(self.said_to(requester))
        text = f"{asked.resource} {asked.role} {asked.duration} {asked.reason}"
        answer = await self.slash(requester, text)
        assert answer.status_code == 200, answer.text
        told = await self.told_new(requester, before, contains="Request `")
        found = re.search(r"Request `(req-[0-9a-f]+)`", told)
        assert found is not None, told
        return found.group(1)

    # ------------------------------------------------------------------ Jira

    def tickets(self, request_id: str) -> list[dict[str, Any]]:
        """Every Jira issue (any project) labelled with the request."""
        return self.jira.issues(label=f"grantflow-{request_id}")

    async def ticket(self, request_id: str) -> str:
        """The key of the request's ticket once it is there: the intake issue it was made in, else the one
        grantflow opened in ACC."""
        project = INTAKE_PROJECT if request_id in self.intake_issues else ACC

        def found() -> str | None:
            keys = [t["key"] for t in self.tickets(request_id) if t["fields"]["project"]["key"] == project]
            return keys[0] if keys else None

        return await self.until(found, f"the {project} ticket of {request_id}")

    async def request_by_jira(self, requester: str, asked: Asked) -> tuple[str, str]:
        """Create an intake issue as ``requester``; (issue key, request id) once grantflow labelled it."""
        key = await self.create_issue(
            requester,
            jira_token(requester),
            INTAKE_PROJECT,
            f"Access to {asked.resource} please",
            asked.reason,
            Resource=asked.resource,
            Role=asked.role,
            Duration=asked.duration,
        )

        def labelled() -> str | None:
            labels = self.jira.issue(key)["fields"].get("labels") or []
            ids = [label.removeprefix("grantflow-") for label in labels if label.startswith("grantflow-")]
            return ids[0] if ids else None

        request_id = await self.until(labelled, f"grantflow's label on intake issue {key}")
        self.intake_issues[request_id] = key
        return key, request_id

    # ------------------------------------------------------------------ hoop

    async def request_by_hoop(
        self,
        requester: str,
        kind: str,
        asked: Asked,
        *,
        connection: str = "pg-prod-admin",
        command: str | None = None,
    ) -> str:
        """Leave a review PENDING in hoop as ``requester`` (``jit`` for ``asked.duration``, or ``onetime``
        for ``command``), have grantflow's discovery poll at once, and return the request it opened. The
        discovery runs on this stack's task queue under its own id (started on first use, terminated at
        the end), polling only when asked: the test decides when."""
        from domain.durations import parse_duration
        from domain.requests import hoop_request_id
        from workflows.hoop_reviews import HoopReviewDiscoveryWorkflow, ensure_hoop_discovery

        if self.discovery is None:
            settings = self.settings.model_copy(
                update={"task_queue": self.task_queue, "hoop_review_poll_interval": timedelta(hours=1)}
            )
            self.discovery = await ensure_hoop_discovery(
                self.stack.env.client, settings, workflow_id=f"hoop-discovery-{uuid.uuid4().hex}"
            )
        seconds = int(parse_duration(asked.duration).total_seconds())
        pending = await asyncio.to_thread(
            self.stack.hoop.create_pending_review,
            requester,
            connection,
            type=kind,
            duration_sec=seconds,
            command=command or (f"-- {asked.reason}\nSELECT 1;" if kind == "onetime" else None),
        )
        await self.discovery.execute_update(HoopReviewDiscoveryWorkflow.poll_now)
        request_id = hoop_request_id(pending.review_id)
        await self.until(
            lambda: self.stack.store.get_request(request_id),
            f"the request for hoop review {pending.review_id}",
        )
        return request_id

    # ------------------------------------------------------------------ email and the review page

    def emails(self, request_id: str, email: str | None = None) -> list[ReceivedMessage]:
        """Emails about the request (to ``email``, when given), by their Message-ID."""
        return [
            m
            for m in list(self.smtp.messages)
            if message_id(m).startswith(f"<{request_id}.") and (email is None or email in m.rcpt_tos)
        ]

    async def review_link(self, request_id: str, email: str) -> str:
        """The review link of the email asking ``email`` to decide, once it arrived."""
        wanted = f"<{request_id}.ask.request.{self.ref(email).id}@"

        def found() -> str | None:
            for m in self.emails(request_id, email):
                if message_id(m).startswith(wanted):
                    link = re.search(r"Review and decide: (\S+)", m.text or "")
                    assert link is not None, m.text
                    return link.group(1)
            return None

        return await self.until(found, f"the email asking {email} about {request_id}")

    def minted_link(self, request_id: str, email: str) -> str:
        """A review link for anyone (as if forwarded): the page must refuse whom the workflow refuses."""
        return self.links.url(request_id, self.ref(email).id)

    async def review(self, link: str, verdict: str, reason: str = "") -> httpx.Response:
        """Open the review page and decide through its form: GET (the CSRF field and its cookie), POST."""
        assert link.startswith(self.url), link
        async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as http:
            page = await http.get(link)
            assert page.status_code == 200, page.text
            csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
            assert csrf is not None, page.text
            nonce = page.cookies.get(COOKIE)
            assert nonce, page.headers.get("set-cookie")
            return await http.post(
                link,
                data={"csrf": csrf.group(1), "verdict": verdict, "reason": reason},
                headers={"Cookie": f"{COOKIE}={nonce}"},
            )

    # ------------------------------------------------------------------ deciding, by channel

    async def approve(self, request_id: str, approver: str, channel: str) -> None:
        """``approver`` approves through ``channel`` (slack: the button; jira: the Approve transition of the
        request's ticket; email: the emailed review link and its form)."""
        if channel == "slack":
            await self.slack_approve(request_id, approver, expect=f"You approved request {request_id}")
        elif channel == "jira":
            key = await self.ticket(request_id)
            event = await self.move(key, "Approve", approver)
            assert self.answers(event)[-1] in (200, 202)
        elif channel == "email":
            answer = await self.review(await self.review_link(request_id, approver), "approve", "fine by me")
            assert answer.status_code == 200, answer.text
            assert f"You approved request {request_id}" in answer.text, answer.text
        else:
            raise ValueError(f"unknown channel {channel!r}")


# ---------------------------------------------------------------------------------------------- wiring


@asynccontextmanager
async def start_channel_stack(
    stack: Stack, faults: FaultPlan | None = None, *, quick_retries: bool = False
) -> AsyncIterator[ChannelStack]:
    """Every channel on, around ``stack`` (see the module docstring). ``quick_retries``: see
    :class:`QuickPresentRetries`."""
    plan = faults or FaultPlan()
    people = stack.organisation.people
    client = stack.env.client

    slack = FaultySlack(plan, bot_token=SLACK_BOT, app_token=SLACK_APP, signing_secret=SLACK_SECRET)
    jira = FaultyJira(plan, api_user=JIRA_BOT, users={JIRA_BOT: JIRA_TOKEN})
    smtp = FaultySmtp(plan)
    slack.start()
    try:
        jira.add_project(ACC, "Access requests")
        jira.add_project(INTAKE_PROJECT, "Access intake")
        fields = {name: jira.add_custom_field(name) for name in ("Resource", "Role", "Duration")}
        accounts = {
            p.email: jira.add_user(p.email, p.display_name, api_token=jira_token(p.email)) for p in people
        }
        jira.start()
        smtp.start()
        slack_users = {
            p.email: slack.add_user(p.email, p.display_name) for p in people if p.email != NO_SLACK
        }
        settings = settings_for(
            stack.tmp_path,
            slack=slack,
            jira=jira,
            jira_user=(JIRA_BOT, JIRA_TOKEN),
            smtp=smtp,
            jira_project=ACC,
            jira_webhook_secret=JIRA_WEBHOOK_SECRET,
            jira_intake_project=INTAKE_PROJECT,
            jira_intake_fields={"resource": "Resource", "role": "Role", "duration": "Duration"},
            review_link_secret=LINK_SECRET,
        )
        assert settings.configured_channels == ["slack", "jira", "email"]
        task_queue = f"tq-channels-{uuid.uuid4().hex}"
        service = RequestService(
            client,
            stack.store,
            stack.policies,
            task_queue,
            stack.timings,
            channels=settings.configured_channels,
        )
        web = serving(
            stack, settings, service, tokens=TokenRegistry(None), csrf_key=derive_csrf_key(LINK_SECRET)
        )
        async with web as served:
            context, url = served.context, served.url
            assert context.slack is not None and context.jira is not None
            links = ReviewLinks(LINK_SECRET, url, timedelta(hours=1))
            context.links = links  # the stack's until now: the app's URL was not known
            jira.set_webhook(f"{url}/jira/webhook", JIRA_WEBHOOK_SECRET)
            channels = build_channels(settings, links=links, store=stack.store)
            activities = build_activities(
                store=stack.store,
                gateway=stack.gateway,
                notifier=stack.notifier,
                links=links,
                channels=channels,
                policies=stack.policies,  # what reviews started in hoop are admitted under
            )
            try:
                interceptors = [QuickPresentRetries()] if quick_retries else []
                async with build_worker(client, task_queue, activities, interceptors=interceptors):
                    with SlackDriver(SLACK_SECRET, f"{url}/slack/events", slack=slack) as driver:
                        rig = ChannelStack(
                            stack=stack,
                            settings=settings,
                            slack=slack,
                            jira=jira,
                            smtp=smtp,
                            driver=driver,
                            service=service,
                            context=context,
                            url=url,
                            links=links,
                            task_queue=task_queue,
                            faults=plan,
                            slack_users=slack_users,
                            jira_accounts=accounts,
                            jira_fields=fields,
                        )
                        try:
                            yield rig
                        finally:
                            if rig.discovery is not None:
                                await rig.discovery.terminate("the test is over")
                    plan.disable()
                    jira.set_webhook(None)
            finally:
                await channels.aclose()
    finally:
        smtp.stop()
        jira.stop()
        slack.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def channel_stack(stack: Stack) -> AsyncIterator[ChannelStack]:
    """Every channel on, around the ``stack`` fixture (dev server, real time)."""
    async with start_channel_stack(stack) as running_stack:
        yield running_stack
