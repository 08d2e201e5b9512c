"""Fault injection shared by every stand-in: answer the next matching calls with a failure.

Tests ask a stand-in to fail the next ``count`` calls matching a path prefix (hoop, Jira, SCIM) or a Web API
method (Slack), optionally only for one HTTP method: with a status (429 with ``Retry-After``, 503 …), or by
closing the connection without an answer. ``after_write=True`` carries the call out first and then fails
its answer — the write happened, the caller cannot know — which is what makes a client's idempotency
visible. Each stand-in shapes the failure's body as its vendor does (Slack's HTML edge page, Jira's
``errorMessages``, a SCIM error); this module only decides *which* call fails and *how*.

A :class:`FaultPlan` is thread-safe: tests add faults from their thread while the server takes them on
its own.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any


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


class FaultPlan:
    """The faults a stand-in still has to inject, taken in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        if fault.method is not None:
            fault.method = fault.method.upper()
        with self._lock:
            self._faults.append(fault)

    def take(self, path: str, method: str | None = None) -> Fault | None:
        """The first fault matching the call, counted down (and removed when spent), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)


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
