"""``ScimDirectory``: the ``Directory`` Protocol over SCIM 2.0 (RFC 7643/7644), on ``scim2-client``.

It lists users (with the enterprise extension's ``manager``) and groups (with members) for identity sync and
campaign snapshots, reads single resources, and changes group membership and ``active`` for revocations and
the demo. Listings go through :mod:`integrations.scim.paging`, JSON becomes records in
:mod:`integrations.scim.records`, and every failure becomes an :mod:`integrations.scim.errors` error. It
never retries by itself.

What is assumed of the provider:

- It serves ``/Users`` (core User schema, optionally the enterprise extension) and ``/Groups`` under the base
  URL, accepts a static bearer token, and pages by ``startIndex``/``count`` (1-based) with a
  ``totalResults`` on every page (RFC 7644 §3.4.2.4 makes it required).
- Without ``sortBy`` it returns resources in a stable order between requests (scim2-server orders by id;
  real providers generally order by an internal key). Nothing here relies on which order.
- ``/ServiceProviderConfig`` says whether filtering is supported and the largest page (``maxResults``). A
  provider that does not publish it is treated as "unknown": a filtered listing is tried and a 501 answers
  whether filters work.

A response that is not a SCIM object or list fails the call (``ScimPermanentError``).

Writes are verified by reading back: ``remove_group_member``/``add_group_member``/``set_active`` PATCH the
resource, then GET it and raise ``ScimWriteNotVerified`` if the change is not there. Removing a member who is
not in the group and adding one who already is are successes (the add is skipped, because some providers,
scim2-server included, would store the member twice).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx2
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

from integrations.scim.errors import (
    ScimFilterUnsupported,
    ScimNotFoundError,
    ScimPermanentError,
    ScimTransientError,
    ScimWriteNotVerified,
    scim_error,
)
from integrations.scim.paging import modified_since_filter, read_all_pages
from integrations.scim.records import (
    DEFAULT_PAGE_SIZE,
    DirectoryGroup,
    DirectoryUser,
    ScimCapabilities,
    capabilities_from_scim,
    group_from_scim,
    user_from_scim,
)

DEFAULT_TIMEOUT = 30.0  # a page of 1,000 users takes about a second on scim2-server, more on real providers

_UserModel: type[Resource[Any]] = User[EnterpriseUser]
# The client only needs endpoints and models to build requests; responses are read as plain JSON.
_PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[ResourceType.from_resource(_UserModel), ResourceType.from_resource(Group)],
)

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
                self._capabilities = capabilities_from_scim(_expect_object(raw, "ServiceProviderConfig"))
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
        return user_from_scim(_expect_object(raw, f"user {user_id}"))

    async def get_group(self, group_id: str) -> DirectoryGroup:
        raw = await self._call(
            f"read group {group_id}", self._scim.query(Group, group_id, expected_status_codes=[200])
        )
        return group_from_scim(_expect_object(raw, f"group {group_id}"))

    # -- writes, each verified by reading back --

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
        scim_filter = modified_since_filter(modified_since) if modified_since else None
        capabilities = await self.capabilities()
        if scim_filter is not None and not capabilities.filter_supported:
            raise ScimFilterUnsupported(
                f"the directory does not support filtering, so it cannot list {noun} modified since "
                f"{modified_since}: run a full sync"
            )
        count = min(page_size, capabilities.max_results) if capabilities.max_results else page_size

        async def fetch_page(start: int, where: str) -> Any:
            request: SearchRequest[Any] = (
                SearchRequest(start_index=start, count=count)
                if scim_filter is None
                else SearchRequest(start_index=start, count=count, filter=scim_filter)
            )
            return await self._call(
                where,
                self._scim.query(model, query_parameters=request, expected_status_codes=[200]),
                filtered=scim_filter is not None,
            )

        return await read_all_pages(fetch_page, noun, convert, on_page)

    async def _call(self, what: str, request: Any, *, filtered: bool = False) -> Any:
        """Await a scim2-client call and translate its failures into the ``ScimError`` hierarchy."""
        try:
            return await request
        except (SCIMClientException, SCIMException) as exc:
            raise scim_error(exc, what, filtered=filtered) from exc
        except httpx2.RequestError as exc:  # defensive: the engine wraps these in RequestNetworkException
            raise ScimTransientError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _expect_object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ScimPermanentError(f"{what}: the directory answered no SCIM object")
    return raw
