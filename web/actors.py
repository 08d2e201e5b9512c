"""Who is acting on a REST call: the bearer token's own identity, or — for admin tokens only — the person
named in the body's ``as`` / ``requester`` field, recorded as "admin X on behalf of Y". Shared by the
requests and the campaigns APIs.

A token with the ``auditor`` role changes nothing: every call that acts is refused for it (and recorded),
whatever else the token holds. A token that is not an admin's naming someone else is refused and recorded
(against the request or campaign it aimed at). An admin's *vote* for someone else (an approval, a denial,
a campaign decision) is further refused, and recorded, unless the policy or campaign sets
``allow_admin_on_behalf``: that is the workflow's and the campaign rules' to say, not this module's.
"""

from __future__ import annotations

from typing import NoReturn

from fastapi import Request

from domain.identity import Actor, PersonRef
from web.auth import Principal
from web.context import service_of
from web.service import BadInput, Forbidden, RequestService

CHANNEL_HEADER = "X-Grantflow-Channel"
"""Optional request header naming the channel recorded in the ledger: ``api`` (default) or ``cli``."""
_CHANNELS = frozenset({"api", "cli"})


def _channel(request: Request) -> str:
    wanted = request.headers.get(CHANNEL_HEADER, "api").strip().lower()
    return wanted if wanted in _CHANNELS else "api"


async def acting(
    request: Request,
    caller: Principal,
    as_email: str | None,
    *,
    field: str = "as",
    admin_role_suffices: bool = False,
) -> Actor:
    """The actor for this call: the token's own identity, or (admins only) the person named by ``as``.

    ``admin_role_suffices``: the action is allowed to administrators as such (revoke, cancel,
    relinquish), so an admin service token without an email acts as itself, an administrator, instead
    of having to name a person with ``as``."""
    service = service_of(request)
    channel = _channel(request)
    own = caller.email
    if caller.is_auditor:
        refusal = f"token {caller.name!r} is an auditor's: it reads, and changes nothing"
        subject = request.path_params.get("request_id") or request.path_params.get("campaign_id")
        await service.record_forbidden(
            subject or f"token:{caller.name}", own or f"token:{caller.name}", channel, refusal
        )
        raise Forbidden(refusal)
    if as_email and as_email.strip() and (own is None or as_email.strip().lower() != own.lower()):
        if not caller.is_admin:
            refusal = (
                f"token {caller.name!r} acts only as {own}; acting for {as_email.strip()} (field {field!r}) "
                "needs an admin token"
            )
            subject = (
                request.path_params.get("request_id")
                or request.path_params.get("campaign_id")
                or f"token:{caller.name}"
            )
            await service.record_forbidden(subject, own or f"token:{caller.name}", channel, refusal)
            raise Forbidden(refusal)
        person = await service.person(as_email, what="requester" if field == "requester" else f"{field!r}:")
        return Actor(person=person, admin=await _admin_ref(service, caller), channel=channel)
    if own is None:
        if caller.is_admin and admin_role_suffices:
            administrator = caller.token_identity
            return Actor(person=administrator, admin=administrator, channel=channel)
        raise BadInput(f"token {caller.name!r} belongs to no person; say whom this is for with {field!r}")
    try:
        me = await service.person(own, what="token's identity")
    except BadInput as exc:
        raise Forbidden(str(exc)) from None
    return Actor(person=me, admin=me if caller.is_admin else None, channel=channel)


async def forbid(request: Request, caller: Principal, refusal: str) -> NoReturn:
    """Refuse a call the token's roles never allow (a requester token on an admin endpoint, a token
    without a role creating a request), recording the attempt first — against the request or campaign it
    aimed at, else the token — as :func:`acting` records an attempt to act for someone else."""
    subject = (
        request.path_params.get("request_id")
        or request.path_params.get("campaign_id")
        or f"token:{caller.name}"
    )
    await service_of(request).record_forbidden(
        subject, caller.email or f"token:{caller.name}", _channel(request), refusal
    )
    raise Forbidden(refusal)


async def _admin_ref(service: RequestService, caller: Principal) -> PersonRef:
    if caller.email is not None:
        try:
            return await service.person(caller.email)
        except BadInput:
            pass
    return PersonRef(id=caller.token_identity.id, email=caller.email or caller.token_identity.email)
