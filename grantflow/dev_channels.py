"""Channels in ``grantflow dev``: Slack, Jira and email, each with its stand-in unless a real one is set.

``grantflow dev --with slack --with jira --with email`` starts the Slack stand-in (every person of the
organisation has a Slack account), the Jira stand-in and an SMTP sink, and points grantflow at them. A real
workspace, site or SMTP server configured through ``GRANTFLOW_SLACK_*``, ``GRANTFLOW_JIRA_*`` or
``GRANTFLOW_SMTP_*`` is used instead of the stand-in.

The Jira stand-in has the tickets project (``settings.jira_project``, ACC) and an intake project
(``settings.jira_intake_project``, else ACCREQ) with the custom fields Resource, Role and Duration, so a
request can be made by creating an issue there. Every person has an account and an API token (random,
made anew on each run and never shown), and the stand-in sends signed webhooks to the web app. The tickets
project's workflow also has the "Keep all" / "Revoke all" transitions of campaign digest issues
(:func:`_tickets_workflow`), which grantflow is pointed at (``jira_digest_keep_all_status`` / ``…revoke…``).

Nobody can click in a stand-in, so the dev web app gets sandbox-only controls that act as the person
would in Slack or Jira: ``POST /_sandbox/slack/click`` (Slack sends grantflow the signed interaction),
``POST /_sandbox/slack/command`` (the person types ``/access …``: Slack sends grantflow the signed slash
command, and the route answers with what Slack then showed them), ``POST /_sandbox/jira/move`` (Jira sends
grantflow the signed webhook) and ``POST /_sandbox/jira/request`` (the person creates an intake issue
through Jira's API with their own token).

The last intake is hoop itself: ``POST /_sandbox/hoop/review`` leaves a review PENDING in the hoop
stand-in as a person (``POST /api/_sandbox/reviews``: ``jit`` as ``hoop connect`` on a connection that
needs a review, ``onetime`` with a command as ``hoop exec``), asks grantflow's review discovery to poll now
(its ``poll_now`` update, instead of waiting for its interval) and answers with the request grantflow opened
for the review, or with why it opened none. ``grantflow sandbox slack-click``, ``slack-command``,
``jira-move``, ``jira-request`` and ``hoop-review`` call these routes, which exist only in ``grantflow dev``;
a reviewer's controls on campaign digests are ``grantflow/dev_campaigns.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any

import click
import httpx
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from configuration.settings import Settings
from domain.identity import Organisation

if TYPE_CHECKING:
    from domain.requests import RequestView
    from sandbox.jira.workflow import JiraWorkflow
    from web.app import WebContext
    from workflows.hoop_reviews import PollSummary

log = logging.getLogger("grantflow.dev")
CHANNELS = ("slack", "jira", "email")
JIRA_API_USER = "grantflow-bot@example.com"
JIRA_INTAKE_PROJECT = "ACCREQ"
DIGEST_KEEP_ALL_STATUS = "All kept"
DIGEST_REVOKE_ALL_STATUS = "All revoked"
JIRA_INTAKE_WAIT = 8.0
"""Seconds ``/_sandbox/jira/request`` waits for grantflow to answer the new intake issue (its Jira edge
gives itself as long before it answers the webhook)."""
SLACK_COMMAND_WAIT = 10.0
"""Seconds ``/_sandbox/slack/command`` waits for grantflow's answer to an acknowledged slash command."""
HOOP_REVIEW_WAIT = 10.0
"""Seconds ``/_sandbox/hoop/review`` waits for the discovery's poll, then again for the request."""
_REQUEST_IN_SLACK = re.compile(r"Request `([^`\s]+)`")


@dataclass
class DevChannels:
    slack: Any = None  # SlackStandIn
    jira: Any = None  # JiraStandIn
    smtp: Any = None  # SmtpSink
    driver: Any = None  # SlackDriver
    jira_intake_project: str = ""
    jira_intake_fields: dict[str, str] = field(default_factory=dict)  # resource, role, duration -> field id
    jira_tokens: dict[str, str] = field(default_factory=dict, repr=False)  # email (lower) -> API token
    printed_emails: int = 0
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for stand_in in (self.slack, self.jira, self.smtp):
            if stand_in is not None:
                with contextlib.suppress(Exception):
                    stand_in.stop()
        if self.driver is not None:
            self.driver.close()


