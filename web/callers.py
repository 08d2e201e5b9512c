"""Who is calling the REST API: the bearer-token dependency (:data:`Caller`) every ``/api/v1`` route
declares, and the error bodies those routes document.

A missing or unknown token is :class:`Unauthenticated` (401); a tokens file that cannot be read fails
closed (503), never open. What the caller may then do is the routes' and the workflow's to say.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from web.auth import Principal, TokenFileError
from web.context import context_of
from web.service import ServiceError, Unavailable

log = logging.getLogger("grantflow.web.api")

API_PREFIX = "/api/v1"


class Unauthenticated(ServiceError):
    """No bearer token, or one that is not in the tokens file."""

    code = "unauthenticated"
    status = 401


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="a stable code: bad_input, unauthenticated, forbidden, not_found, ...")
    detail: str = Field(description="a sentence for a person")
    existing_request_id: str | None = Field(default=None, description="on conflict: the open request")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("missing or invalid bearer token"),
    403: _error("the token may not do this"),
    422: _error("the input cannot be used; the detail names the field"),
    503: _error(
        "Temporal or the store is unavailable (unavailable); or a decision or command was delivered but no "
        "worker has carried it out yet (not_yet_carried_out): calling again is refused as already done"
    ),
}
REQUEST_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    404: _error("no such request"),
    409: _error("refused by the workflow or the policy (recorded in the ledger), or a conflicting request"),
}
CAMPAIGN_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    404: _error("no such campaign (or item)"),
    409: _error("refused by the campaign's rules or its state (recorded in the ledger)"),
}


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="an API token from the tokens file (grantflow dev writes one to .grantflow/admin.token)",
)


async def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None:
        raise Unauthenticated("no bearer token; send the header Authorization: Bearer <token>")
    tokens = context_of(request).tokens
    try:
        found = await asyncio.to_thread(tokens.authenticate, credentials.credentials)
    except TokenFileError as exc:  # fail closed, and keep the file's path out of the answer
        log.error("the tokens file cannot be used: %s", exc)
        raise Unavailable("authentication is unavailable: the server's tokens file cannot be used") from None
    if found is None:
        raise Unauthenticated("the bearer token is not valid")
    return found


Caller = Annotated[Principal, Depends(principal)]
