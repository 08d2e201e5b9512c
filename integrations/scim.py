"""The identity directory as grantflow reads and writes it over SCIM 2.0 (RFC 7643/7644), on ``scim2-client``.

``ScimDirectory`` lists users (with the enterprise extension's ``manager``) and groups (with members) for
identity sync and campaign snapshots, reads single resources, and changes group membership and ``active``
for revocations and the demo. It returns plain pydantic records (``DirectoryUser``, ``DirectoryGroup``,
``ScimCapabilities``): no scim2 type leaves this module.

What is assumed of the provider:

- It serves ``/Users`` (core User schema, optionally the enterprise extension) and ``/Groups`` under the base
  URL, accepts a static bearer token, and pages by ``startIndex``/``count`` (1-based) with a
  ``totalResults`` on every page (RFC 7644 §3.4.2.4 makes it required).
- Without ``sortBy`` it returns resources in a stable order between requests (scim2-server orders by id;
  real providers generally order by an internal key). Nothing here relies on which order.
- ``/ServiceProviderConfig`` says whether filtering is supported and the largest page (``maxResults``). A
  provider that does not publish it is treated as "unknown": a filtered listing is tried and a 501 answers
  whether filters work.

Responses are read leniently: unknown schema extensions, unknown attributes and malformed optional values
(an address that is not a valid email) never fail a listing — real providers add their own extensions, and
one odd record must not block the sync of everyone. A resource without an ``id``, or a response that is not
a SCIM list, does fail it.

Paging and consistency. SCIM pages by *position*, so a write on the provider during a listing shifts the
pages: a deletion makes the next page skip one resource, a creation makes it repeat one. A listing therefore
checks every page and raises ``ScimInconsistentPage`` instead of returning anything when

- ``totalResults`` differs from the first page's (a resource was created or deleted meanwhile);
- a page before the end is shorter than the first page (resources missing). The first page sets the page
  size rather than ``count`` because providers may serve fewer than asked without saying so; a first page
  cut short loses nothing, since the next page starts where it ended (and if its positions were skipped,
  the next page repeats an id);
- an id appears twice (the pages shifted, or the provider ignores ``startIndex``), or a resource has no id;
- the pages end (an empty page, or the last position reached) with fewer or more resources than
  ``totalResults``.

The listing stops at an empty page or once ``start + len(page) > totalResults``. A sync must never be
applied from a partial listing: a missing user would look deleted and lose every grant.
``ScimInconsistentPage`` is transient — retrying the whole listing (the activity's retry policy) normally
succeeds once the writes settle. This module never retries by itself.

Incremental listings (``modified_since``) use the filter ``meta.lastModified gt "…"`` (the instant is
truncated to milliseconds, so the result can only be a superset). **They cannot see deletions**: a deleted
resource has no ``lastModified`` left to match, it is simply absent, and absence from a *filtered* listing
means "unchanged". Leavers removed by deletion (rather than deactivated) are only seen by a periodic *full*
listing, which the sync must therefore still run. Callers keep as watermark the largest ``last_modified``
they have seen (the provider's clock, not grantflow's) and may overlap it a little: applying a user twice is
harmless.

Writes are verified by reading back: ``remove_group_member``/``add_group_member``/``set_active`` PATCH the
resource, then GET it and raise ``ScimWriteNotVerified`` if the change is not there. Removing a member who is
not in the group and adding one who already is are successes (the add is skipped, because some providers,
scim2-server included, would store the member twice).

Error hierarchy (activities translate it into Temporal retry behaviour)::

    ScimError                          any failure talking to the directory
    ├── ScimTransientError             may succeed if retried: 5xx, 429, 408, timeouts, dropped connections.
    │   │                              ``retry_after`` carries the server's Retry-After in seconds, if any.
    │   ├── ScimInconsistentPage       the pages of a listing do not add up (see above); retry the listing.
    │   └── ScimWriteNotVerified       the provider accepted a write but reading back shows it did not apply.
    └── ScimPermanentError             will not change by retrying: 4xx, a response that is not SCIM.
        ├── ScimAuthError              401/403: the bearer token is wrong or lacks rights.
        ├── ScimNotFoundError          404: the user or group does not exist.
        └── ScimFilterUnsupported      the provider cannot filter (ServiceProviderConfig says so, or it
                                       answered 501, or 400 ``invalidFilter`` to the filter): run a full sync.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

import httpx2
from pydantic import BaseModel, ConfigDict
from scim2_client import SCIMClientException
from scim2_client.engines.httpx2 import AsyncSCIMClient
from scim2_models import (
    EnterpriseUser,
    Group,
    PatchOp,
    PatchOperation,
    Resource,
    ResourceType,
    SCIMException,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    User,
)

from integrations.retry_after import parse_retry_after

DEFAULT_TIMEOUT = 30.0  # a page of 1,000 users takes about a second on scim2-server, more on real providers
DEFAULT_PAGE_SIZE = 1000
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

_UserModel: type[Resource[Any]] = User[EnterpriseUser]
# The client only needs endpoints and models to build requests; responses are read as plain JSON.
_PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[ResourceType.from_resource(_UserModel), ResourceType.from_resource(Group)],
)


# -- errors ------------------------------------------------------------------------------------------------


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


# -- records -----------------------------------------------------------------------------------------------


class DirectoryUser(BaseModel):
    """A user as the directory holds it. ``id`` is the provider's stable id: key everything by it."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_name: str
    emails: list[str] = []
    primary_email: str  # the primary email, else the first one, else userName
    display_name: str = ""  # displayName, else name.formatted, else given + family name
    active: bool = True  # only an explicit ``active: false`` deactivates
    manager_id: str | None = None  # the manager's SCIM id (enterprise extension)
    last_modified: datetime | None = None
    external_id: str | None = None


