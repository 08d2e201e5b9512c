"""The enforcement gateway as grantflow sees it, independent of the vendor.

Error hierarchy (activities translate it into Temporal retry behaviour)::

    GatewayError                   any failure talking to the gateway
    ├── GatewayTransientError      may succeed if retried: 5xx, 429, timeouts, dropped connections.
    │                              ``retry_after`` carries the server's Retry-After in seconds, if any.
    └── GatewayPermanentError      will not change by retrying: 4xx other than 408/429.
        ├── GatewayAuthError       401/403: grantflow's API key is wrong or lacks a group.
        ├── GatewayNotFoundError   404: the user, connection, review or session does not exist.
        └── GatewayRefusedError    400: the gateway refuses this grant as asked (e.g. the person has
                                   never signed in to hoop). ``message`` says what to do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from domain.access import ConnectionAccessRules


class GatewayError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class GatewayTransientError(GatewayError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class GatewayPermanentError(GatewayError):
    pass


class GatewayAuthError(GatewayPermanentError):
    pass


class GatewayNotFoundError(GatewayPermanentError):
    pass


class GatewayRefusedError(GatewayPermanentError):
    pass


class ProvisionedGrant(BaseModel):
    """A JIT grant as written to the gateway: its session and review, and when the gateway ends it."""

    session_id: str
    review_id: str
    correlation_id: str
    user_email: str
    connection: str
    status: str  # the review status: APPROVED, REVOKED, ...
    revoke_at: datetime | None


class GatewaySession(BaseModel):
    id: str
    user_email: str
    user_subject: str
    connection: str
    status: str  # open, ready, done
    review_id: str | None = None
    correlation_id: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None


class GatewayConnection(BaseModel):
    name: str
    type: str = ""
    subtype: str = ""
    tags: dict[str, str] = {}  # hoop's ``connection_tags`` (its list ``tags`` is deprecated)
    reviewers: list[str] = []
    access_max_duration: int | None = None


class GatewayUser(BaseModel):
    id: str
    email: str
    name: str = ""
    status: str = "active"
    role: str = ""
    slack_id: str = ""
    groups: list[str] = []


class GatewayIdentityKey(BaseModel):
    """An API key or AI agent in hoop: a non-human identity with groups, authenticating with its key."""

    kind: str  # api_keys | ai_agents
    id: str
    name: str
    groups: list[str] = []
    status: str = "active"  # active | revoked
    created_by: str | None = None
    last_used_at: datetime | None = None


class GatewayServiceAccount(BaseModel):
    """A service account in hoop: an IdP client's identity, keyed by its ``subject``, with groups."""

    id: str = ""
    subject: str
    name: str = ""
    status: str = "active"  # active | inactive
    groups: list[str] = []


class GatewayMachineIdentity(BaseModel):
    """A machine identity in hoop: bound to ``connection_names`` (a credential each) and to the connections
    sharing one of its ``attributes``."""

    id: str = ""
    name: str
    description: str = ""
    connection_names: list[str] = []
    attributes: list[str] = []
    attribute_connections: list[str] = Field(
        default=[], description="connections linked through its attributes (read, never written)"
    )


class Gateway(Protocol):
    """The calls grantflow makes to the gateway. Implementations must be safe to call again after an
    uncertain failure: ``provision_grant`` first looks for a grant made under the same correlation id."""

    async def provision_grant(
        self, *, user_email: str, connection: str, duration_seconds: int, correlation_id: str
    ) -> ProvisionedGrant: ...

    async def find_grants(self, *, correlation_id: str) -> list[ProvisionedGrant]: ...

    async def revoke_grant(self, review_id: str) -> ProvisionedGrant: ...

    async def decide_review(self, review_id: str, *, approve: bool, reason: str = "") -> None: ...

    async def list_sessions(
        self,
        *,
        user: str | None = None,
        connection: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
    ) -> list[GatewaySession]:
        """Sessions of exactly this person (subject id or email) on exactly this connection, started at or
        after ``since``, newest first."""
        ...

    async def get_session(self, session_id: str) -> GatewaySession: ...

    async def kill_session(self, session_id: str) -> None: ...

    async def list_connections(self) -> list[GatewayConnection]: ...

    async def list_users(self) -> list[GatewayUser]: ...

    async def get_user(self, email_or_id: str) -> GatewayUser: ...

    async def put_user(self, user: GatewayUser) -> GatewayUser: ...

    async def list_user_groups(self) -> list[str]: ...

    async def access_control_groups(self) -> dict[str, list[str]]: ...

    async def connection_access_rules(self, connection: str) -> ConnectionAccessRules: ...

    async def find_user(self, email_or_id: str) -> GatewayUser | None: ...

    async def list_identity_keys(
        self, kind: Literal["api_keys", "ai_agents"]
    ) -> list[GatewayIdentityKey]: ...

    async def set_identity_key_groups(
        self, kind: Literal["api_keys", "ai_agents"], name: str, groups: list[str]
    ) -> GatewayIdentityKey: ...

    async def revoke_identity_key(
        self, kind: Literal["api_keys", "ai_agents"], name: str
    ) -> GatewayIdentityKey: ...

    async def list_service_accounts(self) -> list[GatewayServiceAccount]: ...

    async def put_service_account(self, account: GatewayServiceAccount) -> GatewayServiceAccount: ...

    async def list_machine_identities(self) -> list[GatewayMachineIdentity]: ...

    async def get_machine_identity(self, name: str) -> GatewayMachineIdentity: ...

    async def put_machine_identity(self, identity: GatewayMachineIdentity) -> GatewayMachineIdentity: ...

    async def aclose(self) -> None: ...
