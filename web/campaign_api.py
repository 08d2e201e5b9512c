"""The REST API of campaigns under ``/api/v1/campaigns``: launch (admin), read (admin or auditor), decide
(the token's own identity, or an admin acting ``as`` a reviewer), and the owner's cancel, extend, end-stage
and apply.

Every route goes through :class:`~web.campaign_service.CampaignService`; the errors it raises become the
same statuses and bodies as the requests API (``web/callers.py``). A decision call answers per item: what was
recorded and, for each refused item, the sentence saying why — a bulk decision never fails as a whole
because one item was someone else's.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.campaign_state import CampaignRecord, ItemOutcome
from domain.durations import PositiveDuration
from store.campaigns import StoredItem
from web.actors import acting
from web.auth import Principal
from web.callers import API_PREFIX, AUTH_ERRORS, Caller
from web.campaign_service import (
    MAX_DECISIONS_PER_CALL,
    CampaignPreview,
    CampaignService,
    CampaignStatusView,
    DecideResult,
    DecisionRequest,
    ScheduledCampaign,
)
from web.context import campaigns_of
from web.service import Forbidden

router = APIRouter(prefix=API_PREFIX, tags=["campaigns"])
Campaigns = Annotated[CampaignService, Depends(campaigns_of)]


class LaunchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field(description="the campaign spec, TOML text", min_length=1)
    dry_run: bool = False
    source: str = Field(
        default="campaign spec", max_length=200, description="the spec's file name, for errors"
    )


class DecideBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    decisions: list[DecisionRequest] = Field(min_length=1, max_length=MAX_DECISIONS_PER_CALL)
    as_: str | None = Field(
        default=None, alias="as", description="decide as this reviewer (admin tokens only)"
    )


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = Field(default="", max_length=2000)
    as_: str | None = Field(default=None, alias="as", description="act as this person (admin tokens only)")


class ExtendBody(CommandBody):
    by: PositiveDuration


class CommandAnswer(BaseModel):
    message: str


class EvidenceFiles(BaseModel):
    files: dict[str, str] = Field(description="file name → content, base64")


class CampaignList(BaseModel):
    campaigns: list[CampaignRecord]


class ItemPage(BaseModel):
    items: list[StoredItem]
    next_after: str | None


def _require(caller: Principal, *roles: str) -> None:
    if not caller.roles & set(roles):
        raise Forbidden(f"token {caller.name!r} needs one of the roles {', '.join(roles)} for this")


@router.post(
    "/campaigns", response_model=CampaignRecord, status_code=201, responses=AUTH_ERRORS, summary="Launch"
)
async def launch(request: Request, caller: Caller, campaigns: Campaigns, body: LaunchBody) -> CampaignRecord:
    _require(caller, "admin")
    actor = await acting(request, caller, None, admin_role_suffices=True)
    return await campaigns.launch(body.spec, actor, dry_run=body.dry_run, source=body.source)


@router.post(
    "/campaigns/schedules", response_model=ScheduledCampaign, responses=AUTH_ERRORS, summary="Schedule"
)
async def schedule(
    request: Request, caller: Caller, campaigns: Campaigns, body: LaunchBody
) -> ScheduledCampaign:
    """Create or update the recurring campaign of a spec with a [schedule] table."""
    _require(caller, "admin")
    actor = await acting(request, caller, None, admin_role_suffices=True)
    return await campaigns.schedule(body.spec, actor, source=body.source)


@router.get("/campaigns", response_model=CampaignList, responses=AUTH_ERRORS, summary="List campaigns")
async def list_campaigns(caller: Caller, campaigns: Campaigns) -> CampaignList:
    _require(caller, "admin", "auditor")
    return CampaignList(campaigns=await campaigns.campaigns())


@router.get(
    "/campaigns/{campaign_id}", response_model=CampaignStatusView, responses=AUTH_ERRORS, summary="Status"
)
async def status(campaign_id: str, caller: Caller, campaigns: Campaigns) -> CampaignStatusView:
    _require(caller, "admin", "auditor")
    return await campaigns.status(campaign_id)


@router.get(
    "/campaigns/{campaign_id}/preview",
    response_model=CampaignPreview,
    responses=AUTH_ERRORS,
    summary="Preview",
)
async def preview(campaign_id: str, caller: Caller, campaigns: Campaigns) -> CampaignPreview:
    _require(caller, "admin", "auditor")
    return await campaigns.preview(campaign_id)


@router.get(
    "/campaigns/{campaign_id}/evidence",
    response_model=EvidenceFiles,
    responses=AUTH_ERRORS,
    summary="Evidence",
)
async def evidence(campaign_id: str, caller: Caller, campaigns: Campaigns) -> EvidenceFiles:
    """The signed evidence bundle of a closed campaign, as the worker wrote it."""
    _require(caller, "admin", "auditor")
    files = await campaigns.evidence(campaign_id)
    return EvidenceFiles(files={name: base64.b64encode(data).decode() for name, data in files.items()})


@router.get("/campaigns/{campaign_id}/items", response_model=ItemPage, responses=AUTH_ERRORS, summary="Items")
async def items(
    campaign_id: str,
    caller: Caller,
    campaigns: Campaigns,
    after: str = "",
    reviewer: str | None = Query(default=None, description="a reviewer's email, or a group's name"),
    outcome: ItemOutcome | None = None,
    limit: int = Query(default=200, ge=1, le=1000),
) -> ItemPage:
    _require(caller, "admin", "auditor")
    page = await campaigns.items(campaign_id, after=after, reviewer=reviewer, outcome=outcome, limit=limit)
    return ItemPage(items=page, next_after=page[-1].id if len(page) == limit else None)


@router.post(
    "/campaigns/{campaign_id}/decisions", response_model=DecideResult, responses=AUTH_ERRORS, summary="Decide"
)
async def decide(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: DecideBody
) -> DecideResult:
    actor = await acting(request, caller, body.as_)
    return await campaigns.decide(campaign_id, body.decisions, actor)


@router.post("/campaigns/{campaign_id}/cancel", response_model=CommandAnswer, responses=AUTH_ERRORS)
async def cancel(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: CommandBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.cancel(campaign_id, actor, body.reason))


@router.post("/campaigns/{campaign_id}/extend", response_model=CommandAnswer, responses=AUTH_ERRORS)
async def extend(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: ExtendBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.extend(campaign_id, actor, body.by, body.reason))


@router.post("/campaigns/{campaign_id}/end-stage", response_model=CommandAnswer, responses=AUTH_ERRORS)
async def end_stage(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: CommandBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.end_stage(campaign_id, actor, body.reason))


@router.post("/campaigns/{campaign_id}/apply", response_model=CommandAnswer, responses=AUTH_ERRORS)
async def apply(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: CommandBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.apply(campaign_id, actor))
