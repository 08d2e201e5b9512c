"""Heartbeats while an activity awaits work that cannot heartbeat itself.

``activity.heartbeat`` must be called on the activity's event loop: code running in a thread
(``asyncio.to_thread``: a long database transaction, the blocking Jira client) cannot heartbeat, and a
single call may take longer than the activity's heartbeat timeout — Temporal would then time the activity
out and run it again while the first attempt is still working. :func:`heartbeating` awaits such work and
heartbeats every :data:`HEARTBEAT_EVERY` seconds meanwhile (Temporal throttles what it sends to the
server, so frequent calls cost nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

HEARTBEAT_EVERY = 5.0
"""Seconds between heartbeats while waiting; well under the shortest heartbeat timeout (30 s)."""


async def heartbeating(work: Awaitable[T], details: Callable[[], Any] | None = None) -> T:
    """The result of ``work``, heartbeating ``details()`` (or nothing) while it runs. Cancelling the
    caller cancels ``work``."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
            if done:
                return task.result()
            if details is None:
                activity.heartbeat()
            else:
                activity.heartbeat(details())
    finally:
        task.cancel()