class DirectoryGroup(BaseModel):
    """A group and its direct members. Nested groups are listed apart and not expanded."""

    model_config = ConfigDict(frozen=True)

    id: str
    display_name: str
    member_ids: list[str] = []  # users (members whose ``type`` is not ``Group``)
    nested_group_ids: list[str] = []
    last_modified: datetime | None = None
    external_id: str | None = None


class ScimCapabilities(BaseModel):
    """What ``/ServiceProviderConfig`` announces. ``published`` is False when the provider has none (404);
    the other fields are then optimistic defaults."""

    model_config = ConfigDict(frozen=True)

    filter_supported: bool
    max_results: int | None
    patch_supported: bool
    bulk_supported: bool = False
    sort_supported: bool = False
    etag_supported: bool = False
    published: bool = True


class Directory(Protocol):
    """The calls grantflow makes to its identity directory."""

    async def capabilities(self) -> ScimCapabilities: ...

    async def list_users(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        modified_since: datetime | None = None,
        on_page: Callable[[int, int], None] | None = None,
    ) -> list[DirectoryUser]: ...

    async def list_groups(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        modified_since: datetime | None = None,
        on_page: Callable[[int, int], None] | None = None,
    ) -> list[DirectoryGroup]: ...

    async def get_user(self, user_id: str) -> DirectoryUser: ...

    async def get_group(self, group_id: str) -> DirectoryGroup: ...

    async def remove_group_member(self, group_id: str, user_id: str) -> None: ...

    async def add_group_member(self, group_id: str, user_id: str) -> None: ...

    async def set_active(self, user_id: str, active: bool) -> None: ...


