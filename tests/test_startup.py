"""``grantflow worker`` / ``server`` / ``migrate`` as an operator runs them: real subprocesses with bad
configurations. Every start-up failure exits with the README's code (3 a service unreachable, 4 invalid
configuration), names the setting on stderr and prints no traceback; nothing falls back to the example
policies, nobody migrates but ``grantflow migrate``, and a worker's sticky queue hands a workflow on
within about 2 s when that worker is gone."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from examples import ORGANISATION_FILE, POLICIES_FILE
from web.auth import issue_token

UNREACHABLE_TEMPORAL = "127.0.0.1:1"
UNREACHABLE_POSTGRES = "postgresql://grantflow@127.0.0.1:1/grantflow"


def grantflow(
    tmp_path: Path, *args: str, settings: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``grantflow ARGS`` in a fresh process with only ``settings`` (GRANTFLOW_<NAME>) configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANTFLOW_")}
    env["GRANTFLOW_STATE_DIR"] = str(tmp_path / "state")
    env.update({f"GRANTFLOW_{name.upper()}": value for name, value in (settings or {}).items()})
    return subprocess.run(
        [sys.executable, "-m", "grantflow", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(result: subprocess.CompletedProcess[str], code: int, *named: str) -> str:
    """Assert the process stopped with ``code``, one message naming each of ``named``, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for text in named:
        assert text in result.stderr, result.stderr
    return result.stderr


