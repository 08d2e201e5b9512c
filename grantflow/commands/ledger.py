"""``grantflow ledger verify``: check the evidence ledger's keyed hash chain and its anchor, locally.

It opens the store from the settings (database URL, ledger key, anchor: the shared S3 anchor when
``GRANTFLOW_LEDGER_ANCHOR`` is set, else the anchor file), so it needs the same configuration as the
worker — and no running server. It reports the anchored head, when it was written and how many entries
the table is ahead of it (the anchoring job writes every few seconds, so a small lag is normal).
Exit codes: 0 the ledger is intact; 1 it is not (the first bad entry and the problem are named); 3 the
store cannot be opened; 4 invalid configuration.
"""

from __future__ import annotations

import json

import click

from configuration.settings import SettingsError
from grantflow.context import EXIT_CONFIG, settings_from
from grantflow.help import SummaryGroup
from store import LedgerVerification

EXIT_BROKEN = 1
EXIT_UNAVAILABLE = 3


@click.group("ledger", cls=SummaryGroup)
def ledger() -> None:
    """The evidence ledger."""


@ledger.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the verification as one JSON document.")
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute every entry's keyed hash, check the chain and the anchor; name the first bad entry."""
    from store.opening import open_store

    settings = settings_from(ctx)
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
            click.echo(anchor_summary(result))
        return
    # every problem names the entry (or the anchor) it concerns: say it once
    message = f"ledger NOT intact: {result.problem}"
    if as_json:
        click.echo(message, err=True)
    else:
        click.echo(message)
        click.echo(anchor_summary(result))
    ctx.exit(EXIT_BROKEN)


def anchor_summary(result: LedgerVerification) -> str:
    """Where the anchor is, which head it records, when that was written and how far the table is ahead."""
    if result.anchor is None and result.anchored_seq is None:
        return "anchor: none configured"
    where = result.anchor or "the anchor file"
    if result.anchored_seq is None:
        return f"anchor: {where}: no head anchored yet"
    when = f", written {result.anchored_at.isoformat(timespec='seconds')}" if result.anchored_at else ""
    lag = result.anchor_lag or 0
    ahead = "the table is at the anchored head" if lag == 0 else f"the table is {lag} entries ahead of it"
    return f"anchor: {where}: head #{result.anchored_seq}{when}; {ahead}"