def start_channels(
    settings: Settings,
    wanted: tuple[str, ...],
    secrets: dict[str, str],
    org: Organisation,
    ports: dict[str, int],
) -> tuple[DevChannels, dict[str, object]]:
    """Start the stand-in of each wanted channel that is not configured for real; returns them and the
    settings that point grantflow at them."""
    channels = DevChannels()
    overrides: dict[str, object] = {}
    web = settings.effective_public_url
    if "slack" in wanted and settings.slack_bot_token is None:
        from sandbox.slack import SlackDriver, SlackStandIn

        slack = SlackStandIn(
            bot_token=secrets["slack_bot_token"],
            signing_secret=secrets["slack_signing_secret"],
            # DMs survive a restart, so grantflow keeps updating the messages people already have
            state_file=settings.state_dir / "slack.json",
        )
        for person in org.people:
            slack.add_user(person.email, person.display_name or person.email)
        url = slack.start(port=ports["slack"])
        channels.slack = slack
        channels.driver = SlackDriver(secrets["slack_signing_secret"], f"{web}/slack/events", slack=slack)
        overrides |= {
            "slack_bot_token": secrets["slack_bot_token"],
            "slack_signing_secret": secrets["slack_signing_secret"],
            "slack_api_url": url,
        }
        channels.notes.append(f"Slack stand-in {url} (click: grantflow sandbox slack-click)")
    if "jira" in wanted and not settings.jira_url:
        from sandbox.jira import JiraStandIn

        jira = JiraStandIn(
            users={JIRA_API_USER: secrets["jira_api_token"]},
            webhook_secret=secrets["jira_webhook_secret"],
            webhook_url=f"{web}/jira/webhook",
            # tickets survive a restart, so new requests never reuse an old request's ticket key
            state_file=settings.state_dir / "jira.json",
        )
        workflow = _tickets_workflow()
        if not jira.has_project(settings.jira_project):
            jira.add_project(settings.jira_project, "Access requests", workflow=workflow)
        else:  # kept from an earlier run, perhaps with an older workflow: publish this one
            jira.set_workflow(settings.jira_project, workflow)
        intake = settings.jira_intake_project or JIRA_INTAKE_PROJECT
        if intake.upper() != settings.jira_project.upper() and not jira.has_project(intake):
            jira.add_project(intake, "Access intake")
        channels.jira_intake_project = intake
        channels.jira_intake_fields = _add_intake_fields(jira, settings.jira_intake_fields)
        for person in org.people:
            # A token per person, so the sandbox can create intake issues as them through Jira's API.
            token = token_urlsafe(24)
            jira.add_user(person.email, person.display_name or person.email, api_token=token)
            channels.jira_tokens[person.email.lower()] = token
        url = jira.start(port=ports["jira"])
        channels.jira = jira
        overrides |= {
            "jira_url": url,
            "jira_email": JIRA_API_USER,
            "jira_api_token": secrets["jira_api_token"],
            "jira_webhook_secret": secrets["jira_webhook_secret"],
            "jira_intake_project": intake,
            # the statuses the digest workflow's "Keep all" / "Revoke all" transitions lead to
            "jira_digest_keep_all_status": DIGEST_KEEP_ALL_STATUS,
            "jira_digest_revoke_all_status": DIGEST_REVOKE_ALL_STATUS,
        }
        channels.notes.append(
            f"Jira stand-in {url}, projects {settings.jira_project} and intake {intake} "
            "(transition: grantflow sandbox jira-move; request: grantflow sandbox jira-request)"
        )
    if "email" in wanted and not settings.smtp_host:
        from sandbox.smtp import SmtpSink

        smtp = SmtpSink()
        host, port = smtp.start(port=ports["smtp"])
        channels.smtp = smtp
        overrides |= {"smtp_host": host, "smtp_port": port}
        channels.notes.append(f"SMTP sink {host}:{port} (emails are printed below)")
    return channels, overrides


