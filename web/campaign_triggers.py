"""Event-triggered campaigns at the edge: ``grantflow campaign trigger SPEC`` and
``/api/v1/campaigns/triggers`` register a spec with a ``[trigger]`` table (admin), list the registered ones
(admin or auditor) and remove one (admin).

Registering stores the spec under its name (the same name again replaces it) and records it in the ledger;
from then on every identity sync that applies a matching mover change opens one campaign for it
(``activities/campaign_triggers.py``). Removing stops new campaigns; those already open run to their end.
The routes are mounted before the campaigns' own, so ``/campaigns/triggers`` is never read as a campaign id.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.campaign_spec import CampaignSpecError, MoverChange, parse_campaign_spec
from domain.campaign_triggers import RegisteredTrigger, trigger_id_of
from domain.identity import Actor
from store import Store, StoreError
from store.campaigns import spec_hash
from web.actors import acting, forbid
from web.auth import Principal
from web.callers import API_PREFIX, AUTH_ERRORS, Caller, ErrorBody
from web.campaign_service import MAX_SPEC_BYTES
from web.context import context_of
from web.service.errors import BadInput, NotFound, Unavailable, short


class TriggerView(BaseModel):
    trigger_id: str
    name: str
    event: str = Field(description="what fires it: mover")
    changes: list[MoverChange] = Field(description="which changes make someone a mover for it")
    spec_sha256: str
    registered_by: str
    registered_at: datetime


class TriggerRegistered(TriggerView):
    updated: bool = Field(description="a spec of the same name was registered already and is replaced")


class TriggerList(BaseModel):
    triggers: list[TriggerView]


class TriggerRemoved(BaseModel):
    trigger_id: str
    removed: bool = True


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field(description="the campaign spec with a [trigger] table, TOML text", min_length=1)
    source: str = Field(
        default="campaign spec", max_length=200, description="the spec's file name, for errors"
    )


def _view(trigger: RegisteredTrigger) -> TriggerView:
    spec = parse_campaign_spec(trigger.spec_toml, trigger.trigger_id)
    return TriggerView(
        trigger_id=trigger.trigger_id,
        name=trigger.name,
        event=trigger.event,
        changes=spec.trigger.changes if spec.trigger is not None else [],
        spec_sha256=trigger.spec_sha256,
        registered_by=trigger.registered_by,
        registered_at=trigger.registered_at,
    )


class CampaignTriggerService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def _db(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreError as exc:
            raise Unavailable(f"the store could not be reached: {short(exc)}") from exc

    async def register(
        self, spec_text: str, actor: Actor, *, source: str = "campaign spec"
    ) -> TriggerRegistered:
        if len(spec_text.encode()) > MAX_SPEC_BYTES:
            raise BadInput(f"{source}: a campaign spec is at most {MAX_SPEC_BYTES // 1024} KiB")
        try:
            spec = parse_campaign_spec(spec_text, source)
        except CampaignSpecError as exc:
            raise BadInput(str(exc)) from None
        if spec.trigger is None:
            raise BadInput(f'{source}: has no [trigger] table: say which event opens it (on = "mover")')
        registered = RegisteredTrigger(
            trigger_id=trigger_id_of(spec.name),
            name=spec.name,
            event=spec.trigger.on,
            spec_toml=spec_text,
            spec_sha256=spec_hash(spec_text),
            registered_by=actor.describe(),
            registered_at=datetime.now(UTC),
        )
        updated: bool = await self._db(self._store.put_campaign_trigger, registered)
        await self._db(
            lambda: self._store.append_ledger(
                kind="campaign.trigger_registered",
                subject=registered.trigger_id,
                actor=actor.describe(),
                channel=actor.channel,
                data={
                    "name": spec.name,
                    "event": spec.trigger.on if spec.trigger else "",
                    "changes": list(spec.trigger.changes) if spec.trigger else [],
                    "spec_sha256": registered.spec_sha256,
                    "updated": updated,
                },
            )
        )
        return TriggerRegistered(**_view(registered).model_dump(), updated=updated)

    async def triggers(self) -> TriggerList:
        found: list[RegisteredTrigger] = await self._db(self._store.campaign_triggers)
        return TriggerList(triggers=[_view(t) for t in found])

    async def remove(self, trigger: str, actor: Actor) -> TriggerRemoved:
        if not await self._db(self._store.remove_campaign_trigger, trigger):
            raise NotFound(f"there is no campaign trigger {trigger}")
        await self._db(
            lambda: self._store.append_ledger(
                kind="campaign.trigger_removed",
                subject=trigger,
                actor=actor.describe(),
                channel=actor.channel,
                data={},
            )
        )
        return TriggerRemoved(trigger_id=trigger)


def triggers_of(request: Request) -> CampaignTriggerService:
    return CampaignTriggerService(context_of(request).store)


router = APIRouter(prefix=API_PREFIX, tags=["campaigns"])
Triggers = Annotated[CampaignTriggerService, Depends(triggers_of)]


async def _require(request: Request, caller: Principal, *roles: str) -> None:
    if not caller.roles & set(roles):
        await forbid(
            request, caller, f"token {caller.name!r} needs one of the roles {', '.join(roles)} for this"
        )


@router.post(
    "/campaigns/triggers",
    response_model=TriggerRegistered,
    responses=AUTH_ERRORS,
    summary="Register a triggered campaign",
)
async def register(
    request: Request, caller: Caller, triggers: Triggers, body: TriggerBody
) -> TriggerRegistered:
    """Register (or replace) a spec with a [trigger] table: each matching directory event opens a campaign."""
    await _require(request, caller, "admin")
    actor = await acting(request, caller, None, admin_role_suffices=True)
    return await triggers.register(body.spec, actor, source=body.source)


@router.get(
    "/campaigns/triggers",
    response_model=TriggerList,
    responses=AUTH_ERRORS,
    summary="List triggered campaigns",
)
async def list_triggers(request: Request, caller: Caller, triggers: Triggers) -> TriggerList:
    await _require(request, caller, "admin", "auditor")
    return await triggers.triggers()


@router.delete(
    "/campaigns/triggers/{trigger_id}",
    response_model=TriggerRemoved,
    responses={**AUTH_ERRORS, 404: {"model": ErrorBody, "description": "no such campaign trigger"}},
    summary="Remove a triggered campaign",
)
async def remove(request: Request, caller: Caller, triggers: Triggers, trigger_id: str) -> TriggerRemoved:
    """No new campaigns from it; those it opened run to their end."""
    await _require(request, caller, "admin")
    actor = await acting(request, caller, None, admin_role_suffices=True)
    return await triggers.remove(trigger_id, actor)
