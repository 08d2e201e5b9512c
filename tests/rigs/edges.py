"""grantflow's web app with its Slack and Jira edges, served on 127.0.0.1 in front of the stand-ins, and
what people do through them.

- :func:`settings_for`: the :class:`Settings` pointing grantflow at running stand-ins;
- :func:`serving`: the web app (``create_app``) with the edges those settings configure, on a free port;
- :class:`EdgeRig`, :class:`SlackPeople`, :class:`JiraPeople`: the actions of people in Slack (signed
  clicks, the deny modal, slash commands, the ephemeral answers they were shown) and in Jira (moving a ticket,
  creating an intake issue), and waiting for recorded state.

The rigs built on these are ``tests/channel_stack.py`` (every channel, grantflow's worker behind),
``tests/test_slack_edge.py`` and ``tests/test_jira_edge.py`` (one edge each, the stack's own worker behind).
Nothing here starts a worker or a stand-in: the rigs own those, and stop them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from jira import JIRA

from configuration.settings import Settings
from domain.requests import RequestStatus, RequestView
from sandbox.jira import JiraStandIn
from sandbox.slack import SlackDriver, SlackStandIn
from sandbox.smtp import SmtpSink
from tests.builders import deny_reason
from tests.stack import Stack
from web.app import create_app, running
from web.auth import TokenRegistry
from web.context import WebContext
from web.jira import build_jira_edge
from web.service import RequestService
from web.slack_app import build_slack_edge

__all__ = [
    "DEFAULT_TIMEOUT",
    "EdgeRig",
    "JiraPeople",
    "Served",
    "SlackPeople",
    "serving",
    "settings_for",
    "until",
]

DEFAULT_TIMEOUT = 30.0
SMTP_FROM = "grantflow@example.com"

T = TypeVar("T")


def settings_for(
    state_dir: Path,
    *,
    slack: SlackStandIn | None = None,
    jira: JiraStandIn | None = None,
    jira_user: tuple[str, str] | None = None,
    smtp: SmtpSink | None = None,
    **more: Any,
) -> Settings:
    """Settings for grantflow talking to running stand-ins: Slack with the stand-in's bot token (and its
    signing secret, when it has one), Jira as ``jira_user`` (email, API token), email through the sink;
    ``more`` adds or overrides settings."""
    values: dict[str, Any] = {"state_dir": state_dir}
    if slack is not None:
        values |= {"slack_bot_token": slack.bot_token, "slack_api_url": slack.url}
        if slack.signing_secret is not None:
            values["slack_signing_secret"] = slack.signing_secret
    if jira is not None:
        assert jira_user is not None, "grantflow needs a Jira API user"
        values |= {"jira_url": jira.url, "jira_email": jira_user[0], "jira_api_token": jira_user[1]}
    if smtp is not None:
        values |= {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_from": SMTP_FROM}
    return Settings(**{**values, **more})


@dataclass
class Served:
    context: WebContext
    url: str


@asynccontextmanager
async def serving(
    stack: Stack,
    settings: Settings,
    service: RequestService,
    *,
    tokens: TokenRegistry,
    csrf_key: bytes | None = None,
) -> AsyncIterator[Served]:
    """The web app on 127.0.0.1 with the Slack and Jira edges ``settings`` configure (None otherwise),
    the stack's store, client and policies behind; the edges are closed after the app stopped."""
    slack_edge = build_slack_edge(settings, service, stack.store)
    jira_edge = build_jira_edge(settings, service, stack.store)
    context = WebContext(
        settings=settings,
        store=stack.store,
        client=stack.env.client,
        policies=stack.policies,
        links=stack.links,
        tokens=tokens,
        service=service,
        slack=slack_edge,
        jira=jira_edge,
    )
    if csrf_key is not None:
        context.csrf_key = csrf_key
    try:
        async with running(create_app(context)) as url:
            yield Served(context, url)
    finally:
        if slack_edge is not None:
            await slack_edge.aclose()
        if jira_edge is not None:
            await jira_edge.aclose()


