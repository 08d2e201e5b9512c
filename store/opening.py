"""Opening the store from settings: the one place that turns ``GRANTFLOW_DATABASE_URL`` and the ledger
settings into a :class:`~store.Store`, for the worker, the web app and the command line alike.

Only :func:`open_store` with ``migrate=True`` (``grantflow dev``) ever changes the schema; servers and
workers use :func:`open_current_store`, which refuses a schema older than this release.
"""

from __future__ import annotations

from configuration.settings import ServiceUnreachable, Settings, SettingsError
from store.anchors import shared_anchor_from_settings
from store.store import Store


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """The store; ``migrate=False`` for read-only uses (an auditor's ``ledger verify`` needs no DDL).
    Only ``grantflow dev`` migrates here: deployments run ``grantflow migrate``, and their workers and
    servers use :func:`open_current_store`."""
    store = Store(
        settings.effective_database_url,
        ledger_key=settings.require_secret("ledger_key").encode(),
        # One shared anchor when configured (production); else the per-process file (dev, tests).
        anchor_path=None if settings.ledger_anchor else settings.effective_anchor_path,
        shared_anchor=shared_anchor_from_settings(settings),
    )
    if migrate:
        store.migrate()
    return store


def database_location(settings: Settings) -> str:
    """The database URL without its credentials, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(settings.effective_database_url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by whatever parses it next
        return "(unparsable URL)"


def open_current_store(settings: Settings) -> Store:
    """The store of a worker or web server, whose schema must already be at this release's revision.

    Never migrates (``grantflow migrate`` is the only writer of the schema, run once per release while
    old processes may still be running). :class:`ServiceUnreachable` when the database cannot be reached,
    :class:`SettingsError` when its schema is not current (saying to run ``grantflow migrate``)."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from store.migration import SchemaNotCurrent

    where = f"GRANTFLOW_DATABASE_URL={database_location(settings)}"
    try:
        store = open_store(settings, migrate=False)
    except ArgumentError as exc:
        raise SettingsError(f"{where}: not a database URL ({exc})") from None
    try:
        store.check_schema()
    except SchemaNotCurrent as exc:
        store.close()
        raise SettingsError(f"{where}: {exc}") from None
    except SQLAlchemyError as exc:
        store.close()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ServiceUnreachable(f"{where}: the database cannot be reached ({reason})") from None
    return store
