"""Vendor set-up a real administrator can follow: the Slack app manifest and the Jira admin webhook that
``grantflow setup`` prints, and the start-up check that names a missing Slack scope or Jira transition
(against the Slack and Jira stand-ins) instead of failing on the first request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from jira import JIRA
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from configuration.settings import Settings, SettingsError
from grantflow.cli import main
from integrations.jira_tickets import JiraTickets, build_jira
from integrations.vendor_setup import (
    SLACK_BOT_SCOPES,
    check_channels,
    check_jira,
    require_channels_set_up,
    slack_manifest,
)
from sandbox.jira import JiraStandIn
from sandbox.slack import SlackStandIn

BOT_TOKEN = "xoxb-setup-test"
JIRA_BOT, JIRA_TOKEN = "grantflow-bot@example.com", "jira-api-token"
PUBLIC_URL = "https://grantflow.example.com"
WAITING = {"Approve": "Approved", "Deny": "Denied", "Cancel": "Cancelled"}


@pytest.fixture(scope="module")
def jira() -> Iterator[JiraStandIn]:
    stand_in = JiraStandIn(users={JIRA_BOT: JIRA_TOKEN})
    stand_in.add_project("ACC", "Access requests")
    stand_in.add_project("EMPTY", "No tickets yet")
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def jira_client(jira: JiraStandIn) -> Iterator[JIRA]:
    client = build_jira(jira.url, JIRA_BOT, JIRA_TOKEN, timeout=5)
    tickets = JiraTickets(client, project_key="ACC", issue_type="Task", transition_names=WAITING)
    tickets.open_ticket(label="grantflow-req-sample", summary="a waiting ticket", description="")
    yield client
    client.close()


def slack_with(scopes: list[str]) -> SlackStandIn:
    stand_in = SlackStandIn(bot_token=BOT_TOKEN, scopes=scopes)
    stand_in.start()
    return stand_in


def slack_settings(stand_in: SlackStandIn, tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, slack_bot_token=BOT_TOKEN, slack_api_url=stand_in.api_url)


# ------------------------------------------------------------------------------------------ Slack manifest


def test_the_manifest_asks_for_every_scope_and_points_slack_at_the_public_url() -> None:
    manifest = slack_manifest(PUBLIC_URL + "/")
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "chat:write",
        "chat:write.public",
        "commands",
        "im:history",
        "im:write",
        "users:read",
        "users:read.email",
    }
    assert manifest["settings"]["interactivity"] == {
        "is_enabled": True,
        "request_url": f"{PUBLIC_URL}/slack/events",
    }
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/access" and command["url"] == f"{PUBLIC_URL}/slack/events"
    assert manifest["settings"]["socket_mode_enabled"] is False
    socket = slack_manifest("", socket_mode=True)
    assert socket["settings"]["socket_mode_enabled"] is True
    assert "url" not in socket["features"]["slash_commands"][0]
    assert "request_url" not in socket["settings"]["interactivity"]


def test_setup_slack_manifest_prints_it_with_the_public_url_and_the_steps_after() -> None:
    result = CliRunner().invoke(
        main, ["setup", "slack-manifest", "--public-url", PUBLIC_URL, "--command", "/jit"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["settings"]["interactivity"]["request_url"] == f"{PUBLIC_URL}/slack/events"
    assert manifest["features"]["slash_commands"][0]["command"] == "/jit"
    assert (
        "GRANTFLOW_SLACK_BOT_TOKEN" in result.stderr and "GRANTFLOW_OPERATOR_SLACK_CHANNEL" in result.stderr
    )
    socket = CliRunner().invoke(main, ["setup", "slack-manifest", "--socket-mode"])
    assert socket.exit_code == 0 and "connections:write" in socket.stderr


def test_setup_slack_manifest_needs_a_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRANTFLOW_PUBLIC_URL", raising=False)
    result = CliRunner().invoke(main, ["setup", "slack-manifest"])
    assert result.exit_code == 2 and "--public-url" in result.output


# ------------------------------------------------------------------------------------------ Jira webhook


def test_setup_jira_webhook_prints_the_admin_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANTFLOW_JIRA_INTAKE_PROJECT", "ACCREQ")
    result = CliRunner().invoke(main, ["setup", "jira-webhook", "--public-url", PUBLIC_URL, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": "grantflow",
        "url": f"{PUBLIC_URL}/jira/webhook",
        "events": ["jira:issue_created", "jira:issue_updated"],
        "jql": 'project in ("ACC", "ACCREQ")',
        "secret": "the value of GRANTFLOW_JIRA_WEBHOOK_SECRET",
        "exclude_body": False,
    }
    human = CliRunner().invoke(main, ["setup", "jira-webhook", "--public-url", PUBLIC_URL])
    assert "X-Hub-Signature" in human.stdout and "JWT" in human.stdout
    assert "--register ADMIN_EMAIL" in human.stdout


def test_setup_jira_webhook_registers_it_once_as_an_administrator(
    jira: JiraStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--register`` calls Jira's admin-webhook API with an administrator's credentials (never grantflow's
    own API user), signed with grantflow's webhook secret; a second run finds it and adds nothing."""
    jira.add_user("admin@example.com", "Site Admin", api_token="admin-token")
    jira.site_admins.add("admin@example.com")
    for name, value in {
        "GRANTFLOW_JIRA_URL": jira.url,
        "GRANTFLOW_JIRA_WEBHOOK_SECRET": "whsec-register",
        "GRANTFLOW_JIRA_ADMIN_TOKEN": "admin-token",
    }.items():
        monkeypatch.setenv(name, value)
    args = ["setup", "jira-webhook", "--public-url", PUBLIC_URL, "--register", "admin@example.com", "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    created = json.loads(first.stdout)
    assert created["registered"] is True and created["webhook"]["url"] == f"{PUBLIC_URL}/jira/webhook"
    assert "secret" not in created["webhook"]  # Jira never shows it back
    [call] = [c for c in jira.calls if c.method == "POST" and c.path == "/rest/webhooks/1.0/webhook"]
    assert call.json["secret"] == "whsec-register"
    assert call.json["filters"] == {"issue-related-events-section": 'project in ("ACC")'}
    assert (jira.webhook_url, jira.webhook_secret) == (f"{PUBLIC_URL}/jira/webhook", "whsec-register")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["registered"] is False
    assert len([c for c in jira.calls if c.path == "/rest/webhooks/1.0/webhook" and c.method == "POST"]) == 1
    jira.set_webhook(None)

    # grantflow's own API user is no administrator: refused with a sentence, exit 1
    monkeypatch.setenv("GRANTFLOW_JIRA_ADMIN_TOKEN", JIRA_TOKEN)
    refused = CliRunner().invoke(
        main, ["setup", "jira-webhook", "--public-url", PUBLIC_URL, "--register", JIRA_BOT]
    )
    assert refused.exit_code == 1 and "needs a Jira administrator" in refused.stderr
    monkeypatch.delenv("GRANTFLOW_JIRA_ADMIN_TOKEN")
    no_token = CliRunner().invoke(
        main, ["setup", "jira-webhook", "--public-url", PUBLIC_URL, "--register", "a@b.c"]
    )
    assert no_token.exit_code == 4 and "GRANTFLOW_JIRA_ADMIN_TOKEN" in no_token.stderr


# ------------------------------------------------------------------------------------------ the check


async def test_a_missing_slack_scope_is_named_at_start(tmp_path: Path) -> None:
    stand_in = slack_with([s for s in SLACK_BOT_SCOPES if s != "users:read.email"])
    try:
        settings = slack_settings(stand_in, tmp_path)
        with pytest.raises(
            SettingsError, match=r"lacks scope\(s\) users:read.email: users:read.email \(find"
        ):
            await require_channels_set_up(settings)
    finally:
        stand_in.stop()


async def test_every_scope_granted_passes_and_public_posting_is_optional(tmp_path: Path) -> None:
    stand_in = slack_with([s for s in SLACK_BOT_SCOPES if s != "chat:write.public"])
    try:
        settings = slack_settings(stand_in, tmp_path).model_copy(update={"operator_slack_channel": "C0OPS"})
        check = await check_channels(settings)
        assert check.problems == []
        assert any("invited to C0OPS" in note for note in check.notes)
    finally:
        stand_in.stop()


async def test_a_refused_slack_token_is_a_problem_and_slack_down_only_a_note(tmp_path: Path) -> None:
    stand_in = slack_with(list(SLACK_BOT_SCOPES))
    try:
        settings = slack_settings(stand_in, tmp_path)
        wrong = settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-wrong")})
        assert "refused (invalid_auth)" in " ".join((await check_channels(wrong)).problems)
    finally:
        stand_in.stop()
    down = await check_channels(settings)  # stopped: nothing listens there any more
    assert down.problems == [] and down.unchecked and down.unchecked[0].startswith("Slack not checked")


def test_the_configured_transitions_are_read_on_a_waiting_ticket(jira_client: JIRA, tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    assert check_jira(jira_client, settings, WAITING).problems == []
    renamed = {"Approve": "Approved", "Refuse": "Denied", "Cancel": "Closed"}
    problems = check_jira(jira_client, settings, renamed).problems
    assert len(problems) == 2, problems
    assert "offers no transition 'Refuse' (it offers: Approve, Deny, Cancel)" in problems[0]
    assert "'Cancel' leads to 'Cancelled', not 'Closed'" in problems[1]
    empty = check_jira(jira_client, Settings(state_dir=tmp_path, jira_project="EMPTY"), WAITING)
    assert empty.problems == [] and "no ticket of EMPTY" in empty.notes[0]


async def test_a_missing_jira_transition_stops_the_worker_at_start(
    jira: JiraStandIn, jira_client: JIRA, tmp_path: Path
) -> None:
    settings = Settings(
        state_dir=tmp_path,
        jira_url=jira.url,
        jira_email=JIRA_BOT,
        jira_api_token=JIRA_TOKEN,
        jira_transitions={
            "Approve": "Approved",
            "Reject": "Denied",
            "Cancel": "Cancelled",
            "Reopen": "Waiting for approval",
        },
        jira_deny_status="Denied",
    )
    with pytest.raises(SettingsError, match="offers no transition 'Reject'"):
        await require_channels_set_up(settings)


def test_setup_check_exits_4_naming_the_missing_scope(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stand_in = slack_with(["chat:write", "im:write", "users:read", "users:read.email", "commands"])
    try:
        monkeypatch.setenv("GRANTFLOW_STATE_DIR", str(tmp_path))
        monkeypatch.setenv("GRANTFLOW_SLACK_BOT_TOKEN", BOT_TOKEN)
        monkeypatch.setenv("GRANTFLOW_SLACK_API_URL", stand_in.api_url)
        result = CliRunner().invoke(main, ["setup", "check"])
        as_json = CliRunner().invoke(main, ["setup", "check", "--json"])
    finally:
        stand_in.stop()
    assert result.exit_code == 4, result.output
    assert "im:history" in result.stderr
    assert as_json.exit_code == 4 and "im:history" in json.loads(as_json.stdout)["problems"][0]


async def test_grantflow_worker_stops_at_start_naming_the_missing_scope(
    tmp_path: Path, dev_env: WorkflowEnvironment
) -> None:
    import asyncio

    from tests.test_startup import grantflow, migrated, refused

    stand_in = slack_with([s for s in SLACK_BOT_SCOPES if s != "im:history"])
    try:
        settings = migrated(tmp_path) | {
            "temporal_address": dev_env.client.service_client.config.target_host,
            "slack_bot_token": BOT_TOKEN,
            "slack_api_url": stand_in.api_url,
        }
        result = await asyncio.to_thread(grantflow, tmp_path, "worker", settings=settings)
    finally:
        stand_in.stop()
    refused(result, 4, "Slack: the bot token lacks scope(s) im:history")
