"""The REST API of campaigns under ``/api/v1/campaigns``: launch (admin), read (admin or auditor), decide
and delegate (the token's own identity, or an admin acting ``as`` a reviewer), and the owner's cancel,
extend, end-stage and apply.

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

from domain.campaign_spec import MAX_STAGES
from domain.campaign_state import CampaignRecord, ItemOutcome
from domain.durations import PositiveDuration
from store.campaigns import StoredItem
from web.actors import acting, forbid
from web.auth import Principal
from web.callers import API_PREFIX, AUTH_ERRORS, CAMPAIGN_ERRORS, Caller
from web.campaign_service import (
    MAX_DECISIONS_PER_CALL,
    CampaignPreview,
    CampaignService,
    CampaignStatusView,
    DecideResult,
    DecisionRequest,
    DelegateResult,
    ScheduledCampaign,
)
from web.context import campaigns_of

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
    stage: int | None = Field(
        default=None,
        ge=1,
        le=MAX_STAGES,
        description="the stage (1-based) the decider was shown; an item that has moved to another stage "
        "since is refused rather than decided for a stage its decider never saw",
    )


class DelegateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: str = Field(min_length=1, max_length=320, description="the delegate's email")
    items: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_DECISIONS_PER_CALL,
        description="the item ids to hand over; none: every undecided item of the reviewer in the open stage",
    )
    reason: str = Field(default="", max_length=2000)
    as_: str | None = Field(
        default=None, alias="as", description="delegate as this reviewer (admin tokens only)"
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


async def _require(request: Request, caller: Principal, *roles: str) -> None:
    if not caller.roles & set(roles):
        await forbid(
            request, caller, f"token {caller.name!r} needs one of the roles {', '.join(roles)} for this"
        )


@router.post(
    "/campaigns", response_model=CampaignRecord, status_code=201, responses=AUTH_ERRORS, summary="Launch"
)
async def launch(request: Request, caller: Caller, campaigns: Campaigns, body: LaunchBody) -> CampaignRecord:
    await _require(request, caller, "admin")
    actor = await acting(request, caller, None, admin_role_suffices=True)
    return await campaigns.launch(body.spec, actor, dry_run=body.dry_run, source=body.source)


@router.post(
    "/campaigns/schedules", response_model=ScheduledCampaign, responses=AUTH_ERRORS, summary="Schedule"
)
async def schedule(
    request: Request, caller: Caller, campaigns: Campaigns, body: LaunchBody
) -> ScheduledCampaign:
    """Create or update the recurring campaign of a spec with a [schedule] table."""
    await _require(request, caller, "admin")
    actor = await acting(request, caller, None, admin_role_suffices=True)
    return await campaigns.schedule(body.spec, actor, source=body.source)


@router.get("/campaigns", response_model=CampaignList, responses=AUTH_ERRORS, summary="List campaigns")
async def list_campaigns(request: Request, caller: Caller, campaigns: Campaigns) -> CampaignList:
    await _require(request, caller, "admin", "auditor")
    return CampaignList(campaigns=await campaigns.campaigns())


@router.get(
    "/campaigns/{campaign_id}", response_model=CampaignStatusView, responses=CAMPAIGN_ERRORS, summary="Status"
)
async def status(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns
) -> CampaignStatusView:
    await _require(request, caller, "admin", "auditor")
    return await campaigns.status(campaign_id)


@router.get(
    "/campaigns/{campaign_id}/preview",
    response_model=CampaignPreview,
    responses=CAMPAIGN_ERRORS,
    summary="Preview",
)
async def preview(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns
) -> CampaignPreview:
    await _require(request, caller, "admin", "auditor")
    return await campaigns.preview(campaign_id)


@router.get(
    "/campaigns/{campaign_id}/evidence",
    response_model=EvidenceFiles,
    responses=CAMPAIGN_ERRORS,
    summary="Evidence",
)
async def evidence(request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns) -> EvidenceFiles:
    """The signed evidence bundle of a closed campaign, as the worker wrote it."""
    await _require(request, caller, "admin", "auditor")
    files = await campaigns.evidence(campaign_id)
    return EvidenceFiles(files={name: base64.b64encode(data).decode() for name, data in files.items()})


@router.get(
    "/campaigns/{campaign_id}/items", response_model=ItemPage, responses=CAMPAIGN_ERRORS, summary="Items"
)
async def items(
    request: Request,
    campaign_id: str,
    caller: Caller,
    campaigns: Campaigns,
    after: str = "",
    reviewer: str | None = Query(default=None, description="a reviewer's email, or a group's name"),
    outcome: ItemOutcome | None = None,
    limit: int = Query(default=200, ge=1, le=1000),
) -> ItemPage:
    await _require(request, caller, "admin", "auditor")
    page = await campaigns.items(campaign_id, after=after, reviewer=reviewer, outcome=outcome, limit=limit)
    return ItemPage(items=page, next_after=page[-1].id if len(page) == limit else None)


@router.post(
    "/campaigns/{campaign_id}/decisions",
    response_model=DecideResult,
    responses=CAMPAIGN_ERRORS,
    summary="Decide",
)
async def decide(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: DecideBody
) -> DecideResult:
    actor = await acting(request, caller, body.as_)
    stage = body.stage - 1 if body.stage is not None else None
    return await campaigns.decide(campaign_id, body.decisions, actor, stage=stage)


@router.post(
    "/campaigns/{campaign_id}/delegate",
    response_model=DelegateResult,
    responses=CAMPAIGN_ERRORS,
    summary="Delegate",
)
async def delegate(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: DelegateBody
) -> DelegateResult:
    """Hand the reviewer's items of the open stage (the named ones, or every undecided one) to another
    active person, who reviews them instead; refused with the reason for an unknown or inactive person,
    the reviewer themself, or the subject of an item."""
    actor = await acting(request, caller, body.as_)
    return await campaigns.delegate(campaign_id, body.to, actor, item_ids=body.items, reason=body.reason)


@router.post("/campaigns/{campaign_id}/cancel", response_model=CommandAnswer, responses=CAMPAIGN_ERRORS)
async def cancel(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: CommandBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.cancel(campaign_id, actor, body.reason))


@router.post("/campaigns/{campaign_id}/extend", response_model=CommandAnswer, responses=CAMPAIGN_ERRORS)
async def extend(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: ExtendBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.extend(campaign_id, actor, body.by, body.reason))


@router.post("/campaigns/{campaign_id}/end-stage", response_model=CommandAnswer, responses=CAMPAIGN_ERRORS)
async def end_stage(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: CommandBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.end_stage(campaign_id, actor, body.reason))


@router.post("/campaigns/{campaign_id}/apply", response_model=CommandAnswer, responses=CAMPAIGN_ERRORS)
async def apply(
    request: Request, campaign_id: str, caller: Caller, campaigns: Campaigns, body: CommandBody
) -> CommandAnswer:
    actor = await acting(request, caller, body.as_, admin_role_suffices=True)
    return CommandAnswer(message=await campaigns.apply(campaign_id, actor))
