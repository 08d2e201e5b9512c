"""The Jira edge: ties the parts of ``POST /jira/webhook`` together for one service.

A delivery is verified and deduplicated (:mod:`web.jira.authenticity`), then a comment on a campaign digest
issue goes to :mod:`web.jira.campaign_digests`, another issue update to :mod:`web.jira.decisions` and an
issue creation to :mod:`web.jira.intake`; both map Jira accounts to
people with :mod:`web.jira.people` and talk to Jira through one :mod:`web.jira.connection`. Every other
event is answered "ignored". The edge holds no rule of its own; the HTTP route is :mod:`web.jira.router`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from jira import JIRA

from configuration.settings import Settings
from integrations.jira_tickets import JiraError, JiraTransientError, build_jira
from store import Store
from web.jira.authenticity import WEBHOOK_BUDGET, Deliveries, Markers
from web.jira.campaign_digests import CampaignDigestComments, digest_issue
from web.jira.connection import JiraConnection, Malformed, Outcome
from web.jira.decisions import Decisions
from web.jira.intake import Intake
from web.jira.people import People
from web.service import RequestService

log = logging.getLogger("grantflow.web.jira")

DIGEST_LABEL_PREFIX = "grantflow-"
"""The label prefix of grantflow's issues (``JiraTickets``' default, which the worker's tickets use too)."""


class JiraEdge:
    """Handles Jira's webhooks for one service. ``connect`` builds the ``jira`` client (on first use, in a
    worker thread: the client talks to Jira when it is built)."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: RequestService,
        store: Store,
        connect: Callable[[], JIRA],
        budget: float = WEBHOOK_BUDGET,
    ) -> None:
        secret = settings.jira_webhook_secret.get_secret_value() if settings.jira_webhook_secret else ""
        if not secret:
            raise ValueError("the Jira edge needs settings.jira_webhook_secret")
        self.settings = settings
        self.service = service
        self.store = store
        self.connection = JiraConnection(settings, connect)
        self.deliveries = Deliveries(secret, budget)
        self.people = People(self.connection, store, settings.jira_account_ids)
        markers = Markers(store)
        self.decisions = Decisions(
            settings=settings,
            service=service,
            store=store,
            connection=self.connection,
            people=self.people,
            markers=markers,
        )
        self.intake = Intake(
            settings=settings,
            service=service,
            connection=self.connection,
            people=self.people,
            markers=markers,
        )
        self.campaign_digests = CampaignDigestComments(
            store=store, connection=self.connection, markers=markers
        )

    async def receive(self, raw: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str]]:
        """Verify, deduplicate and handle one delivery; the HTTP status and JSON body to answer with."""
        return await self.deliveries.receive(raw, headers, self._handle)

    async def _handle(self, payload: dict[str, Any], identifier: str) -> Outcome:
        problem = shape_problem(payload)
        if problem is not None:
            raise Malformed(problem)
        event = str(payload.get("webhookEvent") or "")
        if event not in ("jira:issue_updated", "jira:issue_created"):
            return Outcome("ignored", f"event {event or '(none)'} is not one grantflow acts on")
        if event == "jira:issue_created":
            return await self.intake.handle(payload, identifier)
        digest = digest_issue(payload, DIGEST_LABEL_PREFIX)
        if digest is not None:
            return await self.campaign_digests.handle(payload, identifier, digest)
        return await self.decisions.handle(payload, identifier)

    def close_client(self) -> None:
        self.connection.close()

    async def aclose(self) -> None:
        """Let deliveries under way finish (up to ``budget`` seconds), then close the client."""
        await self.deliveries.settle()
        await asyncio.to_thread(self.close_client)


_OBJECTS = (
    ("issue",),
    ("issue", "fields"),
    ("issue", "fields", "project"),
    ("issue", "fields", "reporter"),
    ("issue", "fields", "status"),
    ("user",),
    ("changelog",),
)
_LISTS = (("issue", "fields", "labels"), ("changelog", "items"))


def shape_problem(payload: Mapping[str, Any]) -> str | None:
    """What makes a delivery unlike Jira's webhooks, or None. Jira's issue events (the webhook payloads of
    Jira Cloud's "Webhooks" documentation, and the issue shapes of jira-platform-v3.json) always name their
    ``webhookEvent``; where they carry the parts grantflow reads, ``issue``, its ``fields`` (with
    ``project``, ``reporter``, ``status``), ``user`` and ``changelog`` are objects, ``labels`` and the
    changelog's ``items`` lists (of objects). Parts that are absent are fine: not every event has them."""
    event = payload.get("webhookEvent")
    if not isinstance(event, str) or not event:
        return "webhookEvent is missing or not a string: Jira names every event"

    def at(path: tuple[str, ...]) -> Any:
        found: Any = payload
        for key in path:
            found = found.get(key) if isinstance(found, Mapping) else None
        return found

    for path in _OBJECTS:
        if at(path) is not None and not isinstance(at(path), Mapping):
            return f"{'.'.join(path)} is not an object"
    for path in _LISTS:
        value = at(path)
        if value is not None and not isinstance(value, list):
            return f"{'.'.join(path)} is not a list"
    items = at(("changelog", "items")) or []
    if not all(isinstance(item, Mapping) for item in items):
        return "changelog.items holds something other than objects"
    return None


def build_jira_edge(settings: Settings, service: RequestService, store: Store) -> JiraEdge | None:
    """The Jira edge when Jira is configured (URL, API user, API token and webhook secret); None otherwise.
    The client connects on the first delivery, so a Jira outage does not stop the web app starting."""
    token = settings.jira_api_token.get_secret_value() if settings.jira_api_token else ""
    if not (settings.jira_url and settings.jira_email and token):
        return None
    if settings.jira_webhook_secret is None or not settings.jira_webhook_secret.get_secret_value():
        log.warning("Jira is configured without GRANTFLOW_JIRA_WEBHOOK_SECRET: its webhooks are refused")
        return None

    def connect() -> JIRA:
        try:
            return build_jira(settings.jira_url, settings.jira_email, token, timeout=10.0)
        except JiraError as exc:
            if isinstance(exc, JiraTransientError):
                raise
            raise JiraTransientError(exc.message) from exc  # e.g. Jira down at start: try on redelivery

    return JiraEdge(settings=settings, service=service, store=store, connect=connect)
