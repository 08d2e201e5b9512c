"""``grantflow setup``: what a Slack or Jira administrator needs, and a check that they did it.

- ``grantflow setup slack-manifest [--public-url URL] [--socket-mode] [--json]`` prints the Slack app
  manifest (JSON, on stdout: paste it under https://api.slack.com/apps → Create New App → From a
  manifest), then the steps after it on stderr (not with ``--json``).
- ``grantflow setup jira-webhook [--public-url URL] [--json]`` prints the admin webhook to create in Jira
  (System → WebHooks): URL, events, JQL and where the secret comes from. It does not register the webhook:
  Jira's registration API is not part of the stand-ins grantflow is tested against, so an administrator
  enters these settings.
- ``grantflow setup check [--json]`` reads the configured Slack token's scopes and the Jira transitions a
  waiting ticket offers, and names what is missing (exit 4) or could not be asked (exit 3), as the worker
  does at start.

The public URL defaults to ``GRANTFLOW_PUBLIC_URL``.
"""

from __future__ import annotations

import asyncio
import json
import os

import click

from grantflow.context import EXIT_CONFIG, EXIT_UNREACHABLE, settings_from
from grantflow.help import SummaryGroup
from integrations.vendor_setup import (
    SLACK_BOT_SCOPES,
    SOCKET_MODE_APP_SCOPES,
    SetupCheck,
    WebhookRegistrationError,
    check_channels,
    jira_webhook_settings,
    register_jira_webhook,
    slack_manifest,
)


def _public_url(ctx: click.Context, given: str | None) -> str:

    url = given or settings_from(ctx).public_url
    if not url:
        raise click.UsageError(
            "--public-url is needed (or GRANTFLOW_PUBLIC_URL): where Slack and Jira reach grantflow"
        )
    if not url.startswith("https://"):
        click.echo(f"warning: {url} is not https: Slack and Jira Cloud call https URLs only", err=True)
    return url.rstrip("/")


@click.group(cls=SummaryGroup)
def setup() -> None:
    """Set Slack and Jira up for grantflow, and check they are."""


@setup.command("slack-manifest")
@click.option("--public-url", help="where Slack reaches grantflow (default: GRANTFLOW_PUBLIC_URL)")
@click.option("--socket-mode", is_flag=True, help="Slack connects out (no public URL needed)")
@click.option("--json", "as_json", is_flag=True, help="the manifest only (no steps on stderr)")
@click.option(
    "--command", "command", default=None, help="the slash command (default: GRANTFLOW_SLACK_ACCESS_COMMAND)"
)
@click.pass_context
def slack_manifest_command(
    ctx: click.Context, public_url: str | None, socket_mode: bool, as_json: bool, command: str | None
) -> None:
    """Print the Slack app manifest, with the public URL filled in."""

    settings = settings_from(ctx)
    url = "" if socket_mode else _public_url(ctx, public_url)
    manifest = slack_manifest(url, command=command or settings.slack_access_command, socket_mode=socket_mode)
    click.echo(json.dumps(manifest, indent=2, ensure_ascii=False))
    if as_json:
        return
    steps = [
        "",
        "Then, in the app's settings:",
        "  1. Install to Workspace; set GRANTFLOW_SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…).",
        "  2. Basic Information → Signing Secret: set GRANTFLOW_SLACK_SIGNING_SECRET.",
        "  3. Escalations: set GRANTFLOW_OPERATOR_SLACK_CHANNEL to the channel's id (C…); chat:write.public"
        " lets the bot post there, or /invite the bot.",
    ]
    if socket_mode:
        steps.append(
            "  4. Basic Information → App-Level Tokens: generate one with "
            f"{', '.join(SOCKET_MODE_APP_SCOPES)} and set GRANTFLOW_SLACK_APP_TOKEN (xapp-…)."
        )
    steps.append("Why each scope:")
    steps += [f"  {scope}: {why}" for scope, why in SLACK_BOT_SCOPES.items()]
    click.echo("\n".join(steps), err=True)