async def until(
    check: Callable[[], T | None], what: str, timeout: float = DEFAULT_TIMEOUT, every: float = 0.05
) -> T:
    """Poll ``check`` (a cheap, non-blocking look at recorded state) until it is truthy; its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert loop.time() <= deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(every)


@dataclass
class EdgeRig:
    """The web app in front of the stack: its URL, its context and the request service behind it."""

    stack: Stack
    service: RequestService
    context: WebContext
    url: str

    until = staticmethod(until)

    async def request(self, requester: str = "alice", **kwargs: Any) -> RequestView:
        """A request made through the service by ``requester`` (a name at example.com): pg-prod admin for
        1h, reason INC-1, unless ``kwargs`` say otherwise; PENDING, its approvers known."""
        asked = {"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "INC-1", **kwargs}
        view = await self.service.create(self.stack.actor(f"{requester}@example.com"), **asked)
        assert view.status is RequestStatus.PENDING and view.approvers_resolved
        return view

    def ledger(self, subject: str, kind: str) -> list[Any]:
        """The ledger entries of this kind about ``subject`` (a request id), oldest first."""
        return [e for e in self.stack.store.ledger_entries(subject=subject) if e.kind == kind]


class SlackPeople:
    """People in Slack, each known to the rig by a key (a name or an email) in ``slack_users``."""

    slack: SlackStandIn
    driver: SlackDriver
    settings: Settings
    slack_users: dict[str, str]  # key -> Slack user id

    async def click_at(self, who: str, where: tuple[str, str], action: str, **kwargs: Any) -> httpx.Response:
        """``who`` clicks button ``action`` of the message at (channel, ts), signed as Slack signs it."""
        return await asyncio.to_thread(
            self.driver.click_button, self.slack_users[who], where[0], where[1], action, **kwargs
        )

    async def submit_deny_reason(self, who: str, reason: str) -> httpx.Response:
        """``who`` types ``reason`` into the deny modal last opened for them and submits it."""
        return await asyncio.to_thread(
            self.driver.submit_view, self.slack_users[who], values=deny_reason(reason)
        )

    async def slash(self, who: str, text: str, **kwargs: Any) -> httpx.Response:
        """``who`` types the access slash command with ``text``."""
        return await asyncio.to_thread(
            self.driver.slash_command,
            self.slack_users[who],
            self.settings.slack_access_command,
            text,
            **kwargs,
        )

    def said_to(self, who: str) -> list[str]:
        """Every ephemeral text shown to ``who`` (response URLs, then chat.postEphemeral), in order."""
        user = self.slack_users[who]
        texts = [str(r["body"].get("text", "")) for r in self.slack.responses if r["user_id"] == user]
        texts += [
            str(c.params.get("text", ""))
            for c in self.slack.calls_to("chat.postEphemeral")
            if c.params.get("user") == user and c.status == 200
        ]
        return texts

    async def told(self, who: str, contains: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The latest text shown to ``who`` containing ``contains``, once there is one."""

        def found() -> str | None:
            texts = [t for t in self.said_to(who) if contains in t]
            return texts[-1] if texts else None

        return await until(found, f"{who} told {contains!r} (told: {self.said_to(who)})", timeout)

    async def told_new(self, who: str, before: int, contains: str = "") -> str:
        """The first text shown to ``who`` after the first ``before`` ones (containing ``contains``),
        skipping the slash command's "Asking for …" acknowledgement."""

        def found() -> str | None:
            fresh = [t for t in self.said_to(who)[before:] if contains in t and not t.startswith("Asking ")]
            return fresh[0] if fresh else None

        return await until(found, f"a Slack message to {who} containing {contains!r}")


class JiraPeople:
    """People in Jira, each known to the rig by a key (a name or an email) in ``jira_accounts``."""

    jira: JiraStandIn
    jira_accounts: dict[str, str]  # key -> accountId
    jira_fields: dict[str, str]  # custom field name -> its id

    async def move(self, key: str, transition: str, who: str, comment: str | None = None) -> str:
        """``who`` performs a transition in Jira's UI; returns its webhook event once its deliveries were
        made (and answered: the edge answers after handling, or 202 when it takes longer than its budget)."""
        event = await asyncio.to_thread(
            self.jira.transition_as, key, transition, self.jira_accounts[who], comment
        )
        await self.jira_idle()
        return event

    async def jira_idle(self) -> None:
        """Until every webhook delivery the Jira stand-in has to make was made."""
        await asyncio.to_thread(self.jira.wait_idle, DEFAULT_TIMEOUT)

    def answers(self, event: str) -> list[int | None]:
        """The HTTP status of each delivery of a webhook event, in order (None: no answer)."""
        return [d.status for d in self.jira.deliveries_of(event)]

    def jira_client(self, email: str, token: str) -> JIRA:
        """The ``jira`` client of a person (or of grantflow's API user), without its own retries."""
        return JIRA(server=self.jira.url, basic_auth=(email, token), max_retries=0)

    async def create_issue(
        self, email: str, token: str, project: str, summary: str, description: str, **values: str
    ) -> str:
        """``email`` creates an issue in ``project`` with their own API token, custom fields by name
        (``values``: Resource="pg-prod", …); its key."""

        def create() -> str:
            client = self.jira_client(email, token)
            try:
                fields: dict[str, Any] = {
                    "project": {"key": project},
                    "issuetype": {"name": "Task"},
                    "summary": summary,
                    "description": description,
                    **{self.jira_fields[name]: value for name, value in values.items()},
                }
                return str(client.create_issue(fields=fields, prefetch=False).key)
            finally:
                client.close()

        return await asyncio.to_thread(create)
