"""The REST API under ``/api/v1``: requests and the ledger check, for the CLI and for other programs.

Every route authenticates a bearer token (:data:`web.callers.Caller`), turns the token and the optional
``as`` / ``requester`` field into an :class:`~domain.identity.Actor`, and hands over to
:class:`~web.service.RequestService`. Every error is a JSON body ``{"error": "<code>", "detail":
"<sentence>"}`` with the status of the service error (see the tree in :mod:`web.service`); a missing or
bad token is 401, a malformed body 422 naming the field. The OpenAPI document is at
``/api/v1/openapi.json``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.requests import RequestView, Verdict
from store import LedgerVerification
from web.actors import acting, forbid
from web.auth import Principal
from web.callers import API_PREFIX, AUTH_ERRORS, REQUEST_ERRORS, Caller
from web.context import Service, context_of

log = logging.getLogger("grantflow.web.api")


# --- bodies ----------------------------------------------------------------------------------------


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    resource: str = Field(min_length=1, description="the resource, e.g. pg-prod", examples=["pg-prod"])
    role: str | None = Field(
        default=None, description="its role; may be left out when it has only one", examples=["read"]
    )
    duration: str = Field(description="how long: 30s, 15m, 2h, 1d or ISO 8601 (PT2H)", examples=["2h"])
    reason: str = Field(
        description="why the access is needed (a ticket or incident id)", examples=["INC-1234"]
    )
    requester: str | None = Field(
        default=None, description="whose access (email); someone else than the token's identity needs admin"
    )
    break_glass: bool = Field(default=False, description="emergency access at once, reviewed afterwards")


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = Field(default="", description="why (shown to the requester and kept in the ledger)")
    as_: str | None = Field(default=None, alias="as", description="decide as this person (admin tokens only)")


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    by: str = Field(description="how much longer: 30m, 1h, ...", examples=["1h"])
    reason: str = ""
    as_: str | None = Field(default=None, alias="as", description="act as this person (admin tokens only)")


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = ""
    as_: str | None = Field(default=None, alias="as", description="act as this person (admin tokens only)")


class RequestList(BaseModel):
    requests: list[RequestView]
    count: int


async def _require_requester(request: Request, caller: Principal, what: str) -> None:
    if not caller.may_request:
        await forbid(
            request,
            caller,
            f"token {caller.name!r} has neither the requester nor the admin role, needed to {what}",
        )


# --- routes ----------------------------------------------------------------------------------------

router = APIRouter(prefix=API_PREFIX, tags=["requests"])


@router.post(
    "/requests",
    status_code=201,
    response_model=RequestView,
    responses=REQUEST_ERRORS,
    summary="Request just-in-time access",
)
async def create_request(request: Request, caller: Caller, service: Service, body: CreateBody) -> RequestView:
    """Validate and start a request; answers once its approvers are resolved. ``requester`` (admin) asks on
    behalf of someone. A second open request for the same connection is 409, naming the open one."""
    # who first: an attempt to act for someone else is recorded even when the token may not request at all
    actor = await acting(request, caller, body.requester, field="requester")
    await _require_requester(request, caller, "create requests")
    return await service.create(
        actor,
        resource=body.resource,
        role=body.role,
        duration=body.duration,
        reason=body.reason,
        break_glass=body.break_glass,
    )


@router.get("/requests", response_model=RequestList, responses=AUTH_ERRORS, summary="List requests")
async def list_requests(
    caller: Caller,
    service: Service,
    status: Annotated[
        list[str] | None, Query(description="only these statuses (repeat or comma-separate)")
    ] = None,
    requester: Annotated[str | None, Query(description="only this requester's (email)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RequestList:
    """Newest first."""
    views = await service.list(requester_email=requester, statuses=status, limit=limit)
    return RequestList(requests=views, count=len(views))


@router.get(
    "/requests/{request_id}", response_model=RequestView, responses=REQUEST_ERRORS, summary="Show one"
)
async def show_request(request_id: str, caller: Caller, service: Service) -> RequestView:
    return await service.show(request_id)


def _decision_route(verdict: Verdict) -> Any:
    async def decide(
        request_id: str,
        request: Request,
        caller: Caller,
        service: Service,
        body: Annotated[DecisionBody | None, Body()] = None,
    ) -> RequestView:
        body = body or DecisionBody()
        actor = await acting(request, caller, body.as_)
        return await service.decide(request_id, actor, verdict, body.reason)

    decide.__doc__ = (
        f"{verdict.value.capitalize()} as the token's identity (or, admin, as ``as``). Refused — not an "
        "eligible approver, the requester, a second vote, a closed request — is 409 with the reason; the "
        "refused attempt is recorded in the ledger."
    )
    decide.__name__ = f"{verdict.value}_request"
    return decide


router.add_api_route(
    "/requests/{request_id}/approve",
    _decision_route(Verdict.APPROVE),
    methods=["POST"],
    response_model=RequestView,
    responses=REQUEST_ERRORS,
    summary="Approve a request",
)
router.add_api_route(
    "/requests/{request_id}/deny",
    _decision_route(Verdict.DENY),
    methods=["POST"],
    response_model=RequestView,
    responses=REQUEST_ERRORS,
    summary="Deny a request",
)


@router.post(
    "/requests/{request_id}/extend",
    response_model=RequestView,
    responses=REQUEST_ERRORS,
    summary="Extend active access",
)
async def extend_request(
    request_id: str, request: Request, caller: Caller, service: Service, body: ExtendBody
) -> RequestView:
    """Within the policy's cumulative maximum; needs approvals unless the policy allows self-extension."""
    actor = await acting(request, caller, body.as_)  # records an attempt to act for someone else
    await _require_requester(request, caller, "extend access")
    return await service.extend(request_id, actor, body.by, body.reason)