def _tickets_workflow() -> JiraWorkflow:
    """The tickets project's workflow in the Jira stand-in: the stand-in's default (what request tickets
    move through), plus the "Keep all" / "Revoke all" transitions a Jira admin adds for campaign digest
    issues (a move there decides every item still pending, the move's comment being the reason; "Reopen"
    leads back, as it does from every other status), and
    "Close" offered from every open status, so a digest issue is closed when its stage closes wherever the
    reviewer left it. Request tickets never take the new transitions: grantflow ignores a move to a status
    that is no decision."""
    from sandbox.jira.workflow import DEFAULT_WORKFLOW, JiraStatus, JiraTransition, JiraWorkflow

    reopened_from = next(t.sources for t in DEFAULT_WORKFLOW.transitions if t.name == "Reopen")
    return JiraWorkflow(
        statuses=(
            *DEFAULT_WORKFLOW.statuses,
            JiraStatus("10005", DIGEST_KEEP_ALL_STATUS, "indeterminate"),
            JiraStatus("10006", DIGEST_REVOKE_ALL_STATUS, "indeterminate"),
        ),
        transitions=(
            *(t for t in DEFAULT_WORKFLOW.transitions if t.name not in ("Close", "Reopen")),
            JiraTransition(
                "61", "Keep all", DIGEST_KEEP_ALL_STATUS, ("Waiting for approval", DIGEST_REVOKE_ALL_STATUS)
            ),
            JiraTransition(
                "71", "Revoke all", DIGEST_REVOKE_ALL_STATUS, ("Waiting for approval", DIGEST_KEEP_ALL_STATUS)
            ),
            JiraTransition(
                "51",
                "Reopen",
                "Waiting for approval",
                (*reopened_from, DIGEST_KEEP_ALL_STATUS, DIGEST_REVOKE_ALL_STATUS),
            ),
            JiraTransition(
                "31",
                "Close",
                "Done",
                ("Approved", "Waiting for approval", DIGEST_KEEP_ALL_STATUS, DIGEST_REVOKE_ALL_STATUS),
            ),
        ),
        initial=DEFAULT_WORKFLOW.initial,
    )


def _add_intake_fields(jira: Any, configured: dict[str, str]) -> dict[str, str]:
    """The intake project's custom fields, as grantflow is configured to read them (by name, or by a
    ``customfield_…`` id, which the stand-in then uses); returns resource, role and duration -> field id."""
    ids: dict[str, str] = {}
    for part in ("resource", "role", "duration"):
        name = configured.get(part, part.title())
        if name.startswith("customfield_"):
            ids[part] = jira.add_custom_field(part.title(), field_id=name)
        else:
            ids[part] = jira.add_custom_field(name)
    return ids


class SlackClick(BaseModel):
    user_email: str
    request_id: str
    action: str = "approve"  # approve or deny
    reason: str = ""


class JiraMove(BaseModel):
    user_email: str
    request_id: str
    transition: str


class JiraRequest(BaseModel):
    user_email: str
    resource: str
    role: str = ""
    duration: str
    reason: str


class SlackCommand(BaseModel):
    user_email: str
    text: str


class HoopReview(BaseModel):
    user_email: str
    connection: str
    duration: str = "1h"  # jit: how long the person asks to connect for
    command: str | None = None  # given: a onetime review of this command (as ``hoop exec``)


def _slack_person(channels: DevChannels, email: str) -> tuple[Any, Any, str]:
    """The Slack stand-in, its driver and the person's Slack user id; 404 when either is missing."""
    if channels.slack is None:
        raise HTTPException(404, "the Slack stand-in is not running (grantflow dev --with slack)")
    try:
        user = str(channels.slack.user_id(email))
    except KeyError:
        raise HTTPException(404, f"{email} has no Slack account in the stand-in") from None
    return channels.slack, channels.driver, user


