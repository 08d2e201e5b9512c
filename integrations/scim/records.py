"""The directory as grantflow models it, and the mapping from SCIM JSON to it.

``DirectoryUser``, ``DirectoryGroup`` and ``ScimCapabilities`` are plain pydantic records: no scim2 type
leaves the package. ``Directory`` is the Protocol activities depend on.

Resources are read leniently: unknown schema extensions, unknown attributes and malformed optional values
(an address that is not a valid email) never fail a listing — real providers add their own extensions, and
one odd record must not block the sync of everyone. A resource without an ``id`` does fail it
(``ScimInconsistentPage``). This module never talks to the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from integrations.scim.errors import ScimInconsistentPage

DEFAULT_PAGE_SIZE = 1000
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


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
    department: str = ""  # the enterprise extension's ``department`` (RFC 7643 §4.3)
    user_type: str = ""  # ``userType`` (RFC 7643 §4.1.1: Employee, Contractor, …)
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


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def resource_id(raw: Any, where: str) -> str:
    """The ``id`` of a SCIM resource; a resource without one fails the listing it came in."""
    if not isinstance(raw, dict) or not _str(raw.get("id")):
        raise ScimInconsistentPage(f"{where}: a resource has no id")
    return str(raw["id"])


def _meta_time(raw: dict[str, Any]) -> datetime | None:
    meta = raw.get("meta")
    return _parse_time(meta.get("lastModified")) if isinstance(meta, dict) else None


def user_from_scim(raw: dict[str, Any]) -> DirectoryUser:
    """A ``DirectoryUser`` from a SCIM User resource as JSON (lenient; see the module docstring)."""
    user_id = resource_id(raw, "user")
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
    department = ""
    enterprise = raw.get(ENTERPRISE_USER_SCHEMA)
    if isinstance(enterprise, dict):
        manager = enterprise.get("manager")
        manager_id = _str(manager.get("value")) if isinstance(manager, dict) else _str(manager)
        department = _str(enterprise.get("department")) or ""
    return DirectoryUser(
        id=user_id,
        user_name=user_name,
        emails=emails,
        primary_email=primary or (emails[0] if emails else user_name),
        display_name=display or "",
        active=raw.get("active") is not False,
        manager_id=manager_id,
        department=department,
        user_type=_str(raw.get("userType")) or "",
        last_modified=_meta_time(raw),
        external_id=_str(raw.get("externalId")),
    )


def group_from_scim(raw: dict[str, Any]) -> DirectoryGroup:
    """A ``DirectoryGroup`` from a SCIM Group resource as JSON."""
    group_id = resource_id(raw, "group")
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