# -- parsing -----------------------------------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _scim_time(when: datetime) -> str:
    """An instant for a SCIM filter: UTC, milliseconds (truncated, so ``gt`` can only match more)."""
    if when.tzinfo is None:
        raise ValueError("modified_since must be timezone-aware")
    return (
        when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{when.astimezone(UTC).microsecond // 1000:03d}Z"
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _resource_id(raw: Any, where: str) -> str:
    if not isinstance(raw, dict) or not _str(raw.get("id")):
        raise ScimInconsistentPage(f"{where}: a resource has no id")
    return str(raw["id"])


def _meta_time(raw: dict[str, Any]) -> datetime | None:
    meta = raw.get("meta")
    return _parse_time(meta.get("lastModified")) if isinstance(meta, dict) else None


def user_from_scim(raw: dict[str, Any]) -> DirectoryUser:
    """A ``DirectoryUser`` from a SCIM User resource as JSON (lenient; see the module docstring)."""
    user_id = _resource_id(raw, "user")
    user_name = _str(raw.get("userName")) or ""
    emails: list[str] = []
    primary: str | None = None
    for entry in raw.get("emails") or []:
        if isinstance(entry, dict) and (value := _str(entry.get("value"))):
            emails.append(value)
            if entry.get("primary") is True and primary is None:
                primary = value
    display = _str(raw.get("displayName"))
    name = raw.get("name")
    if display is None and isinstance(name, dict):
        display = _str(name.get("formatted")) or " ".join(
            part for part in (_str(name.get("givenName")), _str(name.get("familyName"))) if part
        )
    manager_id: str | None = None
    enterprise = raw.get(ENTERPRISE_USER_SCHEMA)
    if isinstance(enterprise, dict):
        manager = enterprise.get("manager")
        manager_id = _str(manager.get("value")) if isinstance(manager, dict) else _str(manager)
    return DirectoryUser(
        id=user_id,
        user_name=user_name,
        emails=emails,
        primary_email=primary or (emails[0] if emails else user_name),
        display_name=display or "",
        active=raw.get("active") is not False,
        manager_id=manager_id,
        last_modified=_meta_time(raw),
        external_id=_str(raw.get("externalId")),
    )


def group_from_scim(raw: dict[str, Any]) -> DirectoryGroup:
    """A ``DirectoryGroup`` from a SCIM Group resource as JSON."""
    group_id = _resource_id(raw, "group")
    members: list[str] = []
    nested: list[str] = []
    for entry in raw.get("members") or []:
        if isinstance(entry, dict) and (value := _str(entry.get("value"))):
            kind = entry.get("type")
            target = nested if isinstance(kind, str) and kind.lower() == "group" else members
            if value not in target:
                target.append(value)
    return DirectoryGroup(
        id=group_id,
        display_name=_str(raw.get("displayName")) or "",
        member_ids=members,
        nested_group_ids=nested,
        last_modified=_meta_time(raw),
        external_id=_str(raw.get("externalId")),
    )


def capabilities_from_scim(raw: dict[str, Any]) -> ScimCapabilities:
    def section(name: str) -> dict[str, Any]:
        value = raw.get(name)
        return value if isinstance(value, dict) else {}

    max_results = section("filter").get("maxResults")
    return ScimCapabilities(
        filter_supported=section("filter").get("supported") is True,
        max_results=max_results if isinstance(max_results, int) and max_results > 0 else None,
        patch_supported=section("patch").get("supported") is True,
        bulk_supported=section("bulk").get("supported") is True,
        sort_supported=section("sort").get("supported") is True,
        etag_supported=section("etag").get("supported") is True,
    )


def _error_detail(response: Any) -> tuple[str, str | None]:
    """The SCIM error's detail and scimType from a response, or its text."""
    try:
        body = response.json()
    except (ValueError, AttributeError):
        body = None
    if isinstance(body, dict) and ERROR_SCHEMA in (body.get("schemas") or []):
        detail = _str(body.get("detail")) or ""
        return detail, _str(body.get("scimType"))
    text = str(getattr(response, "text", "") or "").strip()
    return text[:300], None


# -- the adapter -------------------------------------------------------------------------------------------

T = TypeVar("T")


class ScimDirectory:
    """``Directory`` over SCIM 2.0. One per worker (it holds a connection pool); close it with ``aclose``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """``base_url``: the SCIM root clients use (``https://idp.example.com/scim/v2``). ``token``: a bearer
        token allowed to read users and groups (and to PATCH groups and users for revocations)."""
        self._http = httpx2.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/scim+json",
                "User-Agent": "grantflow",
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        self._scim = AsyncSCIMClient(self._http, provider=_PROVIDER, check_response_payload=False)
        self._capabilities: ScimCapabilities | None = None

    @classmethod
    def connect(cls, base_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT) -> ScimDirectory:
        """The adapter for a provider, as the worker builds it. Nothing is sent until the first call."""
        return cls(base_url, token, timeout=timeout)

    async def __aenter__(self) -> ScimDirectory:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- reads --

    async def capabilities(self) -> ScimCapabilities:
        """What the provider announces in ``/ServiceProviderConfig`` (read once, then cached)."""
        if self._capabilities is None:
            try:
                raw = await self._call(
                    "read ServiceProviderConfig",
                    self._scim.query(ServiceProviderConfig, expected_status_codes=[200]),
                )
            except ScimNotFoundError:
                self._capabilities = ScimCapabilities(
                    filter_supported=True, max_results=None, patch_supported=True, published=False
                )
            else:
                self._capabilities = capabilities_from_scim(self._expect_object(raw, "ServiceProviderConfig"))
        return self._capabilities

    async def list_users(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        modified_since: datetime | None = None,
        on_page: Callable[[int, int], None] | None = None,
    ) -> list[DirectoryUser]:
        """Every user (or, with ``modified_since``, every user modified after it), all pages, checked.

        ``on_page(fetched_so_far, total_results)`` is called after each page (progress, heartbeats).
        Raises ``ScimInconsistentPage`` rather than return a partial listing, and ``ScimFilterUnsupported``
        when ``modified_since`` is given to a provider that cannot filter."""
        return await self._list(_UserModel, "users", user_from_scim, page_size, modified_since, on_page)

    async def list_groups(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        modified_since: datetime | None = None,
        on_page: Callable[[int, int], None] | None = None,
    ) -> list[DirectoryGroup]:
        """Every group with its members; paged and checked as ``list_users``."""
        return await self._list(Group, "groups", group_from_scim, page_size, modified_since, on_page)

    async def get_user(self, user_id: str) -> DirectoryUser:
        raw = await self._call(
            f"read user {user_id}", self._scim.query(_UserModel, user_id, expected_status_codes=[200])
        )
        return user_from_scim(self._expect_object(raw, f"user {user_id}"))

    async def get_group(self, group_id: str) -> DirectoryGroup:
        raw = await self._call(
            f"read group {group_id}", self._scim.query(Group, group_id, expected_status_codes=[200])
        )
        return group_from_scim(self._expect_object(raw, f"group {group_id}"))

    # -- writes --

    async def remove_group_member(self, group_id: str, user_id: str) -> None:
        """Remove a user from a group (``PATCH remove members[value eq "ID"]``), then read the group back.
        Removing someone who is not a member succeeds. Raises ``ScimWriteNotVerified`` if they remain."""
        operation: PatchOperation[Any] = PatchOperation(
            op="remove", path=f"members[value eq {json.dumps(user_id)}]"
        )
        await self._patch(Group, group_id, operation, f"remove {user_id} from group {group_id}")
        group = await self.get_group(group_id)
        if user_id in group.member_ids or user_id in group.nested_group_ids:
            raise ScimWriteNotVerified(
                f"group {group.display_name or group_id} still lists {user_id} after the provider accepted "
                "its removal"
            )

    async def add_group_member(self, group_id: str, user_id: str) -> None:
        """Add a user to a group unless already a member, then read the group back."""
        if user_id in (await self.get_group(group_id)).member_ids:
            return
        operation: PatchOperation[Any] = PatchOperation(op="add", path="members", value=[{"value": user_id}])
        await self._patch(Group, group_id, operation, f"add {user_id} to group {group_id}")
        group = await self.get_group(group_id)
        if user_id not in group.member_ids:
            raise ScimWriteNotVerified(
                f"group {group.display_name or group_id} does not list {user_id} after the provider accepted "
                "its addition"
            )

    async def set_active(self, user_id: str, active: bool) -> None:
        """Activate or deactivate a user (``PATCH replace active``), then read the user back."""
        operation: PatchOperation[Any] = PatchOperation(op="replace", path="active", value=active)
        await self._patch(_UserModel, user_id, operation, f"set active={active} on user {user_id}")
        user = await self.get_user(user_id)
        if user.active is not active:
            raise ScimWriteNotVerified(
                f"user {user_id} is still active={user.active} after the provider accepted it"
            )

    # -- internals --

    async def _patch(
        self, model: type[Resource[Any]], resource_id: str, operation: PatchOperation[Any], what: str
    ) -> None:
        patch_op = PatchOp[model](operations=[operation])  # type: ignore[valid-type]
        await self._call(
            what, self._scim.modify(model, resource_id, patch_op, expected_status_codes=[200, 204])
        )

    async def _list(
        self,
        model: type[Resource[Any]],
        noun: str,
        convert: Callable[[dict[str, Any]], T],
        page_size: int,
        modified_since: datetime | None,
        on_page: Callable[[int, int], None] | None,
    ) -> list[T]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        scim_filter = f'meta.lastModified gt "{_scim_time(modified_since)}"' if modified_since else None
        capabilities = await self.capabilities()
        if scim_filter is not None and not capabilities.filter_supported:
            raise ScimFilterUnsupported(
                f"the directory does not support filtering, so it cannot list {noun} modified since "
                f"{modified_since}: run a full sync"
            )
        count = min(page_size, capabilities.max_results) if capabilities.max_results else page_size

        items: list[T] = []
        seen: set[str] = set()
        start = 1
        total: int | None = None
        full_page: int | None = None  # the length every page but the last must have
        while True:
            request: SearchRequest[Any] = (
                SearchRequest(start_index=start, count=count)
                if scim_filter is None
                else SearchRequest(start_index=start, count=count, filter=scim_filter)
            )
            where = f"listing {noun} at startIndex {start}"
            raw = await self._call(
                where,
                self._scim.query(model, query_parameters=request, expected_status_codes=[200]),
                filtered=scim_filter is not None,
            )
            page_total, resources = self._read_page(raw, where)
            if total is None:
                total = page_total
            elif page_total != total:
                raise ScimInconsistentPage(
                    f"{where}: totalResults changed from {total} to {page_total} during the listing "
                    "(the directory changed meanwhile)"
                )
            if not resources:
                break
            end = start + len(resources) - 1
            if end > total:
                raise ScimInconsistentPage(
                    f"{where}: {len(resources)} resources run past totalResults {total}"
                )
            if end < total:  # a page before the end: it must be full
                if full_page is None:
                    # the first page sets the size: a provider may serve fewer than asked without saying so
                    full_page = len(resources)
                if len(resources) != full_page:
                    raise ScimInconsistentPage(
                        f"{where}: a page before the end holds {len(resources)} resources where the first "
                        f"held {full_page} (resources missing, or the pages shifted)"
                    )
            for raw_resource in resources:
                resource_id = _resource_id(raw_resource, where)
                if resource_id in seen:
                    raise ScimInconsistentPage(
                        f"{where}: {noun[:-1]} {resource_id} appears twice (the pages shifted while listing)"
                    )
                seen.add(resource_id)
                items.append(convert(raw_resource))
            if on_page is not None:
                on_page(len(items), total)
            if end == total:
                break
            start = end + 1
        if total is None or len(items) != total:
            raise ScimInconsistentPage(
                f"listing {noun} ended with {len(items)} of totalResults {total} "
                "(a page came back empty early)"
            )
        return items

    @staticmethod
    def _read_page(raw: Any, where: str) -> tuple[int, list[Any]]:
        if not isinstance(raw, dict):
            raise ScimPermanentError(f"{where}: the directory did not answer a SCIM list")
        total = raw.get("totalResults")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise ScimPermanentError(
                f"{where}: the answer has no valid totalResults, so a complete listing cannot be verified"
            )
        resources = raw.get("Resources", raw.get("resources")) or []
        if not isinstance(resources, list):
            raise ScimPermanentError(f"{where}: Resources is not a list")
        return total, resources

    @staticmethod
    def _expect_object(raw: Any, what: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ScimPermanentError(f"{what}: the directory answered no SCIM object")
        return raw

    async def _call(self, what: str, request: Any, *, filtered: bool = False) -> Any:
        """Await a scim2-client call and translate its failures into the ``ScimError`` hierarchy."""
        try:
            return await request
        except (SCIMClientException, SCIMException) as exc:
            raise _translate(exc, what, filtered=filtered) from exc
        except httpx2.RequestError as exc:  # defensive: the engine wraps these in RequestNetworkException
            raise ScimTransientError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _translate(exc: Exception, what: str, *, filtered: bool) -> ScimError:
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