def sandbox_router(channels: DevChannels) -> APIRouter:
    """Dev-only controls that act as a person in the Slack and Jira stand-ins."""
    from integrations.slack import APPROVE_ACTION, DENY_ACTION, DENY_REASON_ACTION, DENY_REASON_BLOCK

    router = APIRouter(prefix="/_sandbox", include_in_schema=False)

    @router.post("/slack/click")
    async def slack_click(body: SlackClick) -> dict[str, Any]:
        slack, driver, user = _slack_person(channels, body.user_email)
        channel = slack.dm_channel(user)
        found = [
            m
            for m in slack.messages(channel)
            if body.request_id in str(m.get("blocks", "")) and m.get("blocks")
        ]
        if not found:
            raise HTTPException(404, f"{body.user_email} has no Slack message about {body.request_id}")
        message = found[-1]
        seen = len(_said_to(slack, user))  # what *this* person was told before the click
        action = APPROVE_ACTION if body.action == "approve" else DENY_ACTION
        try:
            # The driver posts back to this very app: run it off the event loop.
            response = await asyncio.to_thread(driver.click_button, user, channel, message["ts"], action)
        except LookupError:
            # the message has no such button any more: the request was decided, or is no longer theirs
            text = _message_text(message)
            raise HTTPException(
                409,
                f"{body.user_email}'s Slack message about {body.request_id} has no {body.action} button"
                + (f" any more: it says {text!r}" if text else ""),
            ) from None
        if body.action != "approve" and response.status_code == 200:
            await asyncio.sleep(0.2)
            values = {DENY_REASON_BLOCK: {DENY_REASON_ACTION: body.reason or "denied in the Slack stand-in"}}
            response = await asyncio.to_thread(driver.submit_view, user, values=values)
        told = await _wait_for_said(slack, user, seen, 3.0)
        return {"status": response.status_code, "told": told}

    @router.post("/jira/move")
    async def jira_move(body: JiraMove) -> dict[str, Any]:
        jira = channels.jira
        if jira is None:
            raise HTTPException(404, "the Jira stand-in is not running (grantflow dev --with jira)")
        issues = jira.issues(label=f"grantflow-{body.request_id}")
        if not issues:
            raise HTTPException(404, f"no Jira ticket for {body.request_id}")
        key = issues[0]["key"]
        before = len(jira.comments(key))
        try:
            account = jira.account_id(body.user_email)
        except KeyError:
            raise HTTPException(404, f"{body.user_email} has no Jira account in the stand-in") from None
        try:
            await asyncio.to_thread(jira.transition_as, key, body.transition, account)
        except ValueError as exc:  # Jira offers no such transition from the ticket's status
            raise HTTPException(409, str(exc)) from None
        await asyncio.to_thread(jira.wait_idle, 5.0)
        await asyncio.sleep(0.5)  # grantflow answers the webhook, then comments
        return {"issue": key, "status": jira.status_of(key), "comments": jira.comments(key)[before:]}

    @router.post("/jira/request")
    async def jira_request(body: JiraRequest) -> dict[str, Any]:
        jira = channels.jira
        if jira is None:
            raise HTTPException(404, "the Jira stand-in is not running (grantflow dev --with jira)")
        token = channels.jira_tokens.get(body.user_email.lower())
        if token is None:
            raise HTTPException(404, f"{body.user_email} has no Jira account in the stand-in")
        field_ids = channels.jira_intake_fields
        fields: dict[str, Any] = {
            "project": {"key": channels.jira_intake_project},
            "issuetype": {"name": "Task"},
            "summary": " ".join(filter(None, ("Access to", body.resource, body.role))),
            "description": body.reason,
            field_ids["resource"]: body.resource,
            field_ids["duration"]: body.duration,
        }
        if body.role:
            fields[field_ids["role"]] = body.role
        # Through Jira's API with the person's own token, as they would: the issue's reporter is them.
        try:
            async with httpx.AsyncClient(
                base_url=jira.url, auth=(body.user_email, token), timeout=10
            ) as client:
                response = await client.post("/rest/api/2/issue", json={"fields": fields})
        except httpx.HTTPError as exc:
            raise HTTPException(502, f"the Jira stand-in did not answer: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail: Any = response.json()
            except ValueError:
                detail = response.text
            raise HTTPException(response.status_code if response.status_code < 500 else 502, detail)
        key = str(response.json()["key"])
        issue = await _wait_for_grantflow(jira, key)
        if issue is None:
            raise HTTPException(
                504, f"{key} was created, but grantflow did not answer it within {JIRA_INTAKE_WAIT:.0f} s"
            )
        labels = [str(label) for label in issue["fields"]["labels"]]
        request_id = next(
            (lb.removeprefix("grantflow-") for lb in labels if lb.startswith("grantflow-")), None
        )
        return {
            "issue": key,
            "request_id": request_id,
            "status": issue["fields"]["status"]["name"],
            "comments": [c["body"] for c in issue["fields"]["comment"]["comments"]],
        }

    @router.post("/slack/command")
    async def slack_command(body: SlackCommand, request: Request) -> dict[str, Any]:
        slack, driver, user = _slack_person(channels, body.user_email)
        command = _context(request).settings.slack_access_command
        before = len(_said_to(slack, user))
        # Signed with the app's signing secret, as Slack sends it; the driver posts back to this very app.
        response = await asyncio.to_thread(driver.slash_command, user, command, body.text)
        if response.status_code != 200:
            raise HTTPException(502, f"grantflow answered the slash command {response.status_code}")
        try:
            ack = str(response.json().get("text") or "")
        except ValueError:
            ack = response.text
        told = [ack] if ack else []
        if not ack or ack.startswith("Asking for "):  # acknowledged: the outcome follows (response_url)
            told += await _wait_for_said(slack, user, before, SLACK_COMMAND_WAIT)
        found = next((m for t in told if (m := _REQUEST_IN_SLACK.search(t))), None)
        return {"command": f"{command} {body.text}", "told": told, "request_id": found and found.group(1)}

    @router.post("/hoop/review")
    async def hoop_review(body: HoopReview, request: Request) -> dict[str, Any]:
        from domain.durations import DurationError, parse_duration
        from domain.requests import hoop_request_id
        from workflows.hoop_reviews import HoopReviewDiscoveryWorkflow, ensure_hoop_discovery

        context = _context(request)
        settings = context.settings
        if not settings.hoop_url or settings.hoop_api_key is None:
            raise HTTPException(404, "grantflow dev has no hoop gateway configured")
        review: dict[str, Any] = {"user_email": body.user_email, "connection": body.connection}
        if body.command is not None:
            review |= {"type": "onetime", "command": body.command}
        else:
            try:
                review |= {"type": "jit", "duration_sec": int(parse_duration(body.duration).total_seconds())}
            except DurationError as exc:
                raise HTTPException(422, str(exc)) from None
        headers = {"Authorization": f"Bearer {settings.hoop_api_key.get_secret_value()}"}
        try:
            async with httpx.AsyncClient(base_url=settings.hoop_url, headers=headers, timeout=10) as hoop:
                made = await hoop.post("/api/_sandbox/reviews", json=review)
                if made.status_code == 404 and not _message(made).startswith("connection not found"):
                    raise HTTPException(
                        404, f"{settings.hoop_url} is not the hoop stand-in: it has no sandbox controls"
                    )
                if made.status_code >= 400:
                    message = _message(made)
                    raise HTTPException(made.status_code if made.status_code < 500 else 502, message)
                pending = made.json()
                review_id = str(pending["review_id"])
                # Poll now rather than at the discovery's interval (it runs already: the worker starts it).
                discovery = await ensure_hoop_discovery(context.client, settings)
                try:
                    summary = await asyncio.wait_for(
                        discovery.execute_update(HoopReviewDiscoveryWorkflow.poll_now), HOOP_REVIEW_WAIT
                    )
                except Exception:  # timed out or refused: the discovery still polls at its interval
                    log.warning("asking grantflow's hoop review discovery to poll now failed", exc_info=True)
                    summary = None
                request_id = hoop_request_id(review_id)
                turned_down = summary is not None and review_id in (*summary.rejected, *summary.left_alone)
                view = None if turned_down else await _wait_for_request(context, request_id, HOOP_REVIEW_WAIT)
                why = None
                if view is None:
                    why = await _why_no_request(hoop, review_id, summary)
        except httpx.HTTPError as exc:
            raise HTTPException(502, f"the hoop gateway did not answer: {exc}") from exc
        return {
            **pending,
            "request_id": request_id if view is not None else None,
            "request_status": view.status.value if view is not None else None,
            "why": why,
        }

    return router


def _context(request: Request) -> WebContext:
    context: WebContext = request.app.state.context
    return context


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("message") or body) if isinstance(body, dict) else str(body)