def _action_route(action: str) -> Any:
    async def act(
        request_id: str,
        request: Request,
        caller: Caller,
        service: Service,
        body: Annotated[ActionBody | None, Body()] = None,
    ) -> RequestView:
        body = body or ActionBody()
        actor = await acting(request, caller, body.as_, admin_role_suffices=True)
        if action != "revoke":  # revoking is for admins and approvers; the workflow checks which
            await _require_requester(request, caller, f"{action} requests")
        method = {"relinquish": service.relinquish, "cancel": service.cancel, "revoke": service.revoke}[
            action
        ]
        return await method(request_id, actor, body.reason)

    act.__name__ = f"{action}_request"
    return act


for _action, _summary, _doc in (
    ("relinquish", "Give access back early", "The requester (or an admin) ends ACTIVE access now."),
    ("cancel", "Cancel a pending request", "The requester (or an admin) withdraws a PENDING request."),
    ("revoke", "Revoke active access", "An admin or one of the request's approvers ends ACTIVE access now."),
):
    _endpoint = _action_route(_action)
    _endpoint.__doc__ = _doc
    router.add_api_route(
        f"/requests/{{request_id}}/{_action}",
        _endpoint,
        methods=["POST"],
        response_model=RequestView,
        responses=REQUEST_ERRORS,
        summary=_summary,
    )


@router.get(
    "/ledger/verify",
    response_model=LedgerVerification,
    responses=AUTH_ERRORS,
    tags=["ledger"],
    summary="Verify the evidence ledger (admin)",
)
async def verify_ledger(request: Request, caller: Caller) -> LedgerVerification:
    """Recompute the keyed hash chain and check the anchor; ``ok`` false names the first bad entry.
    ``anchor``, ``anchored_seq``, ``anchored_at`` and ``anchor_lag``: where the anchor is, the head it
    records, when that was written and how many entries the table is ahead of it."""
    if not caller.is_admin:
        await forbid(
            request, caller, f"token {caller.name!r} is not an admin token; verifying the ledger needs one"
        )
    store = context_of(request).store
    return await asyncio.to_thread(store.verify_ledger)
