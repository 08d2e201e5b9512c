"""Database fixtures: every test that uses them runs once on SQLite and once on PostgreSQL.

Use them from a test module with::

    pytest_plugins = ["tests.db"]

(or import the fixtures by name). Importing constants from here as well is fine: the module opts out
of assertion rewriting (PYTEST_DONT_REWRITE), so pytest does not warn that it was imported first.

Fixtures:

- ``store_url``: parametrized ``sqlite`` (a file under ``tmp_path``; always runs) and ``postgres``
  (marked ``postgres``; a fresh schema per test, selected with ``?options=-csearch_path=<schema>`` and
  dropped afterwards; skipped with the connection error as the reason when PostgreSQL is unreachable).
  The server defaults to ``postgresql://postgres@127.0.0.1:5432/test``; set ``GRANTFLOW_TEST_POSTGRES_URL``
  to use another one.
- ``make_store``: a factory ``make_store(ledger_key=..., anchor_path=..., migrate=True) -> Store`` on
  ``store_url``; every store it made is closed after the test.
- ``store``: one migrated store with :data:`TEST_LEDGER_KEY` and an anchor file under ``tmp_path``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from store import Store

TEST_LEDGER_KEY = b"test-ledger-key-0123456789abcdef"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
_POSTGRES_URL_ENV = "GRANTFLOW_TEST_POSTGRES_URL"
# Read at import: a conftest may clear GRANTFLOW_* variables for each test.
POSTGRES_URL = os.environ.get(_POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL

_postgres_checked: list[str | None] = []  # [None] reachable, [reason] not, [] not yet tried


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg://`` -> ``postgresql://`` for psycopg itself."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def _where(url: str) -> str:
    rest = url.partition("://")[2]
    hostpart = rest.partition("@")[2] or rest
    return hostpart.partition("/")[0] or "localhost"


def postgres_unavailable() -> str | None:
    """None if the test PostgreSQL answers, else why not (checked once per session)."""
    if not _postgres_checked:
        try:
            import psycopg

            with psycopg.connect(_libpq_url(POSTGRES_URL), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _postgres_checked.append(None)
        except Exception as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            _postgres_checked.append(f"PostgreSQL not reachable at {_where(POSTGRES_URL)}: {detail}")
    return _postgres_checked[0]


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(_libpq_url(POSTGRES_URL), autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '20s'")
        conn.execute(sql.encode())  # identifiers generated here, never user input


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL nobody else uses: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"gf_test_{uuid.uuid4().hex[:16]}"
    _admin(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}', safe='-')}"
    finally:
        _admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


_DEFAULT: Any = object()


@pytest.fixture
def make_store(store_url: str, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """``make_store(*, ledger_key=TEST_LEDGER_KEY, anchor_path=<tmp>/ledger.anchor, migrate=True)``."""
    made: list[Store] = []

    def make(
        *, ledger_key: bytes = TEST_LEDGER_KEY, anchor_path: Path | None = _DEFAULT, migrate: bool = True
    ) -> Store:
        path = tmp_path / "ledger.anchor" if anchor_path is _DEFAULT else anchor_path
        store = Store(store_url, ledger_key=ledger_key, anchor_path=path)
        made.append(store)
        if migrate:
            store.migrate()
        return store

    try:
        yield make
    finally:
        for store in made:
            store.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """A migrated store on ``store_url`` (anchor file ``<tmp_path>/ledger.anchor``)."""
    return make_store()