async def _wait_for_request(context: WebContext, request_id: str, timeout: float) -> RequestView | None:
    """The request's view once it is in the store, or None when it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        view = await asyncio.to_thread(context.store.get_request, request_id)
        if view is not None or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.2)


async def _why_no_request(hoop: httpx.AsyncClient, review_id: str, summary: PollSummary | None) -> str:
    """Why grantflow opened no request for a review: it rejected it in hoop (the reason is on the review),
    it left it to hoop's own reviewers, or it has not seen it (yet)."""
    if summary is None:
        return "grantflow's review discovery did not poll at once: the request may appear at its next poll"
    if summary.error:
        return summary.error
    found = await hoop.get(f"/api/reviews/{review_id}")
    state = found.json() if found.status_code == 200 else {}
    if state.get("status") == "REJECTED" or review_id in summary.rejected:
        reason = state.get("rejection_reason") or "no reason given"
        return f"grantflow rejected the review in hoop: {reason}"
    if review_id in summary.left_alone:
        return "grantflow left the review to hoop's own reviewers (see grantflow dev's log for why)"
    return f"the review is {state.get('status', 'unknown')} in hoop and grantflow opened no request for it"


async def _wait_for_grantflow(
    jira: Any, key: str, timeout: float = JIRA_INTAKE_WAIT
) -> dict[str, Any] | None:
    """The issue once grantflow has commented on it (it labels the issue with the request first), or None
    when it has not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The stand-in takes its lock, which its own HTTP handlers hold: read it off the event loop.
        issue: dict[str, Any] = await asyncio.to_thread(jira.issue, key)
        authors = [c["author"].get("emailAddress") for c in issue["fields"]["comment"]["comments"]]
        if JIRA_API_USER in authors:
            return issue
        await asyncio.sleep(0.1)
    return None


def _said_to(slack: Any, user: str) -> list[str]:
    """Every ephemeral text shown to ``user`` in the Slack stand-in (response URLs, chat.postEphemeral)."""
    texts = [str(r["body"].get("text", "")) for r in list(slack.responses) if r.get("user_id") == user]
    return texts + [str(e["text"]) for e in list(slack.ephemerals) if e.get("user") == user]


async def _wait_for_said(slack: Any, user: str, seen: int, timeout: float) -> list[str]:
    """The texts shown to ``user`` after the first ``seen`` ones, once there is one (empty after
    ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [t for t in _said_to(slack, user)[seen:] if t]
        if fresh:
            return fresh
        await asyncio.sleep(0.1)
    return []


def _message_text(message: dict[str, Any]) -> str:
    """The first line a person reads in a Slack message (its text, else its first section)."""
    text = str(message.get("text") or "")
    if not text:
        for block in message.get("blocks", []):
            if block.get("type") == "section" and isinstance(block.get("text"), dict):
                text = str(block["text"].get("text", ""))
                break
    return text.splitlines()[0] if text else ""


def print_new_emails(channels: DevChannels) -> None:
    """Show emails the SMTP sink received since the last call (their review links included)."""
    if channels.smtp is None:
        return
    messages = list(channels.smtp.messages)
    for message in messages[channels.printed_emails :]:
        link = next((w for w in (message.text or "").split() if "/review/" in w), "")
        to = ", ".join(message.rcpt_tos)
        click.echo(f"  📧 {to}: {message.message['Subject']}" + (f"\n      {link}" if link else ""))
    channels.printed_emails = len(messages)
