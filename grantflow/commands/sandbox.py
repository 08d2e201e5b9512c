"""``grantflow sandbox``: act as a person would against the stand-ins of ``grantflow dev``.

- ``connect`` opens a session the way ``hoop connect`` would: refused with hoop's own answer to someone
  outside the connection's access control ("connection not found", whatever grant they hold) and to
  someone who needs a review and has no valid jit grant;
- ``grant`` writes a jit grant straight into hoop with the gateway's API key, behind grantflow's back (as a
  hoop administrator could), to show that a grant alone opens nothing for someone hoop does not let in;
  ``sessions`` lists a person's sessions, so the demo can show sessions being killed at expiry;
- ``deactivate`` deactivates someone in the SCIM directory, as an identity-provider admin would;
- ``login`` signs a person in to hoop, which overwrites their hoop groups with the IdP's groups claim
  (read from the SCIM directory), as hoop does at every login;
- ``slack-click`` and ``jira-move`` (with ``grantflow dev --with slack`` / ``--with jira``) click a button in
  a person's Slack message or transition the request's Jira ticket as that person;
- ``jira-request`` (with ``grantflow dev --with jira``) creates an issue in the Jira intake project as a
  person, which grantflow turns into a request whose ticket is that issue;
- ``slack-command`` (with ``grantflow dev --with slack``) types ``/access …`` in Slack as a person: Slack
  sends grantflow the signed slash command, and the command shows what Slack then told them;
- ``hoop-review`` leaves a review PENDING in the hoop stand-in as a person (``jit``, as ``hoop connect`` on
  a connection that needs a review; ``onetime`` with ``--command``, as ``hoop exec``), has grantflow's review
  discovery poll at once and shows the request it opened for the review.

The intakes (``slack-command``, ``jira-request``, ``hoop-review``) exit 1 when grantflow started no request,
saying why. ``campaign-digest``, ``campaign-click`` and ``campaign-jira`` act as a reviewer on a campaign's
digests (``sandbox_campaigns.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click
import httpx

from configuration.settings import Settings
from grantflow.client import stack_not_found
from grantflow.context import settings_from
from grantflow.help import SummaryGroup


def _hoop(settings: Settings) -> tuple[str, str]:
    url = settings.hoop_url
    key = settings.hoop_api_key.get_secret_value() if settings.hoop_api_key else ""
    dev_file = settings.state_dir / "dev.json"
    if not url and dev_file.exists():
        url = json.loads(dev_file.read_text())["hoop_url"]
    secrets_file = settings.state_dir / "secrets.toml"
    if not key and secrets_file.exists():
        import tomllib

        key = tomllib.loads(secrets_file.read_text())["hoop_api_key"]
    if not url or not key:
        raise click.ClickException(
            stack_not_found(settings) or "no hoop stand-in found: start `grantflow dev` first"
        )
    return url, key


def _answer(ctx: click.Context, ok: bool, body: Any, as_json: bool, refused: str = "refused") -> None:
    """The stand-in's answer as one JSON document when asked; a refusal's sentence on stderr, exit 1."""
    if as_json:
        click.echo(json.dumps(body))
    if not ok:
        if not as_json:
            message = body.get("message") if isinstance(body, dict) else None
            click.echo(f"{refused}: {message or body}", err=True)
        ctx.exit(1)


@click.group(cls=SummaryGroup)
def sandbox() -> None:
    """Act as a person against the stand-ins of grantflow dev: hoop (connect, sessions, login, hoop-review),
    the SCIM directory (deactivate), Slack (slack-click, slack-command) and Jira (jira-move, jira-request);
    a reviewer on a campaign's digests (campaign-digest, campaign-click, campaign-jira)."""