def production(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A complete worker and server configuration on a migrated SQLite database, Temporal unreachable."""
    database = f"sqlite:///{tmp_path / 'grantflow.db'}"
    tokens = tmp_path / "tokens.toml"
    if not tokens.exists():
        issue_token(tokens, "ops-bot", None, ["admin"])
    settings = {
        "database_url": database,
        "ledger_key": "a-ledger-key",
        "policies_file": str(POLICIES_FILE),
        "organisation_file": str(ORGANISATION_FILE),
        "hoop_url": "http://127.0.0.1:9",
        "hoop_api_key": "a-hoop-key",
        "review_link_secret": "a-link-secret",
        "public_url": "https://grantflow.example.com",
        "tokens_file": str(tokens),
        "temporal_address": UNREACHABLE_TEMPORAL,
    }
    return settings | extra


def migrated(tmp_path: Path) -> dict[str, str]:
    """:func:`production`, its database migrated in this process (``grantflow migrate`` itself is run as
    a process in :func:`test_workers_and_servers_never_migrate_and_migrate_needs_only_the_url`)."""
    from store.migration import migrate_database

    settings = production(tmp_path)
    migrate_database(settings["database_url"])
    return settings


@pytest.mark.parametrize("process", ["worker", "server"])
def test_no_policies_file_stops_at_start_instead_of_using_the_examples(tmp_path: Path, process: str) -> None:
    settings = migrated(tmp_path)
    del settings["policies_file"]
    refused(grantflow(tmp_path, process, settings=settings), 4, "GRANTFLOW_POLICIES_FILE is not set")
    missing = str(tmp_path / "policies.toml")
    refused(
        grantflow(tmp_path, process, settings=settings | {"policies_file": missing}),
        4,
        f"GRANTFLOW_POLICIES_FILE={missing}: the access policies file does not exist",
    )


def test_worker_configuration_problems_are_named_together(tmp_path: Path) -> None:
    settings = migrated(tmp_path)
    for name in ("hoop_url", "public_url"):
        del settings[name]
    settings["organisation_file"] = str(tmp_path / "org.toml")
    refused(
        grantflow(tmp_path, "worker", settings=settings),
        4,
        "GRANTFLOW_HOOP_URL is not set",
        f"GRANTFLOW_ORGANISATION_FILE={tmp_path / 'org.toml'}: the organisation file does not exist",
        # review links are sent (a link secret is set): they must not point at 127.0.0.1:8000
        "GRANTFLOW_PUBLIC_URL is not set",
    )


def test_unreachable_temporal_exits_3_naming_the_address(tmp_path: Path) -> None:
    settings = migrated(tmp_path)
    for process in ("worker", "server"):
        refused(
            grantflow(tmp_path, process, settings=settings),
            3,
            f"GRANTFLOW_TEMPORAL_ADDRESS={UNREACHABLE_TEMPORAL}",
        )


def test_unreachable_database_exits_3_naming_the_url(tmp_path: Path) -> None:
    settings = production(tmp_path, database_url=UNREACHABLE_POSTGRES)
    for process in ("worker", "migrate"):
        stderr = refused(
            grantflow(tmp_path, process, settings=settings), 3, "GRANTFLOW_DATABASE_URL=postgresql"
        )
        assert "cannot be reached" in stderr


def test_workers_and_servers_never_migrate_and_migrate_needs_only_the_url(tmp_path: Path) -> None:
    settings = production(tmp_path)
    for process in ("worker", "server"):
        refused(
            grantflow(tmp_path, process, settings=settings),
            4,
            "GRANTFLOW_DATABASE_URL",
            "run `grantflow migrate`",
        )
    with sqlite3.connect(tmp_path / "grantflow.db") as db:  # the refusals created no table
        assert db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []

    done = grantflow(
        tmp_path, "migrate", settings={"database_url": settings["database_url"]}
    )  # no ledger key
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    # past the schema check now: the next thing it needs is Temporal
    refused(grantflow(tmp_path, "worker", settings=settings), 3, "GRANTFLOW_TEMPORAL_ADDRESS")


def test_server_without_usable_tokens_refuses_to_start(tmp_path: Path) -> None:
    settings = migrated(tmp_path)
    del settings["tokens_file"]
    refused(grantflow(tmp_path, "server", settings=settings), 4, "GRANTFLOW_TOKENS_FILE is not set")
    missing = tmp_path / "nope.toml"
    refused(
        grantflow(tmp_path, "server", settings=settings | {"tokens_file": str(missing)}),
        4,
        f"GRANTFLOW_TOKENS_FILE={missing}: the API tokens file does not exist",
    )
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    refused(
        grantflow(tmp_path, "server", settings=settings | {"tokens_file": str(empty)}),
        4,
        f"GRANTFLOW_TOKENS_FILE={empty}: the file lists no tokens",
    )


async def test_a_port_in_use_says_which(tmp_path: Path, dev_env: WorkflowEnvironment) -> None:
    import asyncio

    settings = migrated(tmp_path)
    settings["temporal_address"] = dev_env.client.service_client.config.target_host
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = await asyncio.to_thread(
            grantflow, tmp_path, "server", settings=settings | {"web_port": str(port)}
        )
    refused(result, 4, "GRANTFLOW_WEB_HOST / GRANTFLOW_WEB_PORT", f"127.0.0.1:{port}")


async def test_build_worker_hands_a_dead_workers_tasks_on_within_2_seconds(
    dev_env: WorkflowEnvironment,
) -> None:
    from worker import build_worker

    worker = build_worker(dev_env.client, "sticky-option", [])
    assert worker.config()["sticky_queue_schedule_to_start_timeout"] == timedelta(seconds=2)


def test_the_schema_check_names_both_revisions_and_what_to_run(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from store.engine import make_engine
    from store.migration import SchemaNotCurrent, alembic_config, check_schema, head_revision, upgrade_schema

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        config = alembic_config()
        with engine.begin() as conn:  # a database left at the first release's schema
            config.attributes["connection"] = conn
            command.upgrade(config, "0001_initial")
        with pytest.raises(SchemaNotCurrent) as old:
            check_schema(engine)
        assert str(old.value) == (
            f"the database schema is at revision 0001_initial, this release needs {head_revision()}: "
            "run `grantflow migrate` first"
        )
        upgrade_schema(engine)
        check_schema(engine)
        with engine.begin() as conn:  # migrated by a newer release
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        with pytest.raises(SchemaNotCurrent, match="9999_from_the_future, which this release does not know"):
            check_schema(engine)
    finally:
        engine.dispose()
