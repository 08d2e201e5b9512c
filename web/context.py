"""What every route of the web app shares: the :class:`WebContext` built once per process, and the
accessors that fetch it (and its :class:`~web.service.RequestService`) from a request.

It imports no router: the routers import it, and only :mod:`web.app` imports the routers. The channel
edges are named here for their types only; :mod:`web.app` builds them and puts them in the context.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request
from temporalio.client import Client

from configuration.settings import Settings
from domain.policy import PolicySet
from domain.review_links import ReviewLinks
from store import Store
from web.auth import TokenRegistry
from web.campaign_service import CampaignService
from web.service import RequestService

if TYPE_CHECKING:
    from web.jira.edge import JiraEdge
    from web.slack_app import SlackEdge


@dataclass
class WebContext:
    """Everything the routes use, built once per process."""

    settings: Settings
    store: Store
    client: Client
    policies: PolicySet
    links: ReviewLinks
    tokens: TokenRegistry
    service: RequestService
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    """Keys the review pages' CSRF tokens; derived from the review-link secret by ``build_context``."""
    secure_cookies: bool = False
    """Mark cookies ``Secure``: on when the public URL is https."""
    owns_store: bool = False
    # --- channel edges (Slack, Jira): None when not configured
    slack: SlackEdge | None = None
    jira: JiraEdge | None = None
    campaigns: CampaignService | None = None
    """Built on first use from the client and the store (tests build contexts without it)."""

    def close(self) -> None:
        if self.owns_store:
            self.store.close()


def context_of(request: Request) -> WebContext:
    return cast("WebContext", request.app.state.context)


def service_of(request: Request) -> RequestService:
    return context_of(request).service


def campaigns_of(request: Request) -> CampaignService:
    return campaigns_for(context_of(request))


def campaigns_for(context: WebContext) -> CampaignService:
    if context.campaigns is None:
        context.campaigns = CampaignService(
            context.client,
            context.store,
            context.settings.task_queue,
            history_limit=context.settings.campaign_history_limit,
        )
    return context.campaigns


Service = Annotated[RequestService, Depends(service_of)]
