"""``grantflow sandbox`` for campaigns: act as a reviewer on the campaign digests of ``grantflow dev --with
slack --with jira --with email`` (the routes are ``grantflow/dev_campaigns.py``'s).

- ``campaign-digest`` shows what a reviewer was sent about a campaign: their Slack digest (a line per
  row, with the item id its buttons carry), their Jira digest issue and the emails with their review link;
- ``campaign-click`` presses Keep / Revoke on items' rows of the reviewer's Slack digest, or the digest's
  "Keep all shown" / "Revoke all shown" (``--all``), as Slack would (a signed interaction; the form asking
  for a reason, where the campaign wants one, is submitted with ``--reason``), and shows what Slack told
  them and the digest as grantflow updated it in place;
- ``campaign-jira`` comments on the reviewer's Jira digest issue (``keep all reason: …``, ``revoke it-…``)
  or moves it (``--transition "Revoke all"``), as them; the Jira stand-in sends grantflow the signed
  webhook, and grantflow's answer on the issue is shown.

``campaign-click`` and ``campaign-jira`` exit 1 when grantflow answered but recorded no decision (its answer
says why), as they do for an unknown campaign, a person with no digest, or an item that is not in their
digest. A comment or a move grantflow does not answer (no command in it; a move that is no decision) exits 0.
"""

from __future__ import annotations

import json
from typing import Any

import click

from grantflow.commands.sandbox import _post_sandbox


def _digest_lines(digest: dict[str, Any]) -> list[str]:
    lines = [f"  {line}" for line in str(digest.get("head") or "").splitlines()]
    for row in digest.get("rows") or []:
        buttons = f"  [{row['buttons']}]" if row.get("buttons") else ""
        lines.append(f"    {row['item']}  {row['text']}{buttons}")
    if digest.get("bulk"):
        lines.append(f"    [{digest['bulk']}]")
    lines += [f"    {line}" for line in digest.get("outcome") or []]
    return lines


@click.command("campaign-digest")
@click.option("--user", "user_email", required=True, help="the reviewer")
@click.option("--campaign", "campaign_id", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def campaign_digest(ctx: click.Context, user_email: str, campaign_id: str, as_json: bool) -> None:
    """Show what a reviewer was sent about a campaign in the stand-ins of `grantflow dev --with …`: their
    Slack digest (with each row's item id), their Jira digest issue and their emails' review links."""
    body = {"user_email": user_email, "campaign_id": campaign_id}
    found = _post_sandbox(ctx, "campaign/digest", body, as_json=as_json)
    if as_json:
        click.echo(json.dumps(found))
        return
    slack, jira, emails = found.get("slack"), found.get("jira"), found.get("emails")
    if "slack" in found:
        click.echo(f"Slack digest in {user_email}'s DM:" if slack else f"no Slack digest for {user_email}")
        if isinstance(slack, dict):
            click.echo("\n".join(_digest_lines(slack)))
    if "jira" in found:
        if isinstance(jira, dict):
            click.echo(f"Jira issue {jira['issue']} ({jira['status']}): {jira['summary']}")
        else:
            click.echo(f"no Jira digest issue for {user_email}")
    for email in emails if isinstance(emails, list) else []:
        click.echo(f"email: {email['subject']}\n  {email['link']}")


@click.command("campaign-click")
@click.option("--user", "user_email", required=True, help="the reviewer who clicks (their Slack account)")
@click.option("--campaign", "campaign_id", required=True)
@click.option("--item", "items", multiple=True, help="an item of their digest (repeat for more)")
@click.option("--all", "all_shown", is_flag=True, help='"Keep all shown" / "Revoke all shown" instead')
@click.option("--keep/--revoke", "keep", default=None, help="which button")
@click.option(
    "--reason", default="", help="typed into the form Slack opens where the campaign wants a reason"
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def campaign_click(
    ctx: click.Context,
    user_email: str,
    campaign_id: str,
    items: tuple[str, ...],
    all_shown: bool,
    keep: bool | None,
    reason: str,
    as_json: bool,
) -> None:
    """Click Keep or Revoke in a reviewer's Slack digest of a campaign (the Slack stand-in of `grantflow dev
    --with slack` sends grantflow the signed interaction, and the reason form where one is wanted); shows
    what Slack told them and the digest, updated in place. Exits 1 when nothing was recorded."""
    if keep is None:
        raise click.UsageError("say which button: --keep or --revoke")
    if bool(items) == all_shown:
        raise click.UsageError("give --item ITEM (one or more) or --all")
    body = {
        "user_email": user_email,
        "campaign_id": campaign_id,
        "items": list(items),
        "all": all_shown,
        "verdict": "keep" if keep else "revoke",
        "reason": reason,
    }
    result = _post_sandbox(ctx, "campaign/slack-click", body, as_json=as_json)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for told in result.get("told") or []:  # type: ignore[attr-defined]
            click.echo(f"Slack told {user_email}: {told}")
        digest = result["digest"]
        assert isinstance(digest, dict)
        click.echo(f"{user_email}'s digest now reads:")
        click.echo("\n".join(_digest_lines(digest)))
    if not result.get("recorded"):
        ctx.exit(1)


@click.command("campaign-jira")
@click.option("--user", "user_email", required=True, help="the reviewer (their Jira account)")
@click.option("--campaign", "campaign_id", required=True)
@click.option("--transition", default=None, help='move their digest issue, e.g. "Keep all" or "Revoke all"')
@click.option("--comment", default=None, help='comment, e.g. "revoke it-… reason: left the team" (with '
              "--transition: the move's comment, its reason)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def campaign_jira(
    ctx: click.Context,
    user_email: str,
    campaign_id: str,
    transition: str | None,
    comment: str | None,
    as_json: bool,
) -> None:
    """Comment on or move a reviewer's Jira digest issue of a campaign as them (the Jira stand-in of
    `grantflow dev --with jira` sends grantflow the signed webhook); shows grantflow's answer on the
    issue. Exits 1 when grantflow answered that nothing was recorded."""
    if not transition and not comment:
        raise click.UsageError("give --comment TEXT, --transition NAME, or both")
    body = {
        "user_email": user_email,
        "campaign_id": campaign_id,
        "transition": transition,
        "comment": comment,
    }
    result = _post_sandbox(ctx, "campaign/jira", body, as_json=as_json)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{result['issue']} is now {result['status']}")
        for answer in result.get("answers") or []:  # type: ignore[attr-defined]
            click.echo(f"  comment: {answer}")
        if not result.get("answers"):
            click.echo(
                "  grantflow did not answer: this decides nothing "
                "(comment a command, or move it by Keep all / Revoke all)"
            )
        pending = [line for line in str(result.get("description")).splitlines() if " pending" in line]
        if pending:
            click.echo(f"  description: {pending[0].strip()}")
    if result.get("answers") and not result.get("recorded"):
        ctx.exit(1)


def register_campaign_commands(group: click.Group) -> None:
    """Add ``campaign-digest``, ``campaign-click`` and ``campaign-jira`` to ``grantflow sandbox``."""
    for command in (campaign_digest, campaign_click, campaign_jira):
        group.add_command(command)
