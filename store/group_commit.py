"""Group commit: threads of one process that append to the ledger at the same moment share one transaction.

Why this exists: an append holds the ledger's lock (SQLite's write lock, PostgreSQL's advisory lock) from its
first read to its commit, so appends are serial however many threads make them, and each one pays a whole
commit and, with an anchor file, an fsync. A worker appends from its activity threads (16), and with 4 or 16
of them appending, PostgreSQL managed a quarter of the plain inserts' rate (``python -m bench ledger``,
2026-12-07). Here the first thread to find no batch being committed leads: it takes what is queued (at most
``max_batch``), commits it in one transaction and hands each request its own outcome. Threads that queued
meanwhile wait for that commit; then each finds its request done, or leads the next batch. A thread alone
commits alone, at once: nobody waits for company.

Across processes nothing changes: each batch still takes the database's lock, so batches from several
workers are serialised by the database as single appends were.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar


class Pending(Protocol):
    """What the group commit needs of a request: whether it is settled, and a way to fail it."""

    settled: bool

    def fail(self, error: BaseException) -> None: ...


R = TypeVar("R", bound=Pending)


class GroupCommit(Generic[R]):
    def __init__(self, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("a batch holds at least one request")
        self._max_batch = max_batch
        self._queue: list[R] = []
        self._queue_lock = threading.Lock()
        self._leading = threading.Lock()  # held by the thread committing a batch

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        with self._queue_lock:
            return len(self._queue)

    def submit(self, request: R, commit: Callable[[Sequence[R]], None]) -> None:
        """Return once ``request`` is settled: committed in some batch, or failed with it.

        ``commit(batch)`` writes the batch in one transaction and gives each request its outcome; the
        requests are then settled. If it raises, nothing of the batch was committed, and every request in it
        fails with that error (each caller raises it in its own thread)."""
        with self._queue_lock:
            self._queue.append(request)
        with self._leading:
            while not request.settled:
                with self._queue_lock:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                try:
                    commit(batch)
                except BaseException as exc:
                    for queued in batch:
                        queued.fail(exc)
                    if not isinstance(exc, Exception):  # an interrupt stops this thread, not the others
                        raise
                else:
                    for queued in batch:
                        queued.settled = True
