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

Faults: :class:`FaultPlan` decides, call by call, whether a call grantflow makes fails — the writes (Slack
``chat.postMessage``/``chat.update``/``conversations.open``, Jira create/transition/comment, SMTP ``DATA``)
and the look-ups that make them idempotent (Slack ``conversations.history``/``users.lookupByEmail``, Jira's
issue search, user search and GETs of an issue, its transitions and its comments) — and how (429 with
``Retry-After``, 503 before or after the write, a connection dropped before or after the write; a look-up
fails before it is answered: 429, 503 or a drop; SMTP: 451 or a drop before the message is kept). Only
grantflow's own calls fail: Slack's with the bot token, Jira's by grantflow's API user (a person's own calls,
the test's in-process reads and people's moves through ``transition_as`` never do). The n-th call of each
kind gets the same fate on every run with the same seed. The stand-ins are subclassed for this, feeding
their own ``fail_next``/``drop_next`` at the moment a call arrives; the Slack and Jira subclasses also
record when each call arrived (``arrivals``). With a third of the calls failing, ``quick_retries=True``
shortens the waits between the presentation activity's attempts
(:class:`QuickPresentRetries`) so that a flow takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

import httpx
import pytest_asyncio
from aiohttp import web
from jira import JIRA
from temporalio.client import WorkflowHandle
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from activities.channels import ask_key, build_channels, outcome_key
from config.settings import Settings
from domain.identity import PersonRef
from domain.requests import RequestStatus, RequestView, request_workflow_id
from domain.review_links import ReviewLinks
from integrations.slack import APPROVE_ACTION, DENY_ACTION, DENY_REASON_ACTION, DENY_REASON_BLOCK
from sandbox.jira import JiraStandIn
from sandbox.slack import SlackDriver, SlackStandIn
from sandbox.smtp import ReceivedMessage, SmtpSink
from tests.stack import LINK_SECRET, Stack
from web.app import WebContext, create_app, running
from web.auth import TokenRegistry
from web.jira_webhook import build_jira_edge
from web.review import COOKIE, derive_csrf_key
from web.service import RequestService
from web.slack_app import build_slack_edge
from worker import build_activities, build_worker
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
SMTP_FROM = "grantflow@example.com"
WAITING, APPROVED, DENIED, DONE = "Waiting for approval", "Approved", "Denied", "Done"
DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")


RECORDED_AS = {"slack": "slack", "jira": "jira", "email": "web"}
"""The channel a decision is recorded under, by where the person decided (an emailed link opens the web
review page)."""


def jira_token(email: str) -> str:
    """The Jira API token of a person (everyone has one: people create intake issues with it)."""
    return f"jira-token-{email.split('@')[0]}"


# ---------------------------------------------------------------------------------------------- faults


class Injected(NamedTuple):
    service: str  # slack, jira, smtp
    call: str  # chat.postMessage, conversations.history, POST /issue/{key}/comment, GET /search/jql, DATA
    kind: str  # 429, 503, 503-after, drop, drop-after, 451
    nth: int  # the n-th call of its kind (0-based)


class FaultPlan:
    """Which calls fail, and how. Off until :meth:`enable`; then each call of a faultable kind fails with
    probability ``rate``, decided by a generator seeded with (seed, service, call kind, n): reproducible for
    the n-th call of each kind whatever the interleaving of concurrent flows (:func:`fault_of` is that
    decision, without a stack). Writes fail with one of ``SLACK_KINDS``/``JIRA_KINDS``/``SMTP_KINDS``,
    look-ups with one of ``READ_KINDS`` (nothing is written, so nothing can fail "after")."""

    SLACK_KINDS = ("429", "503", "503-after", "drop", "drop-after")
    JIRA_KINDS = ("429", "503", "503-after", "drop", "drop-after")
    SMTP_KINDS = ("451", "drop")
    READ_KINDS = ("429", "503", "drop")
    JIRA_SEARCHES = ("GET /search/jql", "POST /search/jql", "GET /search", "POST /search")
    """The call kinds of Jira's issue search (which one the ``jira`` client uses depends on its version)."""

    def __init__(self) -> None:
        self.seed = 0
        self.rate = 0.0
        self.retry_after = 1
        self.injected: list[Injected] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def enable(self, seed: int, rate: float = 1 / 3, retry_after: int = 1) -> None:
        with self._lock:
            self.seed, self.rate, self.retry_after = seed, rate, retry_after
            self._counts.clear()

    def disable(self) -> None:
        with self._lock:
            self.rate = 0.0

    def choose(self, service: str, call: str, kinds: Sequence[str]) -> str | None:
        with self._lock:
            if self.rate <= 0:
                return None
            nth = self._counts[(service, call)]
            self._counts[(service, call)] += 1
            kind = fault_of(self.seed, self.rate, service, call, nth, kinds)
            if kind is not None:
                self.injected.append(Injected(service, call, kind, nth))
            return kind

    def kinds(self, service: str) -> set[str]:
        with self._lock:
            return {i.kind for i in self.injected if i.service == service}

    def count(self, service: str | None = None) -> int:
        with self._lock:
            return sum(1 for i in self.injected if service in (None, i.service))

    def faulted(self, service: str, *calls: str) -> list[Injected]:
        """The faults injected into these calls (call kinds as in :class:`Injected`) of ``service``."""
        with self._lock:
            return [i for i in self.injected if i.service == service and i.call in calls]


