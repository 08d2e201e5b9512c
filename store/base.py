"""``StoreBase``: what every part of the store shares — the engine, the ledger key and anchors, the
schema's lifecycle (migrate, check, close) and the two kinds of transaction.

Synchronous SQLAlchemy Core; async callers use ``asyncio.to_thread``. A store is safe to share between
threads, and several processes (worker, web app, several workers on PostgreSQL) may use one database.
This module holds no records: the directory, requests and ledger each have their own module.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from store.anchor_file import AnchorFile
from store.anchors import SharedAnchor
from store.engine import IMMEDIATE, SQLITE_BUSY_TIMEOUT_S, make_engine
from store.errors import StoreError
from store.ledger import LedgerEntry
from store.migration import check_schema, upgrade_schema


class StoreBase:
    """The database connection of a store; see :class:`store.Store` for what it records."""

    def __init__(
        self,
        url: str,
        *,
        ledger_key: bytes | str,
        anchor_path: Path | None,
        shared_anchor: SharedAnchor | None = None,
    ) -> None:
        """``anchor_path``: the append-only file every append writes its head to (dev, tests).
        ``shared_anchor``: the one anchor of a deployment, written by the anchoring job; when set,
        verification reads it instead of the file."""
        key = ledger_key.encode("utf-8") if isinstance(ledger_key, str) else bytes(ledger_key)
        if not key:
            raise StoreError("the ledger key is empty; set GRANTFLOW_LEDGER_KEY")
        self._key = key
        self._anchor_file = AnchorFile(anchor_path) if anchor_path is not None else None
        self._shared_anchor = shared_anchor
        self._engine = make_engine(url)
        self._sqlite = self._engine.dialect.name == "sqlite"
        # SQLite has one writer at a time. Threads of this process that wait for it in SQLite wait in its
        # busy handler, which polls: it sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries (SQLite's
        # src/main.c, sqliteDefaultBusyCallback), so a write queued behind another typically waited
        # milliseconds after the lock was free. Here they queue on a lock of their own and go the moment it is
        # released; other processes (the web app) still meet them at SQLite's lock. Re-entrant: a write
        # opened inside another on the same thread fails at SQLite's lock, as it did before, instead of
        # hanging here.
        self._writer = threading.RLock() if self._sqlite else None
        self._ledger_observers: list[Callable[[LedgerEntry], None]] = []  # see LedgerRecords.observe_ledger

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @property
    def anchor_path(self) -> Path | None:
        return self._anchor_file.path if self._anchor_file is not None else None

    @property
    def shared_anchor(self) -> SharedAnchor | None:
        return self._shared_anchor

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic ``upgrade head``).

        Safe to call from several processes at once: the whole upgrade runs in one transaction that first
        takes the write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), so a second caller
        waits and then finds nothing to do."""
        upgrade_schema(self._engine)

    def check_schema(self) -> None:
        """Raise :class:`~store.migration.SchemaNotCurrent` unless the schema is at the newest revision
        (workers and web servers check at start; only ``grantflow migrate`` changes the schema)."""
        check_schema(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self, *, lock: int | None = None) -> Iterator[Connection]:
        """A write transaction: on SQLite it holds the database write lock from its first statement;
        on PostgreSQL ``lock`` names an advisory lock held until commit."""
        with self._this_process_writes(), self._engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(**{IMMEDIATE: True})
            with conn.begin():
                if lock is not None and not self._sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})
                yield conn

    @contextlib.contextmanager
    def _this_process_writes(self) -> Iterator[None]:
        """On SQLite, wait for this process's other writers first (see ``__init__``); as long as SQLite
        would have waited for the database, then fail as it would have."""
        if self._writer is None:
            yield
            return
        if not self._writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise StoreError(
                f"the database was being written by another thread of this process for "
                f"{SQLITE_BUSY_TIMEOUT_S:.0f} s"
            )
        try:
            yield
        finally:
            self._writer.release()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn
