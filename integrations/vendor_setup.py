"""Setting Slack and Jira up for grantflow, and checking at start that they were set up right.

- :func:`slack_manifest`: the Slack app manifest (https://api.slack.com/reference/manifests) with the bot
  scopes grantflow uses (:data:`SLACK_BOT_SCOPES`, each with why), the ``/access`` slash command and
  interactivity pointed at ``<public URL>/slack/events`` — or, for Socket Mode, no URLs at all (the app-level
  ``xapp-`` token with ``connections:write`` is made in the app's settings: manifests cannot make tokens).
- :func:`jira_webhook_settings`: what a Jira administrator enters under System → WebHooks. grantflow
  accepts only *admin* webhooks, which Jira Cloud signs with ``X-Hub-Signature`` (HMAC-SHA256 of the body
  with the secret entered there, ``GRANTFLOW_JIRA_WEBHOOK_SECRET``); webhooks registered by a Connect or
  Forge app carry a JWT instead, which grantflow refuses (401).
- :func:`check_slack` and :func:`check_jira`: the start-up check. Slack names a token's scopes in the
  ``X-OAuth-Scopes`` header of every Web API answer, so one ``auth.test`` tells which scope is missing;
  Jira lists the transitions a ticket offers from its status, so the newest waiting ticket of the project
  tells whether the configured approve, deny and cancel transitions exist and lead where configured. A
  missing scope or transition is a :class:`SetupCheck` problem (the worker refuses to start, naming it);
  what cannot be checked now (no ticket yet, the vendor unreachable) is a note.
- :func:`slack_from_settings`: the bot's Slack client as configured, for the check and the worker alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from jira import JIRA
from slack_sdk.web.async_client import AsyncWebClient

from configuration.settings import Settings, SettingsError
from integrations.jira_tickets import JiraError, _jira_call, _jql_string, build_jira
from integrations.slack import SlackChannel, build_slack_client, slack_error

log = logging.getLogger("grantflow.setup")

SLACK_EVENTS_PATH = "/slack/events"  # web/slack_app.py serves interactivity and the slash command here
JIRA_WEBHOOK_PATH = "/jira/webhook"  # web/jira/router.py

SLACK_BOT_SCOPES: Mapping[str, str] = {
    "chat:write": "DM approvers and requesters, update those messages",
    "chat:write.public": "post escalations to the operators' channel without being invited to it",
    "commands": "the /access slash command",
    "im:history": "find a DM grantflow already posted before posting it again (no duplicates on retries)",
    "im:write": "open the DM with each approver and requester",
    "users:read": "read who clicked a button",
    "users:read.email": "find people's Slack accounts by their directory email",
}
"""The bot token's scopes. ``chat:write.public`` may be left out when the bot is invited to the
operators' channel (``/invite @grantflow``)."""

OPTIONAL_SLACK_SCOPES = frozenset({"chat:write.public"})

SOCKET_MODE_APP_SCOPES = ("connections:write",)
"""The app-level token's scopes (Socket Mode: ``GRANTFLOW_SLACK_APP_TOKEN``)."""

JIRA_WEBHOOK_EVENTS = ("jira:issue_created", "jira:issue_updated")
"""Created: intake issues start requests; updated: transitions decide."""


def slack_manifest(
    public_url: str, *, command: str = "/access", socket_mode: bool = False, name: str = "grantflow"
) -> dict[str, Any]:
    """The Slack app manifest for grantflow reachable at ``public_url`` (ignored with ``socket_mode``)."""
    events_url = public_url.rstrip("/") + SLACK_EVENTS_PATH
    slash: dict[str, Any] = {
        "command": command,
        "description": "Ask for just-in-time access",
        "usage_hint": "<resource> [<role>] <duration> <reason…>",
        "should_escape": False,
    }
    interactivity: dict[str, Any] = {"is_enabled": True}
    if not socket_mode:
        slash["url"] = events_url
        interactivity["request_url"] = events_url
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "Just-in-time access requests: approve or deny where you are asked",
        },
        "features": {
            "bot_user": {"display_name": name, "always_online": True},
            "app_home": {"messages_tab_enabled": True, "messages_tab_read_only_enabled": True},
            "slash_commands": [slash],
        },
        "oauth_config": {"scopes": {"bot": sorted(SLACK_BOT_SCOPES)}},
        "settings": {
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def jira_webhook_settings(settings: Settings, public_url: str) -> dict[str, Any]:
    """What to enter in Jira's System → WebHooks for this configuration."""
    projects = [settings.jira_project]
    if settings.jira_intake_project and settings.jira_intake_project.upper() != settings.jira_project.upper():
        projects.append(settings.jira_intake_project)
    return {
        "name": "grantflow",
        "url": public_url.rstrip("/") + JIRA_WEBHOOK_PATH,
        "events": list(JIRA_WEBHOOK_EVENTS),
        "jql": f"project in ({', '.join(_jql_string(p) for p in projects)})",
        "secret": "the value of GRANTFLOW_JIRA_WEBHOOK_SECRET",
        "exclude_body": False,
    }


JIRA_WEBHOOKS_API = "/rest/webhooks/1.0/webhook"
"""Admin webhooks are registered here (developer.atlassian.com/cloud/jira/platform/webhooks); the caller needs
the "Administer Jira" global permission, which grantflow's own API user should not have."""


class WebhookRegistrationError(Exception):
    """Jira refused or could not be asked; ``str()`` is the sentence to show."""


def register_jira_webhook(
    settings: Settings, public_url: str, admin_email: str, admin_token: str, *, timeout: float = 10.0
) -> dict[str, Any]:
    """Register grantflow's admin webhook with a Jira administrator's credentials, signed with
    ``GRANTFLOW_JIRA_WEBHOOK_SECRET``. One that already delivers to the same URL is reported, not doubled.
    Returns ``{"registered": bool, "webhook": <Jira's answer>}``."""
    if not settings.jira_url:
        raise WebhookRegistrationError(
            "GRANTFLOW_JIRA_URL is not set: which Jira site should the webhook be in?"
        )
    secret = settings.jira_webhook_secret.get_secret_value() if settings.jira_webhook_secret else ""
    if not secret:
        raise WebhookRegistrationError(
            "GRANTFLOW_JIRA_WEBHOOK_SECRET is not set: grantflow refuses unsigned deliveries; set it first"
        )
    wanted = jira_webhook_settings(settings, public_url)
    url = settings.jira_url.rstrip("/") + JIRA_WEBHOOKS_API
    try:
        with httpx.Client(auth=(admin_email, admin_token), timeout=timeout) as http:
            listed = http.get(url)
            _raise_for_jira(listed, admin_email)
            existing = [w for w in listed.json() if isinstance(w, dict) and w.get("url") == wanted["url"]]
            if existing:
                return {"registered": False, "webhook": existing[0]}
            body = {
                "name": wanted["name"],
                "url": wanted["url"],
                "events": wanted["events"],
                "filters": {"issue-related-events-section": wanted["jql"]},
                "excludeBody": False,
                "secret": secret,
            }
            created = http.post(url, json=body)
            _raise_for_jira(created, admin_email)
            return {"registered": True, "webhook": created.json()}
    except httpx.HTTPError as exc:
        raise WebhookRegistrationError(f"Jira at {settings.jira_url} could not be reached: {exc}") from exc


def _raise_for_jira(response: httpx.Response, admin_email: str) -> None:
    if response.status_code in (401, 403):
        raise WebhookRegistrationError(
            f"Jira refused {admin_email} ({response.status_code}): registering admin webhooks needs a Jira "
            "administrator's email and API token"
        )
    if response.status_code >= 400:
        raise WebhookRegistrationError(f"Jira answered {response.status_code}: {response.text[:300]}")


# ------------------------------------------------------------------------------------------ the check


@dataclass
class SetupCheck:
    """``problems``: what will fail (a missing scope, a missing transition); ``unchecked``: what could not
    be checked (the vendor unreachable or failing); ``notes``: what may be worth knowing."""

    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: SetupCheck) -> None:
        self.problems += other.problems
        self.unchecked += other.unchecked
        self.notes += other.notes


async def check_slack(client: AsyncWebClient, settings: Settings) -> SetupCheck:
    """The bot token's scopes against :data:`SLACK_BOT_SCOPES`, from ``auth.test``'s ``X-OAuth-Scopes``."""
    check = SetupCheck()
    try:
        resp = await client.auth_test()
    except Exception as exc:
        error = slack_error(exc, "checking the bot token")
        if error.error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
            check.problems.append(f"Slack: GRANTFLOW_SLACK_BOT_TOKEN is refused ({error.error})")
        else:
            check.unchecked.append(f"Slack not checked: {error.message}")
        return check
    headers = {str(k).lower(): str(v) for k, v in (resp.headers or {}).items()}
    if "x-oauth-scopes" not in headers:
        check.unchecked.append("Slack named no scopes (no X-OAuth-Scopes header): scopes not checked")
        return check
    granted = {s.strip() for s in headers["x-oauth-scopes"].split(",") if s.strip()}
    missing = sorted(set(SLACK_BOT_SCOPES) - granted - OPTIONAL_SLACK_SCOPES)
    if missing:
        why = "; ".join(f"{s} ({SLACK_BOT_SCOPES[s]})" for s in missing)
        check.problems.append(
            f"Slack: the bot token lacks scope(s) {', '.join(missing)}: {why}. Add them under OAuth & "
            "Permissions (or from `grantflow setup slack-manifest`) and reinstall the app"
        )
    if settings.operator_slack_channel and "chat:write.public" not in granted:
        check.notes.append(
            f"Slack: without chat:write.public the bot must be invited to {settings.operator_slack_channel} "
            "(GRANTFLOW_OPERATOR_SLACK_CHANNEL) to post escalations there"
        )
    return check


