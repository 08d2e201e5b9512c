"""The SQL store (SQLite embedded, PostgreSQL in production): the directory, requests and the keyed,
hash-chained evidence ledger, with alembic migrations in :mod:`store.migrations`."""

from store.errors import SlotTaken, StoreError
from store.ledger import GENESIS_HASH, LedgerEntry, LedgerHead, LedgerVerification
from store.store import Store

__all__ = [
    "GENESIS_HASH",
    "LedgerEntry",
    "LedgerHead",
    "LedgerVerification",
    "SlotTaken",
    "Store",
    "StoreError",
]
