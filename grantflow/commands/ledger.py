"""``grantflow ledger verify``: check the evidence ledger's keyed hash chain and its anchor, locally.

It opens the store from the settings (database URL, ledger key, anchor path), so it needs the same
configuration as the worker — and no running server. Exit codes: 0 the ledger is intact; 1 it is not
(the first bad entry and the problem are named); 3 the store cannot be opened; 4 invalid configuration.
"""

from __future__ import annotations

import json

import click

from grantflow.commands.requests import EXIT_CONFIG, settings_of
from grantflow.settings import SettingsError

EXIT_BROKEN = 1
EXIT_UNAVAILABLE = 3


@click.group("ledger")
def ledger() -> None:
    """The evidence ledger."""


@ledger.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the verification as one JSON document.")
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute every entry's keyed hash, check the chain and the anchor; name the first bad entry."""
    from worker import open_store

    settings = settings_of(ctx)
    try:
        store = open_store(settings, migrate=False)
    except SettingsError as exc:
        click.echo(f"grantflow: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    except Exception as exc:
        if as_json:
            click.echo(json.dumps({"error": "unavailable", "detail": str(exc), "status": None}))
        click.echo(f"grantflow: cannot open the store: {exc}", err=True)
        ctx.exit(EXIT_UNAVAILABLE)
    try:
        result = store.verify_ledger()
    finally:
        store.close()
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    if result.ok:
        if not as_json:
            click.echo(
                f"ledger intact: {result.entries} entries, head #{result.head_seq} {result.head_hash[:12]}"
            )
        return
    where = f"entry #{result.first_bad_seq}" if result.first_bad_seq is not None else "the anchor"
    message = f"ledger NOT intact: {where}: {result.problem}"
    if as_json:
        click.echo(message, err=True)
    else:
        click.echo(message)
    ctx.exit(EXIT_BROKEN)
