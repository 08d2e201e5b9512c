"""The jit benchmark's hoop stand-in in a process of its own, driven through a proxy.

hoop is a service of its own in production. Run inside the measured process, the stand-in's HTTP server
competed with the worker for the interpreter's lock: at 1,000 grants its uvicorn thread was a sixth of the
worker process's samples (py-spy, 2026-12-08), and every answer it sent waited for the lock first. The
benchmark still drives it directly (seeding, opening sessions as ``hoop connect`` does, reading its event
log): those calls go to the other process through a ``multiprocessing`` manager. Its events carry
``time.monotonic()``, the system-wide ``CLOCK_MONOTONIC`` on Linux, so they still compare with the
benchmark's own clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import get_context
from multiprocessing.managers import BaseManager
from typing import cast

from sandbox.hoop import HoopStandIn

DRIVEN = (
    "add_user",
    "add_connection",
    "add_access_rule",
    "start",
    "stop",
    "session",
    "events",
    "connect",
    "review",
)
"""The stand-in's methods the benchmark calls."""


class _HoopManager(BaseManager):
    pass


_HoopManager.register("HoopStandIn", HoopStandIn, exposed=DRIVEN)


@contextmanager
def hoop_in_its_own_process(**options: object) -> Iterator[HoopStandIn]:
    """A ``HoopStandIn(**options)`` living in a new process (spawned: the benchmark's process already runs
    threads, which a fork would copy half-way), as a proxy offering :data:`DRIVEN`; stopped on exit."""
    manager = _HoopManager(ctx=get_context("spawn"))
    manager.start()
    try:
        yield cast(HoopStandIn, manager.HoopStandIn(**options))  # type: ignore[attr-defined]
    finally:
        manager.shutdown()
