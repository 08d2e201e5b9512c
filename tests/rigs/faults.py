"""Faults for the channel rig: which of grantflow's calls to Slack, Jira and SMTP fail, and how.

:class:`FaultPlan` decides, call by call, whether a call grantflow makes fails — the writes (Slack
``chat.postMessage``/``chat.update``/``conversations.open``, Jira create/transition/comment, SMTP ``DATA``)
and the look-ups that make them idempotent (Slack ``conversations.history``/``users.lookupByEmail``, Jira's
issue search, user search and GETs of an issue, its transitions and its comments) — and how (429 with
``Retry-After``, 503 before or after the write, a connection dropped before or after the write; a look-up
fails before it is answered: 429, 503 or a drop; SMTP: 451 or a drop before the message is kept). Only
grantflow's own calls fail: Slack's with the stand-in's bot token, Jira's by grantflow's API user (a
person's own calls, the test's in-process reads and people's moves through ``transition_as`` never do). The
n-th call of each kind gets the same fate on every run with the same seed. The stand-ins are subclassed for
this (:class:`FaultySlack`, :class:`FaultyJira`, :class:`FaultySmtp`), feeding their own
``fail_next``/``drop_next`` at the moment a call arrives; the Slack and Jira subclasses also record when each
call arrived (``arrivals``). With a third of the calls failing, :class:`QuickPresentRetries` shortens the
waits between the presentation activity's attempts so that a flow takes seconds, not minutes.

Nothing here fails a call by itself: with the plan off (the default) the subclasses behave exactly as the
stand-ins they extend.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, NamedTuple

from aiohttp import web
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from sandbox.jira import JiraStandIn
from sandbox.slack import SlackStandIn
from sandbox.smtp import SmtpSink

__all__ = [
    "FaultPlan",
    "FaultyJira",
    "FaultySlack",
    "FaultySmtp",
    "Injected",
    "QuickPresentRetries",
    "fault_of",
]


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
    """The Slack stand-in, failing the writes and look-ups the plan picks among those made with its bot
    token (grantflow's); ``arrivals`` holds (method, monotonic time) of every Web API call."""

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

    def _take_fault(self, method: str, call: str | None = None) -> Any:  # once per call, under the lock
        self.arrivals.append((method, time.monotonic()))
        kind = None
        grantflows = _slack_token.get() == self.bot_token
        if grantflows and method in self.WRITES:
            kind = self.plan.choose("slack", method, FaultPlan.SLACK_KINDS)
        elif grantflows and method in self.READS:
            kind = self.plan.choose("slack", method, FaultPlan.READ_KINDS)
        if kind == "429":
            self.fail_next(method, 429, retry_after=self.plan.retry_after)
        elif kind in ("503", "503-after"):
            self.fail_next(method, 503, after_write=kind == "503-after")
        elif kind in ("drop", "drop-after"):
            self.drop_next(method, after_write=kind == "drop-after")
        return super()._take_fault(method, call)

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
    issue, its transitions and comments, of grantflow's API user (``api_user``) that the plan picks (a
    person's own calls never fail, nor do the in-process helpers); ``arrivals`` holds (method, api path,
    monotonic time)."""

    def __init__(self, plan: FaultPlan, *, api_user: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.api_user = api_user  # grantflow's: only its calls fail
        self.arrivals: list[tuple[str, str, float]] = []

    def _handle(
        self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str], raw: bytes
    ) -> Any:  # called once per request, under the stand-in's lock
        match = _API_PATH.match(path)
        api_path = (match.group(1) or "/") if match else ""
        self.arrivals.append((method, api_path, time.monotonic()))
        faultable = _jira_call_kind(method, api_path) if match else None
        kind = None
        if faultable is not None and _basic_user(headers) == self.api_user:
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
    (documented with grantflow's email channel)."""

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
