"""The store's schema version: applying the migrations, and checking that a database is at the newest one.

``grantflow migrate`` is the only writer of the schema (:func:`upgrade_schema`, or
:func:`migrate_database` given only a URL: migrations never need the ledger key). Workers and web
servers call :func:`check_schema` at start and refuse to run on a schema older (or newer) than the code,
instead of migrating behind the operator's back while other processes may still run the old release.

Errors: :class:`SchemaNotCurrent` (a :class:`~store.errors.StoreError`) says which revision the database
is at, which one this grantflow needs, and what to run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from store.engine import IMMEDIATE, make_engine
from store.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# PostgreSQL advisory lock key (64-bit) serialising migrations across processes.
PG_MIGRATE_LOCK = 0x6772_616E_746D_6967  # "grantmig"
# alembic's ``context`` is process-global: two migrations must not run in one process at the same time.
_MIGRATE_IN_PROCESS = threading.Lock()


class SchemaNotCurrent(StoreError):
    """The database's schema is not the one this grantflow was built for; the message says what to do."""


def alembic_config() -> Config:
    """alembic's configuration for the store's migrations (no ini file needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration this grantflow ships."""
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None, "the store ships no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database grantflow has never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Return if the database is at :func:`head_revision`, else raise :class:`SchemaNotCurrent`."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaNotCurrent(
            f"the database has no grantflow schema (this release needs revision {head}): "
            "run `grantflow migrate` first"
        )
    known = _known_revisions()
    if current in known:
        raise SchemaNotCurrent(
            f"the database schema is at revision {current}, this release needs {head}: "
            "run `grantflow migrate` first"
        )
    raise SchemaNotCurrent(
        f"the database schema is at revision {current}, which this release does not know (its newest is "
        f"{head}): a newer grantflow migrated it; run that release, or upgrade this one"
    )


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    return {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's write lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory
    lock), so a second process migrating at the same moment waits and then finds nothing to do."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            conn.execution_options(**{IMMEDIATE: True})
        with conn.begin():
            if not sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATE_LOCK})
            yield conn


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest revision (alembic ``upgrade head``), safe from several processes."""
    from alembic import command

    cfg = alembic_config()
    with _MIGRATE_IN_PROCESS, _locked(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def migrate_database(url: str) -> str:
    """Migrate the database at ``url`` (all ``grantflow migrate`` needs); returns the revision it is at."""
    engine = make_engine(url)
    try:
        upgrade_schema(engine)
        return head_revision()
    finally:
        engine.dispose()
