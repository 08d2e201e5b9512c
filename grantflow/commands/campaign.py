"""``grantflow campaign …``: launch recertification campaigns, watch them, decide items, and check evidence.

Everything but ``verify-report`` talks to a running grantflow through its REST API (the token and URL as for
``grantflow request``). ``launch`` checks the spec here first, so a mistake is named with its line before
anything is sent; ``status --watch`` redraws a progress bar until the campaign ends. ``verify-report`` is
offline: it checks an evidence bundle with the auditor's public key and nothing else.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from domain.campaign_spec import CampaignSpecError, parse_campaign_spec
from grantflow.client import EXIT_BAD_INPUT, ApiClient, ApiError
from grantflow.commands.requests import DURATION, run_api_command
from grantflow.help import SummaryGroup
from store.evidence_bundle import BundleError, load_public_key, verify_bundle, write_files

_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
_as_option = click.option("--as", "as_", metavar="EMAIL", help="Act as this person (admin tokens only).")
TERMINAL = {"CLOSED", "CANCELLED", "DRY_RUN"}
WATCH_INTERVAL = 2.0


def _spec_text(ctx: click.Context, spec: Path) -> str:
    """The spec file's text; a file that is not UTF-8 is bad input (exit 2), said in one line."""
    try:
        return spec.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        click.echo(f"grantflow: {spec}: not UTF-8 text (byte {exc.start}); save the spec as UTF-8", err=True)
        ctx.exit(EXIT_BAD_INPUT)
        raise  # unreachable: ctx.exit raises


@click.group("campaign", cls=SummaryGroup)
def campaign() -> None:
    """Recertification campaigns: who should still have access (through grantflow's REST API)."""


@campaign.command("launch")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Who would be asked, and what revoked if nobody answered.")
@_json_option
@click.pass_context
def launch(ctx: click.Context, spec: Path, dry_run: bool, as_json: bool) -> None:
    """Launch a campaign from a spec file (TOML)."""
    text = _spec_text(ctx, spec)
    try:
        parse_campaign_spec(text, str(spec))
    except CampaignSpecError as exc:
        click.echo(f"grantflow: {exc}", err=True)
        ctx.exit(EXIT_BAD_INPUT)

    def human(doc: dict[str, Any]) -> None:
        kind = "dry run" if doc["dry_run"] else "campaign"
        click.echo(f"launched {kind} {doc['id']}: {doc['name']}")
        click.echo(
            f"  taking the snapshot now; follow it with: grantflow campaign status {doc['id']} --watch"
        )

    run_api_command(ctx, as_json, lambda c: c.launch_campaign(text, dry_run=dry_run, source=str(spec)), human)


