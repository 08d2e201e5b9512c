"""The SCIM error hierarchy, and the one translation of scim2-client's failures into it.

Activities translate the hierarchy into Temporal retry behaviour::

    ScimError                          any failure talking to the directory
    ├── ScimTransientError             may succeed if retried: 5xx, 429, 408, timeouts, dropped connections.
    │   │                              ``retry_after`` carries the server's Retry-After in seconds, if any.
    │   ├── ScimInconsistentPage       the pages of a listing do not add up (:mod:`integrations.scim.paging`);
    │   │                              retry the listing.
    │   └── ScimWriteNotVerified       the provider accepted a write but reading back shows it did not apply.
    └── ScimPermanentError             will not change by retrying: 4xx, a response that is not SCIM.
        ├── ScimAuthError              401/403: the bearer token is wrong or lacks rights.
        ├── ScimNotFoundError          404: the user or group does not exist.
        └── ScimFilterUnsupported      the provider cannot filter (ServiceProviderConfig says so, or it
                                       answered 501, or 400 ``invalidFilter`` to the filter): run a full sync.

This module never sends a request and never retries: it only classifies what went wrong.
"""

from __future__ import annotations

from typing import Any

import httpx2

from integrations.retry_after import parse_retry_after

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ScimTransientError(ScimError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ScimInconsistentPage(ScimTransientError):
    pass


class ScimWriteNotVerified(ScimTransientError):
    pass


class ScimPermanentError(ScimError):
    pass


class ScimAuthError(ScimPermanentError):
    pass


class ScimNotFoundError(ScimPermanentError):
    pass


class ScimFilterUnsupported(ScimPermanentError):
    pass


def _error_detail(response: Any) -> tuple[str, str | None]:
    """The SCIM error's detail and scimType from a response, or its text."""
    try:
        body = response.json()
    except (ValueError, AttributeError):
        body = None
    if isinstance(body, dict) and ERROR_SCHEMA in (body.get("schemas") or []):
        detail = body.get("detail")
        scim_type = body.get("scimType")
        return (
            detail if isinstance(detail, str) else "",
            scim_type if isinstance(scim_type, str) and scim_type else None,
        )
    text = str(getattr(response, "text", "") or "").strip()
    return text[:300], None


def scim_error(exc: Exception, what: str, *, filtered: bool) -> ScimError:
    """The :class:`ScimError` for a scim2-client failure while doing ``what``. ``filtered``: the request
    carried a filter, so a 501 or a 400 ``invalidFilter`` means the provider cannot filter."""
    cause = exc.__cause__
    if isinstance(cause, httpx2.RequestError):
        kind = (
            "timed out" if isinstance(cause, httpx2.TimeoutException) else f"failed ({type(cause).__name__})"
        )
        return ScimTransientError(f"{what}: the request {kind}: {cause}")
    response = getattr(exc, "source", None)
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        status = None
    if status is None or 200 <= status < 300:
        # nothing came back from the server as a failure: the request or the answer is not valid SCIM
        return ScimPermanentError(f"{what}: {exc}", status=status)
    detail, scim_type = _error_detail(response)
    message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    if status in (408, 429) or (status >= 500 and status != 501):
        headers = getattr(response, "headers", {})
        return ScimTransientError(
            message, status=status, retry_after=parse_retry_after(headers.get("Retry-After"))
        )
    if filtered and (status == 501 or (status == 400 and scim_type == "invalidFilter")):
        return ScimFilterUnsupported(
            f"{message} (the directory does not support this filter: run a full sync)", status=status
        )
    if status in (401, 403):
        return ScimAuthError(message, status=status)
    if status == 404:
        return ScimNotFoundError(message, status=status)
    return ScimPermanentError(message, status=status)
