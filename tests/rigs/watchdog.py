"""A test that hangs fails within minutes, saying where it hung.

Why this exists: one CI run spent its whole 90-minute budget on a single test that never returned (the
output stopped after a test's last dot, in its teardown), and left nothing to read. Here a timer thread
watches each test; past its limit it prints every thread's stack and every asyncio task's stack on the
terminal's stdout (where CI's log is; ``out`` is a copy of it taken before pytest captures a test's output,
as pytest's own faulthandler plugin does for stderr), then interrupts pytest with SIGINT so the run ends
with its summary. If pytest cannot unwind either (the interrupt is caught by the hung code, or a teardown
hangs again), the process exits ``GRACE_S`` seconds later.

The report ends with the last errors the Temporal SDK logged: a worker whose shutdown waits forever on a
workflow it cannot evict (the SDK retries the eviction every 2 s and logs why once) says so there.

Limits are far above what any test takes: the default suite's slowest test takes about 40 s, the long
scenarios' about 10 minutes. Scenarios marked ``on_demand`` are run by hand and are not watched.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

import pytest

DEFAULT_LIMIT_S = 600.0
LONG_LIMIT_S = 2400.0
GRACE_S = 120.0


def limit_for(item: pytest.Item) -> float | None:
    """Seconds ``item`` may take, setup and teardown included; None: not watched."""
    if item.get_closest_marker("on_demand") is not None:
        return None
    if item.get_closest_marker("long") is not None:
        return LONG_LIMIT_S
    return DEFAULT_LIMIT_S


class RecentErrors(logging.Handler):
    """The last ``kept`` ERROR records of the loggers it is added to, formatted with their tracebacks."""

    def __init__(self, kept: int = 20) -> None:
        super().__init__(level=logging.ERROR)
        self.records: deque[str] = deque(maxlen=kept)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(self.format(record))
        except Exception:  # a report must not fail the code that logged
            self.handleError(record)


class Watchdog:
    """One per session. ``loop`` is the session's event loop, whose tasks are printed when a test hangs."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        interrupt: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGINT),
        exit_process: Callable[[int], None] = os._exit,
        grace: float = GRACE_S,
    ) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.out = out
        self._interrupt = interrupt
        self._exit_process = exit_process
        self._grace = grace
        self._fired = threading.Event()
        self.sdk_errors = RecentErrors()

    @property
    def fired(self) -> bool:
        return self._fired.is_set()

    @contextmanager
    def watching(self, nodeid: str, limit: float | None) -> Iterator[None]:
        """The timer runs while the ``with`` body (the test's setup, call and teardown) runs."""
        if limit is None:
            yield
            return
        timer = threading.Timer(limit, self._hung, args=(nodeid, limit))
        timer.daemon = True
        timer.name = "test-watchdog"
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _hung(self, nodeid: str, limit: float) -> None:
        self._fired.set()
        out = self.out
        if out is None:  # no stdout at all: nothing to print to, still end the run
            self._interrupt()
            return
        print(f"\n\n!!! {nodeid} has run for more than {limit:.0f} s: it is taken as hung.", file=out)
        print("!!! Every thread's stack:", file=out, flush=True)
        faulthandler.dump_traceback(file=out, all_threads=True)
        self._print_tasks(out)
        errors = list(self.sdk_errors.records)
        print(f"!!! The last {len(errors)} errors the Temporal SDK logged:", file=out)
        for line in errors:
            print(line, file=out)
        print("!!! Interrupting the run.", file=out, flush=True)
        exit_later = threading.Timer(self._grace, self._exit, args=(out,))
        exit_later.daemon = True
        exit_later.start()
        self._interrupt()

    def _print_tasks(self, out: TextIO) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        tasks: list[asyncio.Task[object]] | None = None
        for _ in range(5):
            try:  # read from another thread while the loop runs: good enough for a report
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:  # the set changed size while it was read
                continue
        if tasks is None:
            print("!!! (the event loop's tasks changed too fast to list)", file=out, flush=True)
            return
        print(f"!!! The session loop's {len(tasks)} asyncio tasks:", file=out)
        for task in tasks:
            print(f"--- {task!r}", file=out)
            try:
                task.print_stack(limit=12, file=out)
            except Exception as exc:  # a report must not fail: say why this one is missing
                print(f"    (stack not readable: {exc})", file=out)
        out.flush()

    def _exit(self, out: TextIO) -> None:
        print(
            f"!!! pytest did not stop within {self._grace:.0f} s of the interrupt: exiting.",
            file=out,
            flush=True,
        )
        self._exit_process(3)