@sandbox.command()
@click.option("--user", "user_email", required=True, help="email of the person connecting")
@click.option("--connection", required=True, help="hoop connection name, e.g. pg-prod-admin")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def connect(ctx: click.Context, user_email: str, connection: str, as_json: bool) -> None:
    """Open a session as `hoop connect` would; refused without a valid grant."""

    url, key = _hoop(settings_from(ctx))
    try:
        resp = httpx.post(
            f"{url}/api/_sandbox/connect",
            json={"user_email": user_email, "connection": connection},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        click.echo(f"grantflow: hoop stand-in unreachable at {url}: {exc}", err=True)
        ctx.exit(3)
    body = resp.json()
    _answer(ctx, resp.status_code < 400, body, as_json)
    if not as_json:
        click.echo(f"session {body['session_id']} open for {user_email} on {connection}")


@sandbox.command()
@click.option("--user", "user_email", required=True, help="who the grant is for")
@click.option("--connection", required=True, help="hoop connection name, e.g. pg-prod-admin")
@click.option("--duration", default="1h", show_default=True, help="how long the grant lasts")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def grant(ctx: click.Context, user_email: str, connection: str, duration: str, as_json: bool) -> None:
    """Write a jit grant directly in the hoop stand-in, behind grantflow's back (no request, no approvals)."""
    from domain.durations import DurationError, parse_duration

    try:
        seconds = int(parse_duration(duration).total_seconds())
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    url, key = _hoop(settings_from(ctx))
    headers = {"Authorization": f"Bearer {key}"}
    body = {"user_email": user_email, "connection": connection, "access_duration_sec": seconds}
    try:
        resp = httpx.post(f"{url}/api/sessions/provision", json=body, headers=headers, timeout=10)
        answer = resp.json()
        if resp.status_code == 202:
            session = httpx.get(f"{url}/api/sessions/{answer['session_id']}", headers=headers, timeout=10)
            answer = {**answer, "review": session.json().get("review")}
    except httpx.HTTPError as exc:
        click.echo(f"grantflow: hoop stand-in unreachable at {url}: {exc}", err=True)
        ctx.exit(3)
    _answer(ctx, resp.status_code == 202, answer, as_json, "refused by hoop")
    if not as_json:
        review = answer.get("review") or {}
        click.echo(
            f"hoop granted {user_email} jit access to {connection} until {review.get('revoke_at')} "
            f"(review {review.get('id')}), directly in hoop: grantflow knows nothing of it"
        )


@sandbox.command()
@click.option("--user", "user_email", required=True)
@click.option("--connection", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sessions(ctx: click.Context, user_email: str, connection: str | None, as_json: bool) -> None:
    """List a person's sessions in the hoop stand-in (open ones are live)."""

    url, key = _hoop(settings_from(ctx))
    headers = {"Authorization": f"Bearer {key}"}
    try:
        # hoop filters sessions by the user's subject id, not their email.
        user = httpx.get(f"{url}/api/users/{user_email}", headers=headers, timeout=10)
        if user.status_code == 404:
            click.echo(f"{user_email} has never signed in to hoop", err=True)
            ctx.exit(1)
        params = {"user": user.json()["id"], "limit": "100"}
        if connection:
            params["connection"] = connection
        resp = httpx.get(f"{url}/api/sessions", params=params, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        click.echo(f"grantflow: hoop stand-in unreachable at {url}: {exc}", err=True)
        ctx.exit(3)
    rows = resp.json().get("data", [])
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['id']}  {row.get('connection', '')}  {row.get('status', '')}  {row.get('start_date', '')}"
        )


def _scim(settings: Settings) -> tuple[str, str]:
    url = settings.scim_url
    token = settings.scim_token.get_secret_value() if settings.scim_token else ""
    dev_file = settings.state_dir / "dev.json"
    if not url and dev_file.exists():
        url = json.loads(dev_file.read_text()).get("scim_url", "")
    secrets_file = settings.state_dir / "secrets.toml"
    if not token and secrets_file.exists():
        import tomllib

        token = tomllib.loads(secrets_file.read_text()).get("scim_token", "")
    if not url or not token:
        raise click.ClickException(
            stack_not_found(settings) or "no SCIM directory found: start `grantflow dev` first"
        )
    return url.rstrip("/"), token


@sandbox.command()
@click.option("--user", "user_email", required=True, help="email (userName) of the person to deactivate")
@click.option("--activate", is_flag=True, help="reactivate instead")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def deactivate(ctx: click.Context, user_email: str, activate: bool, as_json: bool) -> None:
    """Deactivate (or reactivate) a person in the dev SCIM directory, as an IdP admin would.

    Nothing changes in grantflow until the next identity sync (`grantflow sync`)."""

    url, token = _scim(settings_from(ctx))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    try:
        found = httpx.get(
            f"{url}/Users", params={"filter": f'userName eq "{user_email}"'}, headers=headers, timeout=10
        ).json()
        resources = found.get("Resources", [])
        if not resources:
            click.echo(f"{user_email} is not in the SCIM directory", err=True)
            ctx.exit(1)
        patch = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": activate}],
        }
        resp = httpx.patch(f"{url}/Users/{resources[0]['id']}", json=patch, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        click.echo(f"grantflow: SCIM directory unreachable at {url}: {exc}", err=True)
        ctx.exit(3)
    if resp.status_code >= 400:
        click.echo(f"the SCIM directory refused: {resp.text[:200]}", err=True)
        ctx.exit(1)
    state = "active" if activate else "deactivated"
    if as_json:
        click.echo(json.dumps({"user_email": user_email, "active": activate, "scim_id": resources[0]["id"]}))
    else:
        click.echo(f"{user_email} is {state} in the SCIM directory; run `grantflow sync` to apply it")


@sandbox.command()
@click.option("--user", "user_email", required=True, help="email (userName) of the person signing in")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def login(ctx: click.Context, user_email: str, as_json: bool) -> None:
    """Sign in to the hoop stand-in as a person would: hoop overwrites their groups with the IdP's claim,
    read here from the dev SCIM directory. Refused (exit 1) for a person inactive in hoop."""

    settings = settings_from(ctx)
    scim_url, token = _scim(settings)
    hoop_url, key = _hoop(settings)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json"}
    try:
        found = httpx.get(
            f"{scim_url}/Users", params={"filter": f'userName eq "{user_email}"'}, headers=headers, timeout=10
        ).json()
        resources = found.get("Resources", [])
        if not resources:
            click.echo(f"{user_email} is not in the SCIM directory", err=True)
            ctx.exit(1)
        if resources[0].get("active") is False:
            click.echo(f"{user_email} is deactivated in the SCIM directory: the IdP refuses them", err=True)
            ctx.exit(1)
        person_id = resources[0]["id"]
        groups = httpx.get(f"{scim_url}/Groups", params={"count": "1000"}, headers=headers, timeout=10).json()
        claim = sorted(
            g["displayName"]
            for g in groups.get("Resources", [])
            if any(m.get("value") == person_id for m in g.get("members") or [])
        )
        resp = httpx.post(
            f"{hoop_url}/api/_sandbox/login",
            json={"user_email": user_email, "idp_groups": claim},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        click.echo(f"grantflow: a stand-in is unreachable: {exc}", err=True)
        ctx.exit(3)
    body = resp.json()
    _answer(ctx, resp.status_code < 400, body, as_json)
    if not as_json:
        claimed = ", ".join(body["groups"]) or "none"
        click.echo(f"{user_email} signed in to hoop; groups from the IdP: {claimed}")


def _dev_api(settings: Settings) -> str:
    dev_file = settings.state_dir / "dev.json"
    url = settings.api_url or (json.loads(dev_file.read_text())["api_url"] if dev_file.exists() else "")
    if not url:
        raise click.ClickException(
            stack_not_found(settings) or "no grantflow dev found: start `grantflow dev` first"
        )
    return str(url).rstrip("/")


def _post_sandbox(
    ctx: click.Context, path: str, body: Mapping[str, object], *, as_json: bool = False
) -> dict[str, object]:
    """Ask ``grantflow dev`` to act as a person. A refusal is the sentence ``grantflow dev`` answered (exit
    1); ``grantflow dev`` unreachable or failing is exit 3. With ``as_json`` the refusal is JSON too."""

    url = _dev_api(settings_from(ctx))
    try:
        resp = httpx.post(f"{url}/_sandbox/{path}", json=body, timeout=30)
        data = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        if as_json:
            click.echo(json.dumps({"error": "unavailable", "detail": str(exc), "status": None}))
        click.echo(f"grantflow: grantflow dev unreachable at {url}: {exc}", err=True)
        ctx.exit(3)
    if resp.status_code >= 400:
        detail = data.get("detail", data) if isinstance(data, dict) else data
        if as_json:
            click.echo(json.dumps({"error": "refused", "detail": detail, "status": resp.status_code}))
        click.echo(f"grantflow: {detail}", err=True)
        ctx.exit(1 if resp.status_code < 500 else 3)
    return dict(data)


@sandbox.command("slack-click")
@click.option("--user", "user_email", required=True, help="who clicks (their Slack account in the stand-in)")
@click.option("--request", "request_id", required=True)
@click.option("--deny", is_flag=True, help="click Deny (and submit the reason) instead of Approve")
@click.option("--reason", default="", help="the reason typed into Slack's Deny dialog")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def slack_click(
    ctx: click.Context, user_email: str, request_id: str, deny: bool, reason: str, as_json: bool
) -> None:
    """Click Approve or Deny in the person's Slack message about a request (the Slack stand-in of
    `grantflow dev --with slack` sends grantflow the signed interaction); shows what Slack told them."""
    body = {"user_email": user_email, "request_id": request_id, "action": "deny" if deny else "approve"}
    result = _post_sandbox(ctx, "slack/click", {**body, "reason": reason}, as_json=as_json)
    if as_json:
        click.echo(json.dumps(result))
        return
    told = [str(t) for t in result.get("told", [])]  # type: ignore[attr-defined]
    click.echo(
        f"Slack answered {result['status']}" + "".join(f"\n  Slack told {user_email}: {t}" for t in told)
    )


@sandbox.command("jira-move")
@click.option("--user", "user_email", required=True, help="who moves the ticket (their Jira account)")
@click.option("--request", "request_id", required=True)
@click.option("--transition", required=True, help="e.g. Approve or Deny")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jira_move(ctx: click.Context, user_email: str, request_id: str, transition: str, as_json: bool) -> None:
    """Transition the request's Jira ticket as a person would (the Jira stand-in of
    `grantflow dev --with jira` sends grantflow the signed webhook)."""
    body = {"user_email": user_email, "request_id": request_id, "transition": transition}
    result = _post_sandbox(ctx, "jira/move", body, as_json=as_json)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['issue']} is now {result['status']}")
    for comment in result.get("comments", []):  # type: ignore[attr-defined]
        click.echo(f"  comment: {comment}")


@sandbox.command("jira-request")
@click.option("--user", "user_email", required=True, help="who asks (the reporter of the intake issue)")
@click.option("--resource", required=True, help="the issue's Resource field, e.g. pg-prod")
@click.option("--role", default="", help="the issue's Role field, e.g. admin (left empty if not given)")
@click.option("--duration", required=True, help="the issue's Duration field, e.g. 1h")
@click.option("--reason", required=True, help="why: the issue's description")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jira_request(
    ctx: click.Context, user_email: str, resource: str, role: str, duration: str, reason: str, as_json: bool
) -> None:
    """Create an issue in the Jira intake project as a person would, and show grantflow's answer (the Jira
    stand-in of `grantflow dev --with jira` sends grantflow the signed webhook). Exits 1 when grantflow
    started no request: its comment on the issue says why."""
    body = {
        "user_email": user_email,
        "resource": resource,
        "role": role,
        "duration": duration,
        "reason": reason,
    }
    result = _post_sandbox(ctx, "jira/request", body, as_json=as_json)
    request_id = result.get("request_id")
    if as_json:
        click.echo(json.dumps(result))
    else:
        started = f"request {request_id} started" if request_id else "no request started"
        click.echo(f"{result['issue']}: {started}")
        for comment in result.get("comments", []):  # type: ignore[attr-defined]
            click.echo(f"  comment: {comment}")
    if not request_id:
        ctx.exit(1)


@sandbox.command("slack-command")
@click.option("--user", "user_email", required=True, help="who types the command (their Slack account)")
@click.option("--text", required=True, help='what follows /access, e.g. "pg-prod admin 1h INC-7 fix"')
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def slack_command(ctx: click.Context, user_email: str, text: str, as_json: bool) -> None:
    """Type `/access <resource> [<role>] <duration> <reason…>` in Slack as a person would (the Slack stand-in
    of `grantflow dev --with slack` sends grantflow the signed slash command), and show what Slack told them.
    Exits 1 when grantflow started no request: Slack's message says why."""
    result = _post_sandbox(ctx, "slack/command", {"user_email": user_email, "text": text}, as_json=as_json)
    request_id = result.get("request_id")
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(str(result["command"]))
        for told in result.get("told", []):  # type: ignore[attr-defined]
            click.echo(f"  Slack told {user_email}: {told}")
        click.echo(f"request {request_id} started" if request_id else "no request started")
    if not request_id:
        ctx.exit(1)


@sandbox.command("hoop-review")
@click.option("--user", "user_email", required=True, help="who asks in hoop (their hoop user)")
@click.option("--connection", required=True, help="hoop connection name, e.g. pg-prod-admin")
@click.option("--duration", default="1h", show_default=True, help="jit: how long to connect for")
@click.option("--command", default=None, help="a onetime review of this command (as `hoop exec`), not jit")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hoop_review(
    ctx: click.Context, user_email: str, connection: str, duration: str, command: str | None, as_json: bool
) -> None:
    """Leave a review PENDING in the hoop stand-in as a person would with `hoop connect` on a connection
    that needs a review (jit, for --duration) or `hoop exec` (onetime, with --command); grantflow's review
    discovery polls at once and the request it opened for the review is shown. Exits 1 when grantflow
    opened none (it rejected the review in hoop, or left it to hoop): the reason is printed."""
    body = {"user_email": user_email, "connection": connection, "duration": duration, "command": command}
    result = _post_sandbox(ctx, "hoop/review", body, as_json=as_json)
    request_id = result.get("request_id")
    if as_json:
        click.echo(json.dumps(result))
    else:
        asked = f"for {connection} for {duration}" if command is None else f"to run a command on {connection}"
        click.echo(
            f"hoop review {result['review_id']} ({result['type']}, session {result['session_id']}) "
            f"PENDING: {user_email} asks {asked}"
        )
        if request_id:
            click.echo(f"request {request_id} started ({result['request_status']})")
        else:
            click.echo(f"no request started: {result.get('why')}")
    if not request_id:
        ctx.exit(1)