def check_jira(client: JIRA, settings: Settings, transitions: Mapping[str, str]) -> SetupCheck:
    """The configured ``transitions`` (name -> the status it leads to) that a waiting ticket must offer —
    approve, deny and cancel — read on the newest ticket of the project in the status tickets start in
    (the one ``Reopen`` leads back to). Blocking."""
    check = SetupCheck()
    project = settings.jira_project
    waiting = _status_of(settings.jira_transitions, "Reopen") or "Waiting for approval"
    jql = f"project = {_jql_string(project)} AND status = {_jql_string(waiting)} ORDER BY created DESC"
    try:
        found = _jira_call(f"searching {project}", client.search_issues, jql, maxResults=1, fields="status")
        if not found:
            check.notes.append(
                f"Jira: no ticket of {project} is in {waiting!r} yet: transitions checked once one is"
            )
            return check
        key = str(found[0].key)
        offered = _jira_call(f"reading the transitions of {key}", client.transitions, key)
    except JiraError as exc:
        if exc.status in (401, 403):
            check.problems.append(
                f"Jira: GRANTFLOW_JIRA_EMAIL / GRANTFLOW_JIRA_API_TOKEN refused ({exc.message})"
            )
        else:
            check.unchecked.append(f"Jira not checked: {exc.message}")
        return check
    # transition name -> the status it leads to, by name and by id (a configured status may be either)
    leads_to = {
        str(t["name"]).lower(): (
            str((t.get("to") or {}).get("name", "")),
            str((t.get("to") or {}).get("id", "")),
        )
        for t in offered
    }
    names = ", ".join(str(t["name"]) for t in offered) or "none"
    for name, status in transitions.items():
        target = leads_to.get(name.lower())
        if target is None:
            check.problems.append(
                f"Jira: {key} in {project} ({waiting}) offers no transition {name!r} (it offers: {names}); "
                "set GRANTFLOW_JIRA_TRANSITIONS to your workflow's transition names"
            )
        elif status and status.lower() not in (target[0].lower(), target[1]):
            check.problems.append(
                f"Jira: transition {name!r} leads to {target[0]!r}, "
                f"not {status!r} as GRANTFLOW_JIRA_TRANSITIONS says"
            )
    return check


def _status_of(transitions: Mapping[str, str], name: str) -> str | None:
    for configured, status in transitions.items():
        if configured.lower() == name.lower():
            return status
    return None


def slack_api_base(url: str) -> str | None:
    """The Web API base slack_sdk needs (ending in ``/api/``) from ``slack_api_url``: Slack's own when
    empty; a server's root (a stand-in's URL) gets ``/api/``, a URL ending in ``/api`` the slash."""
    if not url:
        return None
    url = url.rstrip("/")
    return url + "/" if url.endswith("/api") else url + "/api/"


def slack_from_settings(settings: Settings) -> SlackChannel | None:
    """The bot's Slack channel when a bot token is set (``GRANTFLOW_SLACK_BOT_TOKEN``, at
    ``GRANTFLOW_SLACK_API_URL``), else None. Close it with ``aclose``."""
    if settings.slack_bot_token is None or not settings.slack_bot_token.get_secret_value():
        return None
    token = settings.slack_bot_token.get_secret_value()
    return SlackChannel(build_slack_client(token, base_url=slack_api_base(settings.slack_api_url)))


async def check_channels(settings: Settings) -> SetupCheck:
    """The start-up check of every configured channel (Slack's scopes, Jira's transitions)."""
    check = SetupCheck()
    slack = slack_from_settings(settings)
    if slack is not None:
        try:
            check.extend(await check_slack(slack.client, settings))
        finally:
            await slack.aclose()
    if settings.jira_url:
        check.extend(await asyncio.to_thread(_check_jira_with_settings, settings))
    return check


def _check_jira_with_settings(settings: Settings) -> SetupCheck:
    approve, deny = settings.jira_approve_status.lower(), settings.jira_deny_status.lower()
    waiting = {  # what a ticket waiting for approval must offer: approve, deny, cancel
        name: status
        for name, status in settings.jira_transitions.items()
        if status.lower() in (approve, deny) or name.lower() == "cancel"
    }
    try:
        client = build_jira(
            settings.jira_url, settings.jira_email, settings.require_secret("jira_api_token"), timeout=10
        )
    except JiraError as exc:
        if exc.status in (401, 403):
            return SetupCheck(
                problems=[f"Jira: GRANTFLOW_JIRA_EMAIL / GRANTFLOW_JIRA_API_TOKEN refused ({exc.message})"]
            )
        return SetupCheck(unchecked=[f"Jira not checked: {exc.message}"])
    try:
        return check_jira(client, settings, waiting)
    finally:
        client.close()


async def require_channels_set_up(settings: Settings) -> None:
    """The worker's start-up check: ``SettingsError`` naming every missing Slack scope or Jira transition;
    what cannot be checked now (a vendor unreachable: the worker must still start) is logged."""
    check = await check_channels(settings)
    for unchecked in check.unchecked:
        log.warning("%s", unchecked)
    for note in check.notes:
        log.info("%s", note)
    if check.problems:
        raise SettingsError("; ".join(check.problems))
