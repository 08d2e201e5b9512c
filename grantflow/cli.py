"""The ``grantflow`` command line. See ``grantflow --help``; the public surface is in the design note.

Exit codes: 0 success; 1 refused, conflict, not found or forbidden; 2 bad usage or bad input;
3 a server (grantflow, Temporal, the gateway) unreachable or failing; 4 invalid configuration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal, NoReturn

import click

from configuration.settings import (
    ServiceUnreachable,
    Settings,
    SettingsError,
    check_production,
)
from grantflow import __version__
from grantflow.context import EXIT_CONFIG, EXIT_UNREACHABLE, settings_from
from grantflow.help import SummaryGroup


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, cls=SummaryGroup)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="GRANTFLOW_CONFIG",
    help="TOML configuration file (settings named as the GRANTFLOW_* variables, lower case).",
)
@click.option(
    "--user",
    metavar="EMAIL",
    envvar="GRANTFLOW_USER",
    help="Act as this person, with their own token from <state>/people/ (grantflow dev writes them).",
)
@click.version_option(__version__, prog_name="grantflow")
@click.pass_context
def main(ctx: click.Context, config: Path | None, user: str | None) -> None:
    """grantflow: just-in-time access, recertification and identity sync beside the hoop gateway."""
    obj = ctx.ensure_object(dict)
    obj["config"], obj["user"] = config, user


def _logging(level: int = logging.INFO, log_format: Literal["text", "json"] = "text") -> None:
    from grantflow.logs import configure_logging

    configure_logging(level, log_format)


@main.command()
@click.option("--temporal-port", default=7233, show_default=True)
@click.option("--temporal-ui-port", default=8233, show_default=True)
@click.option("--web-port", default=8000, show_default=True)
@click.option("--hoop-port", default=8010, show_default=True)
@click.option("--scim-port", default=8020, show_default=True)
@click.option("--slack-port", default=8030, show_default=True)
@click.option("--jira-port", default=8040, show_default=True)
@click.option("--smtp-port", default=8025, show_default=True)
@click.option(
    "--with",
    "with_channels",
    type=click.Choice(["slack", "jira", "email"]),
    multiple=True,
    help="turn a channel on, with its stand-in unless configured for real (repeatable)",
)
@click.pass_context
def dev(
    ctx: click.Context,
    temporal_port: int,
    temporal_ui_port: int,
    web_port: int,
    hoop_port: int,
    scim_port: int,
    slack_port: int,
    jira_port: int,
    smtp_port: int,
    with_channels: tuple[str, ...],
) -> None:
    """Run the embedded stack: Temporal dev server, worker, web app, hoop stand-in and SCIM directory."""
    from grantflow.dev import DevPorts, run_dev

    _logging(logging.WARNING)
    settings = settings_from(ctx)
    ports = DevPorts(
        temporal=temporal_port,
        temporal_ui=temporal_ui_port,
        web=web_port,
        hoop=hoop_port,
        scim=scim_port,
        slack=slack_port,
        jira=jira_port,
        smtp=smtp_port,
    )
    try:
        asyncio.run(run_dev(settings, ports, with_channels))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a Temporal worker (scale horizontally: run as many as needed)."""
    from worker import run_worker

    _logging()
    settings = settings_from(ctx)
    _logging(log_format=settings.log_format)
    _check_production(ctx, settings, "worker")
    _run_until_signal(ctx, lambda stop: run_worker(settings, stop))


@main.command()
@click.pass_context
def server(ctx: click.Context) -> None:
    """Run the web app: REST API, review pages (scale horizontally behind a load balancer)."""
    from web.app import serve

    _logging()
    settings = settings_from(ctx)
    _logging(log_format=settings.log_format)
    _check_production(ctx, settings, "server")
    _run_until_signal(ctx, lambda stop: serve(settings, stop))


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply the store's schema migrations (run once per release before starting workers).

    Needs only the database URL (GRANTFLOW_DATABASE_URL); the schema holds no secrets."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from store.migration import migrate_database
    from store.opening import database_location

    settings = settings_from(ctx)
    where = f"GRANTFLOW_DATABASE_URL={database_location(settings)}"
    try:
        revision = migrate_database(settings.effective_database_url)
    except ArgumentError as exc:
        _fail(ctx, EXIT_CONFIG, f"{where}: not a database URL ({exc})")
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(ctx, EXIT_UNREACHABLE, f"{where}: the database cannot be reached or migrated ({reason})")
    click.echo(f"store schema is up to date at revision {revision} ({database_location(settings)})")


def _fail(ctx: click.Context, code: int, message: str) -> NoReturn:
    """Stop a process at start-up: one line naming the setting and the problem, no traceback."""
    click.echo(f"grantflow: {message}", err=True)
    ctx.exit(code)
    raise AssertionError("unreachable")  # ctx.exit raises; this satisfies the type checker


def _check_production(ctx: click.Context, settings: Settings, process: Literal["worker", "server"]) -> None:
    try:
        check_production(settings, process)
    except SettingsError as exc:
        _fail(ctx, EXIT_CONFIG, str(exc))


def _run_until_signal(ctx: click.Context, factory: Any) -> None:
    """Run ``factory(stop)`` until SIGINT / SIGTERM sets ``stop``. Start-up failures exit with the
    README's codes and one line naming the setting: 4 configuration (including a schema that needs
    ``grantflow migrate`` and a web port in use), 3 Temporal or the database unreachable."""
    import signal

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await factory(stop)

    try:
        asyncio.run(runner())
    except SettingsError as exc:
        _fail(ctx, EXIT_CONFIG, str(exc))
    except ServiceUnreachable as exc:
        _fail(ctx, EXIT_UNREACHABLE, str(exc))


def _register_subcommands() -> None:
    from grantflow.commands.campaign import campaign
    from grantflow.commands.ledger import ledger
    from grantflow.commands.requests import request
    from grantflow.commands.sandbox import sandbox
    from grantflow.commands.sandbox_campaigns import register_campaign_commands
    from grantflow.commands.sync import sync
    from grantflow.commands.tokens import token

    main.add_command(request)
    main.add_command(campaign)
    main.add_command(token)
    main.add_command(ledger)
    main.add_command(sync)
    register_campaign_commands(sandbox)
    main.add_command(sandbox)
    from grantflow.commands.setup import setup

    main.add_command(setup)


_register_subcommands()


def run() -> None:
    """Entry point with a reliable exit code.

    The Temporal SDK can crash at interpreter exit after all work succeeded (sdk-python #300), so we
    flush and leave with ``os._exit`` carrying click's own exit code."""
    try:
        code = main.main(standalone_mode=False)
        code = code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
