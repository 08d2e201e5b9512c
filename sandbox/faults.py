"""Fault injection shared by every stand-in: answer the next matching calls with a failure.

Tests ask a stand-in to fail the next ``count`` calls matching a path prefix (hoop, Jira, SCIM) or a Web API
method (Slack), optionally only for one HTTP method: with a status (429 with ``Retry-After``, 503 …), or by
closing the connection without an answer. ``after_write=True`` carries the call out first and then fails
its answer — the write happened, the caller cannot know — which is what makes a client's idempotency
visible. Each stand-in shapes the failure's body as its vendor does (Slack's HTML edge page, Jira's
``errorMessages``, a SCIM error); this module only decides *which* call fails and *how*.

A :class:`FaultPlan` is thread-safe: tests add faults from their thread while the server takes them on
its own.

Besides the faults asked for one by one, a plan can fail calls at random (:meth:`FaultPlan.fail_randomly`
with a :class:`RandomFaults`): a seeded share of the matching calls, each getting one of the kinds in
:data:`RANDOM_KINDS` — a 429 with ``Retry-After``, a 503, a *timeout* (the call is carried out and its answer
held back longer than the client waits) or a dropped connection (before or after the write). Whether the
n-th call of a kind fails, and how, depends only on the seed, the call and n, so concurrent callers do not
change each other's fates. A call is named by its method, path, query and a digest of its body
(:func:`call_name`), so a retry has the name of the call it repeats. The plan counts what it injected per
kind, and notes when each 429 was answered and when every call arrived, so a test can measure whether the
client's next identical call waited for ``Retry-After`` (:meth:`FaultPlan.rate_limit_gaps`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RANDOM_KINDS = ("429", "503", "timeout", "drop")
"""What a randomly failed call gets: ``429`` (with ``Retry-After``), ``503``, ``timeout`` (carried out, its
answer held back for :attr:`RandomFaults.delay` seconds, longer than the client waits) and ``drop`` (the
connection closed without an answer, before or after the write, half each)."""


@dataclass
class Fault:
    """One injected failure, for the next ``remaining`` calls that match it."""

    prefix: str  # a path prefix, or a Slack method name (matched whole when ``exact``)
    status: int = 503  # the answer's status; unused when ``drop``
    remaining: int = 1
    method: str | None = None  # only this HTTP method (upper case), any when None
    retry_after: float | str | None = None  # seconds, or an HTTP-date string
    after_write: bool = False  # carry the call out, then fail its answer
    drop: bool = False  # close the connection without an answer
    error: str = ""  # the vendor's error code, where it has one (Slack's ``ratelimited``)
    html: bool = False  # answer with an HTML page, as a proxy in front of the vendor would
    exact: bool = False  # ``prefix`` must equal the call's path or method name
    delay: float = 0.0  # hold the call's own answer back this long (a timeout: the client has given up)
    kind: str = ""  # the random kind (RANDOM_KINDS) that made this fault, "" for one asked for
    call: str = ""  # the call it was taken by (see ``FaultPlan.take``), for the plan's records

    def matches(self, path: str, method: str | None) -> bool:
        hit = path == self.prefix if self.exact else path.startswith(self.prefix)
        return hit and (self.method is None or method is None or self.method == method.upper())

    def retry_after_header(self) -> str | None:
        """``Retry-After`` as sent: whole seconds, or the HTTP-date given."""
        if self.retry_after is None:
            return None
        if isinstance(self.retry_after, int | float):
            return str(int(self.retry_after))
        return self.retry_after


@dataclass(frozen=True)
class RandomFaults:
    """Fail a share of the calls at random: ``rate`` of the calls whose path (or Slack method) starts with
    ``prefix`` — of the first ``calls`` of them, when given — each with one of ``kinds``. A 429 carries
    ``Retry-After: retry_after``; a timeout holds the answer back ``delay`` seconds, which a test sets above
    the client's own timeout. ``seed`` makes the fates reproducible."""

    seed: int
    rate: float
    kinds: Sequence[str] = RANDOM_KINDS
    retry_after: int = 1
    delay: float = 12.0
    prefix: str = ""
    methods: Sequence[str] | None = None  # only these HTTP methods, any when None
    calls: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {self.rate}")
        if not self.kinds or set(self.kinds) - set(RANDOM_KINDS):
            raise ValueError(f"kinds must be some of {RANDOM_KINDS}, not {tuple(self.kinds)}")
        if self.retry_after < 0 or self.delay < 0:
            raise ValueError("retry_after and delay cannot be negative")
        if self.calls is not None and self.calls < 0:
            raise ValueError("calls cannot be negative")


