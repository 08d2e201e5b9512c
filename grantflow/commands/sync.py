"""``grantflow sync [--dry-run] [--full] [--json]``: run an identity sync now through the REST API.

Prints counts of joiners, movers, leavers and group changes, and what hoop was told (leavers inactive
with their open sessions killed, re-activated people active again); with ``--dry-run`` what would happen,
changing nothing. A sync stopped by the safety guard (mass deactivation, an emptied group) exits 1
with the reason. Exit codes as ``grantflow request``.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from grantflow.client import ApiClient
from grantflow.commands.requests import run_api_command

EXIT_BLOCKED = 1


def _human(report: dict[str, Any]) -> None:
    counts = report["counts"]
    verb = "would change" if report["dry_run"] else ("changed" if report["applied"] else "changed nothing")
    click.echo(
        f"{report['mode']} sync of {report['users_listed']} people, {report['groups_listed']} groups: {verb} "
        f"{counts['joiners']} joiner(s), {counts['movers']} mover(s), {counts['leavers']} leaver(s), "
        f"{counts['group_changes']} group change(s)"
    )
    for leaver in report["leavers"]:
        click.echo(f"  leaver  {leaver['person']['email']} ({leaver['reason']})")
    for joiner in report["joiners"]:
        click.echo(f"  joiner  {joiner['email']}")
    for mover in report["movers"]:
        click.echo(f"  mover   {mover['person']['email']}: manager changed")
    for group in report["group_changes"]:
        added = group.get("added_total") or len(group["added"])
        removed = group.get("removed_total") or len(group["removed"])
        click.echo(f"  group   {group['group']}: +{added} -{removed}")
    if report.get("details_cut_short"):
        click.echo(
            "  … and more: the counts above are complete; the ledger's directory.synced entry names every "
            "joiner and group"
        )
    for person in report.get("reactivated", []):
        click.echo(f"  back    {person['email']}")
    gateway = report.get("gateway") or {}
    for email in gateway.get("deactivated", []):
        killed = len(gateway.get("sessions_killed", {}).get(email, []))
        click.echo(f"  hoop    {email}: inactive, {killed} open session(s) killed")
    for email in gateway.get("reactivated", []):
        click.echo(f"  hoop    {email}: active again")
    affected = {s["request_id"] for s in report["signals"]}
    if affected:
        click.echo(f"  requests {'to be ' if report['dry_run'] else ''}told: {', '.join(sorted(affected))}")
    if report.get("blocked_reason"):
        click.echo(f"grantflow: sync stopped: {report['blocked_reason']}", err=True)
    if report.get("gateway_error"):
        click.echo(f"grantflow: hoop was not updated (escalated): {report['gateway_error']}", err=True)


@click.command("sync")
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option(
    "--full", is_flag=True, help="A full listing (sees deletions) even when incremental is possible."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_context
def sync(ctx: click.Context, dry_run: bool, full: bool, as_json: bool) -> None:
    """Sync people and groups from the SCIM identity provider now."""
    report: dict[str, Any] = {}

    def call(client: ApiClient) -> dict[str, Any]:
        with Console(stderr=True).status("listing the identity provider…", spinner="dots"):
            report.update(client.sync(dry_run=dry_run, full=full))
        return report

    run_api_command(ctx, as_json, call, _human)
    if report.get("blocked_reason"):
        ctx.exit(EXIT_BLOCKED)