@setup.command("jira-webhook")
@click.option("--public-url", help="where Jira reaches grantflow (default: GRANTFLOW_PUBLIC_URL)")
@click.option(
    "--register",
    "admin_email",
    metavar="ADMIN_EMAIL",
    help="register it as this Jira administrator (API token from GRANTFLOW_JIRA_ADMIN_TOKEN)",
)
@click.option("--json", "as_json", is_flag=True, help="print the settings as JSON")
@click.pass_context
def jira_webhook_command(
    ctx: click.Context, public_url: str | None, admin_email: str | None, as_json: bool
) -> None:
    """Print the Jira admin webhook to create (System → WebHooks), or register it with --register."""

    settings = settings_from(ctx)
    public = _public_url(ctx, public_url)
    webhook = jira_webhook_settings(settings, public)
    if admin_email:
        # the administrator's token never goes on a command line (shell history, process lists)
        token = os.environ.get("GRANTFLOW_JIRA_ADMIN_TOKEN", "")
        if not token:
            click.echo("grantflow: set GRANTFLOW_JIRA_ADMIN_TOKEN to the administrator's API token", err=True)
            ctx.exit(4)
        try:
            done = register_jira_webhook(settings, public, admin_email, token)
        except WebhookRegistrationError as exc:
            if as_json:
                click.echo(json.dumps({"error": "refused", "detail": str(exc)}))
            click.echo(f"grantflow: {exc}", err=True)
            ctx.exit(1)
        if as_json:
            click.echo(json.dumps(done, indent=2))
        elif done["registered"]:
            click.echo(f"registered the admin webhook {done['webhook'].get('self', '')} → {webhook['url']}")
        else:
            click.echo(
                f"Jira already delivers to {webhook['url']} ({done['webhook'].get('self', '')}); "
                "nothing added"
            )
        return
    if as_json:
        click.echo(json.dumps(webhook, indent=2))
        return
    click.echo(
        "\n".join(
            [
                "In Jira: Settings → System → WebHooks → Create a WebHook (an admin webhook), with:",
                f"  Name:    {webhook['name']}",
                f"  URL:     {webhook['url']}",
                f"  Secret:  {webhook['secret']}",
                f"  JQL:     {webhook['jql']}",
                f"  Events:  Issue created, Issue updated ({', '.join(webhook['events'])})",
                "  Exclude body: no",
                "Jira Cloud signs admin webhooks with X-Hub-Signature (HMAC-SHA256 of the body with the",
                "secret), which grantflow checks. Do not register it from a Connect or Forge app: those",
                "webhooks carry a JWT instead, and grantflow refuses them (401).",
                "To register it instead, as a Jira administrator:",
                "  GRANTFLOW_JIRA_ADMIN_TOKEN=… grantflow setup jira-webhook --register ADMIN_EMAIL",
            ]
        )
    )


@setup.command("check")
@click.option(
    "--json", "as_json", is_flag=True, help='print {"problems": [...], "unchecked": [...], "notes": [...]}'
)
@click.pass_context
def check_command(ctx: click.Context, as_json: bool) -> None:
    """Check the configured Slack scopes and Jira transitions: exit 4 naming what is missing, 3 when a
    vendor could not be asked."""

    settings = settings_from(ctx)
    check = SetupCheck()
    if settings.slack_bot_token or settings.jira_url:
        check = asyncio.run(check_channels(settings))
    else:
        check.notes.append("neither Slack nor Jira is configured: nothing to check")
    code = EXIT_CONFIG if check.problems else EXIT_UNREACHABLE if check.unchecked else 0
    if as_json:
        click.echo(
            json.dumps({"problems": check.problems, "unchecked": check.unchecked, "notes": check.notes})
        )
        ctx.exit(code)
    for note in [*check.unchecked, *check.notes]:
        click.echo(f"note: {note}")
    for problem in check.problems:
        click.echo(f"problem: {problem}", err=True)
    if code == 0:
        click.echo("no problem found")
    ctx.exit(code)