@dataclass(frozen=True)
class RateLimited:
    """A 429 the plan injected: on which call, when it was answered (``time.monotonic()``), for how long."""

    call: str
    answered_at: float
    retry_after: float


@dataclass(frozen=True)
class RateLimitGap:
    """How long the client waited after a 429 before calling the same endpoint again (None: it never did)."""

    call: str
    retry_after: float
    gap: float | None


@dataclass
class _RandomState:
    spec: RandomFaults
    seen: int = 0  # matching calls so far
    nth: Counter[str] = field(default_factory=Counter)  # matching calls so far, per call


class FaultPlan:
    """The faults a stand-in still has to inject, taken in the order they were added, and optionally a
    share of all calls failed at random (:meth:`fail_randomly`); faults asked for one by one come first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random: _RandomState | None = None
        self.injected: Counter[str] = Counter()  # random faults injected, per kind
        self.rate_limited: list[RateLimited] = []
        self.arrivals: list[tuple[str, float]] = []  # (call, monotonic time) while failing at random

    def add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        if fault.method is not None:
            fault.method = fault.method.upper()
        with self._lock:
            self._faults.append(fault)

    def fail_randomly(self, spec: RandomFaults) -> None:
        """From now on, fail calls at random as ``spec`` says (the records start afresh)."""
        with self._lock:
            self._random = _RandomState(spec)
            self.injected.clear()
            self.rate_limited.clear()
            self.arrivals.clear()

    def stop_failing_randomly(self) -> None:
        """No more random faults; what was injected stays recorded."""
        with self._lock:
            self._random = None

    def take(self, path: str, method: str | None = None, *, call: str | None = None) -> Fault | None:
        """The first fault matching the call, counted down (and removed when spent), else the call's
        random fate, or None. ``call`` names the call for the records and the random fates (the stand-in
        passes the HTTP method, path, query and a digest of the body, so a retried call has the same name);
        by default the method and path."""
        call = call or f"{method or ''} {path}".strip()
        now = time.monotonic()
        with self._lock:
            if self._random is not None:
                self.arrivals.append((call, now))
            for fault in self._faults:
                if fault.matches(path, method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            chosen = self._random_fault(path, method, call)
            if chosen is not None:
                self.injected[chosen.kind] += 1
                if chosen.kind == "429":
                    self.rate_limited.append(RateLimited(call, now, float(chosen.retry_after or 0)))
            return chosen

    def _random_fault(self, path: str, method: str | None, call: str) -> Fault | None:
        state = self._random
        if state is None:
            return None
        spec = state.spec
        if not path.startswith(spec.prefix):
            return None
        if spec.methods is not None and (method or "").upper() not in {m.upper() for m in spec.methods}:
            return None
        if spec.calls is not None and state.seen >= spec.calls:
            return None
        state.seen += 1
        nth = state.nth[call]
        state.nth[call] += 1
        rng = random.Random(f"{spec.seed}|{call}|{nth}")
        if rng.random() >= spec.rate:
            return None
        kind = rng.choice(list(spec.kinds))
        if kind == "429":
            return Fault(
                path, status=429, retry_after=spec.retry_after, kind=kind, call=call, error="ratelimited"
            )
        if kind == "503":
            return Fault(path, status=503, kind=kind, call=call)
        if kind == "timeout":
            return Fault(path, after_write=True, delay=spec.delay, kind=kind, call=call)
        return Fault(path, drop=True, after_write=rng.random() < 0.5, kind=kind, call=call)

    def rate_limit_gaps(self) -> list[RateLimitGap]:
        """For each injected 429, the time from its answer to the next arrival of the same call."""
        with self._lock:
            limited, arrivals = list(self.rate_limited), list(self.arrivals)
        gaps = []
        for hit in limited:
            later = [at for call, at in arrivals if call == hit.call and at > hit.answered_at]
            gap = min(later) - hit.answered_at if later else None
            gaps.append(RateLimitGap(hit.call, hit.retry_after, gap))
        return gaps

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)


def call_name(method: str, path: str, query: str, body: bytes) -> str:
    """A call as the plan names it: a retry of the same request has the same name, another request (another
    resource, another body) a different one."""
    digest = hashlib.sha256(body).hexdigest()[:12] if body else "-"
    return f"{method.upper()} {path}{'?' + query if query else ''} {digest}"


async def drop_asgi_connection(send: Any) -> None:
    """Close the client's connection without an answer. ASGI has no message for that, so reach the transport
    through uvicorn's request cycle (``send`` is its bound method); fail loudly under any other server."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "close"):
        raise RuntimeError("dropping a connection needs uvicorn's h11/httptools protocol (no transport)")
    transport.close()
    for _ in range(20):  # let uvicorn see the connection go, so it does not try to answer 500
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)