def fault_of(seed: int, rate: float, service: str, call: str, nth: int, kinds: Sequence[str]) -> str | None:
    """The fate of the ``nth`` call of kind ``call`` (0-based): None, or the fault, one of ``kinds``."""
    rng = random.Random(f"{seed}|{service}|{call}|{nth}")
    if rng.random() >= rate:
        return None
    return rng.choice(kinds)


_slack_token: ContextVar[str | None] = ContextVar("_slack_token", default=None)
"""The bearer token of the Web API call the Slack stand-in is handling (in that call's task)."""


class FaultySlack(SlackStandIn):
    """The Slack stand-in, failing the writes and look-ups the plan picks among those made with grantflow's
    bot token; ``arrivals`` holds (method, monotonic time) of every Web API call."""

    WRITES = frozenset({"chat.postMessage", "chat.update", "conversations.open"})
    READS = frozenset({"conversations.history", "users.lookupByEmail"})

    def __init__(self, plan: FaultPlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.arrivals: list[tuple[str, float]] = []

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        reset = _slack_token.set(token)
        try:
            return await super()._handle_api(request)
        finally:
            _slack_token.reset(reset)

    def _take_fault(self, method: str) -> Any:  # called once per Web API call, under the stand-in's lock
        self.arrivals.append((method, time.monotonic()))
        kind = None
        if _slack_token.get() == SLACK_BOT and method in self.WRITES:
            kind = self.plan.choose("slack", method, FaultPlan.SLACK_KINDS)
        elif _slack_token.get() == SLACK_BOT and method in self.READS:
            kind = self.plan.choose("slack", method, FaultPlan.READ_KINDS)
        if kind == "429":
            self.fail_next(method, 429, retry_after=self.plan.retry_after)
        elif kind in ("503", "503-after"):
            self.fail_next(method, 503, after_write=kind == "503-after")
        elif kind in ("drop", "drop-after"):
            self.drop_next(method, after_write=kind == "drop-after")
        return super()._take_fault(method)

    def calls_at(self, method: str) -> list[float]:
        with self._lock:
            return [at for m, at in self.arrivals if m == method]


_API_PATH = re.compile(r"^/rest/api/[^/]+(/.*)?$")
_JIRA_WRITES = (
    ("POST", re.compile(r"^/issue/?$"), "POST /issue"),
    ("POST", re.compile(r"^/issue/[^/]+/transitions/?$"), "POST /issue/{key}/transitions"),
    ("POST", re.compile(r"^/issue/[^/]+/comment/?$"), "POST /issue/{key}/comment"),
)
_JIRA_READS = (
    ("GET", re.compile(r"^/search/jql/?$"), "GET /search/jql"),
    ("POST", re.compile(r"^/search/jql/?$"), "POST /search/jql"),
    ("GET", re.compile(r"^/search/?$"), "GET /search"),
    ("POST", re.compile(r"^/search/?$"), "POST /search"),
    ("GET", re.compile(r"^/user/search/?$"), "GET /user/search"),
    ("GET", re.compile(r"^/issue/[^/]+/transitions/?$"), "GET /issue/{key}/transitions"),
    ("GET", re.compile(r"^/issue/[^/]+/comment/?$"), "GET /issue/{key}/comment"),
    ("GET", re.compile(r"^/issue/[^/]+/?$"), "GET /issue/{key}"),
)


class FaultyJira(JiraStandIn):
    """The Jira stand-in, failing the creates, transitions and comments, and the searches and GETs of an
    issue, its transitions and comments, of grantflow's API user that the plan picks (a person's own calls
    never fail, nor do the in-process helpers); ``arrivals`` holds (method, api path, monotonic time)."""

    def __init__(self, plan: FaultPlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.arrivals: list[tuple[str, str, float]] = []

    def _handle(
        self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str], raw: bytes
    ) -> Any:  # called once per request, under the stand-in's lock
        match = _API_PATH.match(path)
        api_path = (match.group(1) or "/") if match else ""
        self.arrivals.append((method, api_path, time.monotonic()))
        faultable = _jira_call_kind(method, api_path) if match else None
        kind = None
        if faultable is not None and _basic_user(headers) == JIRA_BOT:
            kind = self.plan.choose("jira", *faultable)
        # the fault is taken by this very request (the stand-in takes the first one matching it)
        if kind == "429":
            self.fail_next(api_path, 429, retry_after=self.plan.retry_after, method=method)
        elif kind in ("503", "503-after"):
            self.fail_next(api_path, 503, method=method, after_write=kind == "503-after")
        elif kind in ("drop", "drop-after"):
            self.drop_next(api_path, method=method, after_write=kind == "drop-after")
        return super()._handle(method, path, query, headers, raw)


def _jira_call_kind(method: str, api_path: str) -> tuple[str, Sequence[str]] | None:
    """The faultable call kind of a Jira request, with the faults it may get; None when it is not one."""
    for table, kinds in ((_JIRA_WRITES, FaultPlan.JIRA_KINDS), (_JIRA_READS, FaultPlan.READ_KINDS)):
        for wanted, pattern, call in table:
            if method == wanted and pattern.match(api_path):
                return call, kinds
    return None


def _basic_user(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization") or ""
    if not auth.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(auth[6:]).decode().partition(":")[0]
    except ValueError:
        return None


class FaultySmtp(SmtpSink):
    """The SMTP sink, answering 451 to (or dropping, before keeping the message) the DATA the plan picks.
    Drops *after* keeping the message are left out: email has no look-up, so the retry would deliver again
    (documented in ``activities/channels.py``)."""

    def __init__(self, plan: FaultPlan) -> None:
        super().__init__()
        self.plan = plan

    def _take_fault(self, stage: str) -> Any:
        if stage == "data":
            kind = self.plan.choose("smtp", "DATA", FaultPlan.SMTP_KINDS)
            if kind == "451":
                self.fail_next(1, 451)
            elif kind == "drop":
                self.drop_next(1)
        return super()._take_fault(stage)


class QuickPresentRetries(Interceptor):
    """Shortens the waits between attempts of ``present_request`` (the workflow's ``PRESENT_RETRY``: 1 s
    doubling to 30 s) to 0.25 s growing to 1 s; attempts, timeouts and a failure's ``next_retry_delay``
    (Slack's or Jira's ``Retry-After``) are untouched. Time compression for the fault-injection test only:
    with a third of the calls failing, most attempts fail somewhere (each gets further than the last), and
    the real backoff makes one flow take minutes."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _QuickRetriesInbound


class _QuickRetriesInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_QuickRetriesOutbound(outbound))


class _QuickRetriesOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        if input.activity == "present_request" and input.retry_policy is not None:
            input.retry_policy = dataclasses.replace(
                input.retry_policy,
                initial_interval=timedelta(milliseconds=250),
                backoff_coefficient=1.5,
                maximum_interval=timedelta(seconds=1),
            )
        return super().start_activity(input)


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
class ChannelStack:
    stack: Stack
    settings: Settings
    slack: FaultySlack
    jira: FaultyJira
    smtp: FaultySmtp
    driver: SlackDriver
    service: RequestService
    context: WebContext
    url: str
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

    @staticmethod
    async def until(
        check: Callable[[], T | None], what: str, timeout: float = DEFAULT_TIMEOUT, every: float = 0.05
    ) -> T:
        """Poll ``check`` (a cheap, non-blocking look at recorded state) until it is truthy; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = check()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(every)

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

    def ledger(self, request_id: str, kind: str) -> list[Any]:
        return [e for e in self.stack.store.ledger_entries(subject=request_id) if e.kind == kind]

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
        user = self.slack_users[as_user or approver]
        return await asyncio.to_thread(
            self.driver.click_button, user, message["channel"], message["ts"], action, **kwargs
        )

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
        submitted = await asyncio.to_thread(
            self.driver.submit_view, user, values={DENY_REASON_BLOCK: {DENY_REASON_ACTION: reason}}
        )
        assert submitted.status_code == 200, submitted.text
        return await self.told_new(approver, before, contains=expect)

    async def slash(self, email: str, text: str, **kwargs: Any) -> httpx.Response:
        return await asyncio.to_thread(
            self.driver.slash_command,
            self.slack_users[email],
            self.settings.slack_access_command,
            text,
            **kwargs,
        )

    async def request_by_slash(self, requester: str, asked: Asked) -> str:
        before = len(self.said_to(requester))
        text = f"{asked.resource} {asked.role} {asked.duration} {asked.reason}"
        answer = await self.slash(requester, text)
        assert answer.status_code == 200, answer.text
        told = await self.told_new(requester, before, contains="Request `")
        found = re.search(r"Request `(req-[0-9a-f]+)`", told)
        assert found is not None, told
        return found.group(1)

    def said_to(self, email: str) -> list[str]:
        """Every ephemeral text shown to ``email`` in Slack (response URLs, chat.postEphemeral), in order."""
        user = self.slack_users[email]
        texts = [str(r["body"].get("text", "")) for r in self.slack.responses if r["user_id"] == user]
        texts += [
            str(c.params.get("text", ""))
            for c in self.slack.calls_to("chat.postEphemeral")
            if c.params.get("user") == user and c.status == 200
        ]
        return texts

    async def told_new(self, email: str, before: int, contains: str = "") -> str:
        """The first ephemeral text shown to ``email`` after the first ``before`` ones (containing
        ``contains``), skipping the slash command's "Asking for …" acknowledgement."""

        def found() -> str | None:
            fresh = [t for t in self.said_to(email)[before:] if contains in t and not t.startswith("Asking ")]
            return fresh[0] if fresh else None

        return await self.until(found, f"a Slack message to {email} containing {contains!r}")

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

    async def jira_idle(self) -> None:
        await asyncio.to_thread(self.jira.wait_idle, DEFAULT_TIMEOUT)

    async def move(self, key: str, transition: str, email: str, comment: str | None = None) -> str:
        """``email`` performs a transition in Jira's UI; returns once its webhooks were delivered (and
        answered: the edge answers after handling, or 202 when it takes longer than its budget)."""
        event = await asyncio.to_thread(
            self.jira.transition_as, key, transition, self.jira_accounts[email], comment
        )
        await self.jira_idle()
        return event

    def jira_client(self, email: str) -> JIRA:
        return JIRA(server=self.jira.url, basic_auth=(email, jira_token(email)), max_retries=0)

    async def request_by_jira(self, requester: str, asked: Asked) -> tuple[str, str]:
        """Create an intake issue as ``requester``; (issue key, request id) once grantflow labelled it."""

        def create() -> str:
            client = self.jira_client(requester)
            try:
                fields: dict[str, Any] = {
                    "project": {"key": INTAKE_PROJECT},
                    "issuetype": {"name": "Task"},
                    "summary": f"Access to {asked.resource} please",
                    "description": asked.reason,
                    self.jira_fields["Resource"]: asked.resource,
                    self.jira_fields["Role"]: asked.role,
                    self.jira_fields["Duration"]: asked.duration,
                }
                return str(client.create_issue(fields=fields, prefetch=False).key)
            finally:
                client.close()

        key = await asyncio.to_thread(create)

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
            assert [d.status for d in self.jira.deliveries_of(event)][-1] in (200, 202)
        elif channel == "email":
            answer = await self.review(await self.review_link(request_id, approver), "approve", "fine by me")
            assert answer.status_code == 200, answer.text
            assert f"You approved request {request_id}" in answer.text, answer.text
        else:
            raise ValueError(f"unknown channel {channel!r}")


def message_id(received: ReceivedMessage) -> str:
    """The ``<…@…>`` Message-ID of a received email (a long one arrives folded: leading space dropped)."""
    return str(received.message["Message-ID"]).strip()


def buttons(message: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The buttons of a Slack message, by action id."""
    return {
        el["action_id"]: el
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for el in block.get("elements") or []
    }


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
    jira = FaultyJira(plan, users={JIRA_BOT: JIRA_TOKEN})
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
        settings = Settings(
            state_dir=stack.tmp_path,
            slack_bot_token=SLACK_BOT,
            slack_signing_secret=SLACK_SECRET,
            slack_api_url=slack.url,
            jira_url=jira.url,
            jira_email=JIRA_BOT,
            jira_api_token=JIRA_TOKEN,
            jira_project=ACC,
            jira_webhook_secret=JIRA_WEBHOOK_SECRET,
            jira_intake_project=INTAKE_PROJECT,
            jira_intake_fields={"resource": "Resource", "role": "Role", "duration": "Duration"},
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_from=SMTP_FROM,
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
        slack_edge = build_slack_edge(settings, service, stack.store)
        jira_edge = build_jira_edge(settings, service, stack.store)
        assert slack_edge is not None and jira_edge is not None
        context = WebContext(
            settings=settings,
            store=stack.store,
            client=client,
            policies=stack.policies,
            links=stack.links,  # replaced below, once the app's URL is known
            tokens=TokenRegistry(None),
            service=service,
            csrf_key=derive_csrf_key(LINK_SECRET),
            slack=slack_edge,
            jira=jira_edge,
        )
        try:
            async with running(create_app(context)) as url:
                links = ReviewLinks(LINK_SECRET, url, timedelta(hours=1))
                context.links = links
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
            await slack_edge.aclose()
            await jira_edge.aclose()
    finally:
        smtp.stop()
        jira.stop()
        slack.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def channel_stack(stack: Stack) -> AsyncIterator[ChannelStack]:
    """Every channel on, around the ``stack`` fixture (dev server, real time)."""
    async with start_channel_stack(stack) as running_stack:
        yield running_stack
