"""``grantflow token issue``: create an API token for a person or a service, printed once.

Only the token's SHA-256 is written to the tokens file (``GRANTFLOW_TOKENS_FILE``, default
``<state dir>/tokens.toml``); the web app re-reads the file when it changes, so no restart is needed.
"""

from __future__ import annotations

import json

import click

from grantflow.context import settings_from
from grantflow.help import SummaryGroup


@click.group("token", cls=SummaryGroup)
def token() -> None:
    """API tokens for the REST API and the CLI."""


@token.command("issue")
@click.option("--name", required=True, help="a unique name for the token (issuing it again replaces it)")
@click.option("--email", default=None, help="the directory identity the token acts as")
@click.option(
    "--role",
    "roles",
    type=click.Choice(["requester", "admin", "auditor"]),
    multiple=True,
    required=True,
    help=(
        "requester: create and manage their own requests; admin: everything, and acting for others; "
        "auditor: read requests, campaigns and the ledger, change nothing"
    ),
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def issue(ctx: click.Context, name: str, email: str | None, roles: tuple[str, ...], as_json: bool) -> None:
    """Issue a token; it is printed once and cannot be shown again."""
    from web.auth import issue_token

    settings = settings_from(ctx)
    path = settings.tokens_file or settings.state_dir / "tokens.toml"
    if "auditor" in roles and len(set(roles)) > 1:
        raise click.UsageError("an auditor token changes nothing: give it no other role")
    if email is None and not {"admin", "auditor"} & set(roles):
        raise click.UsageError(
            "a token without --email acts as nobody: give --email, or make it an admin token"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = issue_token(path, name=name, email=email, roles=list(roles))
    if as_json:
        click.echo(
            json.dumps({"name": name, "email": email, "roles": list(roles), "token": raw, "file": str(path)})
        )
    else:
        click.echo(raw)
        click.echo(f"token {name!r} written to {path} (only its hash); keep the token above safe", err=True)