@campaign.command("schedule")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_json_option
@click.pass_context
def schedule(ctx: click.Context, spec: Path, as_json: bool) -> None:
    """Create or update a recurring campaign from a spec with a [schedule] table."""
    text = _spec_text(ctx, spec)
    try:
        parsed = parse_campaign_spec(text, str(spec))
    except CampaignSpecError as exc:
        click.echo(f"grantflow: {exc}", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    if parsed.schedule is None:
        click.echo(f"grantflow: {spec}: has no [schedule] table: say when it runs", err=True)
        ctx.exit(EXIT_BAD_INPUT)

    def human(doc: dict[str, Any]) -> None:
        click.echo(f"{'updated' if doc['updated'] else 'created'} schedule {doc['schedule_id']}")
        for when in doc["next_runs"]:
            click.echo(f"  next: {when}")

    run_api_command(ctx, as_json, lambda c: c.schedule_campaign(text, source=str(spec)), human)


@campaign.command("trigger")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("--list", "list_", is_flag=True, help="List the registered triggered specs instead.")
@click.option("--remove", metavar="TRIGGER_ID", help="Stop this triggered spec (its open campaigns run on).")
@_json_option
@click.pass_context
def trigger(ctx: click.Context, spec: Path | None, list_: bool, remove: str | None, as_json: bool) -> None:
    """Register (or replace) a spec with a [trigger] table: each matching directory event (a mover) opens a
    small campaign about that person, reviewed by their new manager."""
    if sum((spec is not None, list_, remove is not None)) != 1:
        click.echo("grantflow: give a SPEC, or --list, or --remove TRIGGER_ID", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    if list_:

        def listed(doc: dict[str, Any]) -> None:
            for t in doc["triggers"]:
                click.echo(f"{t['trigger_id']}: {t['name']} (on {t['event']}: {', '.join(t['changes'])})")
            if not doc["triggers"]:
                click.echo("no triggered campaigns are registered")

        run_api_command(ctx, as_json, lambda c: c.campaign_triggers(), listed)
        return
    if remove is not None:
        run_api_command(
            ctx,
            as_json,
            lambda c: c.remove_campaign_trigger(remove),
            lambda doc: click.echo(f"removed {doc['trigger_id']}; campaigns it opened run to their end"),
        )
        return
    assert spec is not None
    text = _spec_text(ctx, spec)
    try:
        parsed = parse_campaign_spec(text, str(spec))
    except CampaignSpecError as exc:
        click.echo(f"grantflow: {exc}", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    if parsed.trigger is None:
        click.echo(
            f'grantflow: {spec}: has no [trigger] table: say which event opens it (on = "mover")', err=True
        )
        ctx.exit(EXIT_BAD_INPUT)

    def human(doc: dict[str, Any]) -> None:
        click.echo(
            f"{'replaced' if doc['updated'] else 'registered'} {doc['trigger_id']}: a campaign opens for "
            f"each {doc['event']} ({', '.join(doc['changes'])} change) seen by the identity sync"
        )

    run_api_command(ctx, as_json, lambda c: c.register_campaign_trigger(text, source=str(spec)), human)


@campaign.command("list")
@_json_option
@click.pass_context
def list_campaigns(ctx: click.Context, as_json: bool) -> None:
    """Campaigns, the newest first."""

    def human(doc: dict[str, Any]) -> None:
        if not doc["campaigns"]:
            click.echo("no campaigns yet")
        for c in doc["campaigns"]:
            click.echo(f"{c['id']}  {c['status']:<12} {c['item_count']:>7} items  {c['name']}")

    run_api_command(ctx, as_json, lambda c: c.campaigns(), human)


def _status_lines(doc: dict[str, Any]) -> list[str]:
    record, progress = doc["campaign"], doc["progress"]
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(progress["by_outcome"].items())) or "none yet"
    lines = [
        f"{record['id']}  {record['status']}  {record['name']}",
        f"  owner {record['owner']}; {record['item_count']} items; stage {record['stage'] + 1}"
        + (f", closes {record['stage_closes_at']}" if record["stage_closes_at"] else ""),
        f"  in this stage: {progress['decided_in_stage']} decided, {progress['pending_in_stage']} pending; "
        f"defaults applied: {progress['defaulted']}",
        f"  items: {outcomes}",
    ]
    for reviewer in progress["reviewers"]:
        lines.append(
            f"    {reviewer['reviewer']}: {reviewer['decided']} decided, {reviewer['pending']} pending"
        )
    return lines


@campaign.command("status")
@click.argument("campaign_id", metavar="ID")
@click.option("--watch", is_flag=True, help="Keep a progress bar up until the campaign ends.")
@_json_option
@click.pass_context
def status(ctx: click.Context, campaign_id: str, watch: bool, as_json: bool) -> None:
    """Where a campaign stands: decided, pending, defaulted, revoked, failed — per reviewer."""
    if not watch or as_json:
        run_api_command(
            ctx, as_json, lambda c: c.campaign(campaign_id), lambda d: click.echo("\n".join(_status_lines(d)))
        )
        return

    def follow(client: ApiClient) -> dict[str, Any]:
        console = Console(stderr=True)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            console=console,
        ) as bar:
            task = bar.add_task("snapshot", total=None, counts="")
            while True:
                doc = client.campaign(campaign_id)
                record, progress = doc["campaign"], doc["progress"]
                in_stage = progress["decided_in_stage"] + progress["pending_in_stage"]
                settled = progress["total"] - progress["by_outcome"].get("open", 0)
                if record["status"] == "OPEN":
                    bar.update(
                        task,
                        description=f"stage {record['stage'] + 1}",
                        total=in_stage or 1,
                        completed=progress["decided_in_stage"],
                        counts=(
                            f"{progress['decided_in_stage']} decided, {progress['pending_in_stage']} pending"
                        ),
                    )
                else:
                    bar.update(
                        task,
                        description=record["status"].lower(),
                        total=progress["total"] or 1,
                        completed=settled,
                        counts=f"{settled} of {progress['total']} settled",
                    )
                if record["status"] in TERMINAL:
                    return doc
                time.sleep(WATCH_INTERVAL)

    run_api_command(ctx, False, follow, lambda d: click.echo("\n".join(_status_lines(d))))


@campaign.command("preview")
@click.argument("campaign_id", metavar="ID")
@_json_option
@click.pass_context
def preview(ctx: click.Context, campaign_id: str, as_json: bool) -> None:
    """Who is asked, and what the deadline would revoke if nobody answered (a dry run, or any campaign)."""

    def human(doc: dict[str, Any]) -> None:
        click.echo(f"{doc['items']} items over {len(doc['reviewers'])} reviewers")
        for reviewer in doc["reviewers"]:
            count = reviewer["items"]
            click.echo(f"  {reviewer['reviewer']}: {count} item{'s' if count != 1 else ''}")
        click.echo(f"if nobody answers, the deadline revokes {len(doc['would_revoke'])}:")
        for item in doc["would_revoke"]:
            click.echo(f"  {item['subject']}: {item['access']} — {item['why']}")

    run_api_command(ctx, as_json, lambda c: c.campaign_preview(campaign_id), human)


@campaign.command("decide")
@click.argument("campaign_id", metavar="ID")
@click.option("--item", "items", multiple=True, required=True, help="The item's id (repeat for several).")
@click.option("--keep", "verdict", flag_value="keep", help="Keep the access.")
@click.option("--revoke", "verdict", flag_value="revoke", help="Revoke the access.")
@click.option("--reason", default="", help="Why (required where the campaign says so).")
@click.option(
    "--stage",
    type=click.IntRange(min=1),
    default=None,
    help="The stage you reviewed (as `status` shows it); refused if an item has moved on since.",
)
@_as_option
@_json_option
@click.pass_context
def decide(
    ctx: click.Context,
    campaign_id: str,
    items: tuple[str, ...],
    verdict: str | None,
    reason: str,
    stage: int | None,
    as_: str | None,
    as_json: bool,
) -> None:
    """Keep or revoke one or more items of a campaign."""
    if verdict is None:
        raise click.UsageError("say --keep or --revoke")
    decisions = [{"item_id": i, "verdict": verdict, "reason": reason} for i in items]

    def human(doc: dict[str, Any]) -> None:
        for item_id in doc["recorded"]:
            click.echo(f"{verdict}: {item_id}")
        for item_id, why in doc["refused"].items():
            click.echo(f"refused {item_id}: {why}", err=True)
        if doc["refused"]:
            ctx.exit(1)

    run_api_command(
        ctx, as_json, lambda c: c.decide_campaign_items(campaign_id, decisions, as_=as_, stage=stage), human
    )


@campaign.command("delegate")
@click.argument("campaign_id", metavar="CAMPAIGN")
@click.option("--to", "to", required=True, metavar="EMAIL", help="Who reviews the items instead.")
@click.option(
    "--item",
    "items",
    multiple=True,
    help="An item's id (repeat for several); without it, every item you have not decided yet.",
)
@click.option("--reason", default="", help="Why (kept as evidence).")
@_as_option
@_json_option
@click.pass_context
def delegate(
    ctx: click.Context,
    campaign_id: str,
    to: str,
    items: tuple[str, ...],
    reason: str,
    as_: str | None,
    as_json: bool,
) -> None:
    """Hand your items of the open stage to another person, who reviews them instead of you."""
    if not to.strip():
        click.echo("grantflow: --to needs the delegate's email", err=True)
        ctx.exit(EXIT_BAD_INPUT)

    def human(doc: dict[str, Any]) -> None:
        count = len(doc["delegated"])
        click.echo(f"delegated {count} item{'s' if count != 1 else ''} to {doc['delegate']}")
        for item_id in doc["delegated"]:
            click.echo(f"  {item_id}")
        for item_id, why in doc["refused"].items():
            click.echo(f"refused {item_id}: {why}", err=True)
        if doc["refused"]:
            ctx.exit(1)

    run_api_command(
        ctx,
        as_json,
        lambda c: c.delegate_campaign_items(campaign_id, to, items, reason=reason, as_=as_),
        human,
    )


def _command(name: str, help_text: str) -> click.Command:
    @click.argument("campaign_id", metavar="ID")
    @click.option("--reason", default="", help="Why (kept as evidence).")
    @_as_option
    @_json_option
    @click.pass_context
    def command(ctx: click.Context, campaign_id: str, reason: str, as_: str | None, as_json: bool) -> None:
        body: dict[str, Any] = {"as_": as_} if name == "apply" else {"reason": reason, "as_": as_}
        run_api_command(
            ctx,
            as_json,
            lambda c: c.campaign_command(campaign_id, name, **body),
            lambda d: click.echo(d["message"]),
        )

    command.__doc__ = help_text
    return click.command(name)(command)


campaign.add_command(_command("cancel", "Cancel a campaign: nothing more is asked and nothing is revoked."))
campaign.add_command(
    _command(
        "end-stage",
        "End the open review stage now: undecided items go to the next stage, or take the default decision.",
    )
)
campaign.add_command(
    _command("apply", "Apply a campaign's revocations (when it does not apply them itself).")
)


@campaign.command("extend")
@click.argument("campaign_id", metavar="ID")
@click.option("--by", required=True, type=DURATION, help="How much longer the open stage runs: 2d, 36h …")
@click.option("--reason", default="", help="Why (kept as evidence).")
@_as_option
@_json_option
@click.pass_context
def extend(
    ctx: click.Context, campaign_id: str, by: str, reason: str, as_: str | None, as_json: bool
) -> None:
    """Move the open stage's deadline."""
    run_api_command(
        ctx,
        as_json,
        lambda c: c.campaign_command(campaign_id, "extend", by=by, reason=reason, as_=as_),
        lambda d: click.echo(d["message"]),
    )


@campaign.command("report")
@click.argument("campaign_id", metavar="ID")
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="A folder."
)
@_json_option
@click.pass_context
def report(ctx: click.Context, campaign_id: str, out: Path, as_json: bool) -> None:
    """Write a closed campaign's signed evidence bundle into a folder, as the worker signed it."""

    def fetch(client: ApiClient) -> dict[str, Any]:
        doc = client.campaign_evidence(campaign_id)
        try:
            written = write_files(out, {name: base64.b64decode(data) for name, data in doc["files"].items()})
        except (BundleError, OSError, ValueError) as exc:
            raise ApiError(None, "bad_answer", f"the bundle could not be written to {out}: {exc}") from None
        return {
            "directory": str(out),
            "files": list(written.files),
            "manifest_sha256": written.manifest_sha256,
        }

    def human(doc: dict[str, Any]) -> None:
        click.echo(f"wrote {len(doc['files'])} files and manifest.json to {doc['directory']}")
        click.echo(f"  manifest SHA-256 {doc['manifest_sha256']} (the same hash is in the ledger)")
        click.echo(f"  check it with: grantflow campaign verify-report {doc['directory']} --public-key KEY")

    run_api_command(ctx, as_json, fetch, human)


@campaign.command("verify-report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--public-key",
    required=True,
    help="The signer's Ed25519 public key: a PEM file, or the raw key in base64.",
)
@click.pass_context
def verify_report(ctx: click.Context, directory: Path, public_key: str) -> None:
    """Check an evidence bundle offline: every file against the manifest, the manifest's signature."""
    key_path = Path(public_key)
    try:
        key = load_public_key(key_path.read_text() if key_path.is_file() else public_key)
        verification = verify_bundle(directory, key)
    except BundleError as exc:
        click.echo(f"grantflow: {directory}: {exc}", err=True)
        ctx.exit(1)
    manifest = verification.manifest
    click.echo(
        f"{directory}: verified — {len(verification.files)} files, "
        f"manifest SHA-256 {verification.manifest_sha256}"
    )
    head = manifest.get("ledger_head")
    at = f"ledger entry {head['seq']} ({head['hash'][:12]}…)" if isinstance(head, dict) else "no ledger head"
    click.echo(f"  campaign {manifest.get('campaign_id', '?')}; signed at {at}")
