"""Access policies: who may approve what, how many must agree, and for how long access may be held.

A policy file is TOML with one ``[resources.<name>]`` table per resource and one
``[resources.<name>.roles.<role>]`` table per role. Each (resource, role) maps to exactly one gateway
connection, because a hoop grant is (person, connection). Validation errors name the field
(``resources.pg-prod.roles.admin.min_approvals``) so an operator can fix the file at once.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.durations import PositiveDuration, format_duration

DEFAULT_EXTENSION_STEP = timedelta(minutes=15)
MAX_EXTENSIONS_LIMIT = 20
"""The most extensions any policy may allow: with ``min_extension`` it bounds a request's history."""


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and every bad field."""


class BreakGlass(BaseModel):
    """Emergency access granted at once, then reviewed by the approvers within ``retro_review_within``:
    denied or unanswered means the grant is revoked at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: bool = False
    retro_review_within: PositiveDuration = timedelta(hours=24)


class RolePolicy(BaseModel):
    """How one role of a resource is granted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str = Field(min_length=1, description="hoop connection this role grants")
    approver_groups: list[str] = Field(min_length=1, description="directory groups whose members may approve")
    min_approvals: int = Field(default=1, ge=1, description="distinct approvers needed (N of M)")
    max_duration: PositiveDuration = timedelta(hours=8)
    max_cumulative: PositiveDuration | None = Field(
        default=None, description="ceiling for the original grant plus extensions; defaults to max_duration"
    )
    request_timeout: PositiveDuration = timedelta(hours=4)
    reminder_before: PositiveDuration | None = Field(
        default=None, description="approvers are reminded this long before the request times out"
    )
    auto_approve_groups: list[str] = Field(
        default_factory=list, description="a requester in one of these groups is approved by policy"
    )
    self_extension: bool = Field(
        default=False, description="the requester may extend within max_cumulative without new approvals"
    )
    # Every extension asked for adds to the request's workflow history (the update, its record, the
    # approvers asked in every channel): a smallest step and a count keep that history bounded.
    min_extension: PositiveDuration | None = Field(
        default=None,
        description="the smallest extension one may ask for; defaults to 15m, or a quarter of the "
        "cumulative maximum when that is shorter (see extension_step)",
    )
    max_extensions: int = Field(
        default=10,
        ge=0,
        le=MAX_EXTENSIONS_LIMIT,
        description="how many extensions a request may ask for (approved, denied or self-applied); 0: none",
    )
    break_glass: BreakGlass = BreakGlass()
    allow_admin_on_behalf: bool = Field(
        default=False,
        description="an administrator may vote on behalf of approvers (``as``); all the votes one "
        "administrator casts then count as one approver towards min_approvals",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RolePolicy:
        if self.max_cumulative is not None and self.max_cumulative < self.max_duration:
            raise ValueError(
                f"max_cumulative ({format_duration(self.max_cumulative)}) is shorter than "
                f"max_duration ({format_duration(self.max_duration)})"
            )
        if self.max_extensions and self.min_extension and self.min_extension >= self.cumulative_limit:
            raise ValueError(
                f"min_extension ({format_duration(self.min_extension)}) leaves no room to extend within "
                f"the cumulative maximum ({format_duration(self.cumulative_limit)}); lower min_extension, "
                "raise max_cumulative or set max_extensions = 0"
            )
        if self.reminder_before is not None and self.reminder_before >= self.request_timeout:
            raise ValueError(
                f"reminder_before ({format_duration(self.reminder_before)}) must be shorter than "
                f"request_timeout ({format_duration(self.request_timeout)})"
            )
        return self

    @property
    def cumulative_limit(self) -> timedelta:
        return self.max_cumulative or self.max_duration

    @property
    def extension_step(self) -> timedelta:
        """The smallest extension one may ask for: ``min_extension``, else 15 minutes, or a quarter of the
        cumulative maximum for roles held only briefly (a 10-minute role still extends by minutes)."""
        return self.min_extension or min(DEFAULT_EXTENSION_STEP, self.cumulative_limit / 4)

    def describe_approvers(self) -> str:
        groups = ", ".join(self.approver_groups)
        noun = "group" if len(self.approver_groups) == 1 else "groups"
        return f"{self.min_approvals} approval(s) from {noun} {groups}"


class ResourcePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    owner_group: str | None = None
    roles: dict[str, RolePolicy] = Field(min_length=1)


class PolicySet(BaseModel):
    """Every resource grantflow can grant, keyed by resource name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resources: dict[str, ResourcePolicy] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_role_per_connection(self) -> PolicySet:
        seen: dict[str, str] = {}
        for res_name, res in self.resources.items():
            for role_name, role in res.roles.items():
                where = f"{res_name}.{role_name}"
                if role.connection in seen:
                    raise ValueError(
                        f"connection {role.connection!r} is used by both {seen[role.connection]} and {where}"
                    )
                seen[role.connection] = where
        return self

    def role(self, resource: str, role: str | None) -> tuple[str, RolePolicy]:
        """The (role name, policy) a request names; ``role`` may be omitted for single-role resources.

        Raises :class:`LookupError` with a message that lists what exists."""
        res = self.resources.get(resource)
        if res is None:
            known = ", ".join(sorted(self.resources))
            raise LookupError(f"unknown resource {resource!r}; known resources: {known}")
        if role is None:
            if len(res.roles) == 1:
                return next(iter(res.roles.items()))
            roles = ", ".join(sorted(res.roles))
            raise LookupError(f"resource {resource!r} has several roles ({roles}); choose one with --role")
        policy = res.roles.get(role)
        if policy is None:
            roles = ", ".join(sorted(res.roles))
            raise LookupError(f"resource {resource!r} has no role {role!r}; its roles are: {roles}")
        return role, policy

    def for_connection(self, connection: str) -> tuple[str, str, RolePolicy] | None:
        """The (resource, role, policy) granting ``connection``, or None when no policy covers it (each
        connection belongs to at most one role, see ``_one_role_per_connection``)."""
        for res_name, res in self.resources.items():
            for role_name, role in res.roles.items():
                if role.connection == connection:
                    return res_name, role_name, role
        return None


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_policies(data: dict[str, Any], source: str = "policies") -> PolicySet:
    try:
        return PolicySet.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{source}: {problems}") from None


def load_policies(path: Path) -> PolicySet:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text (byte {exc.start}); save the policies as UTF-8") from None
    except OSError as exc:  # a folder, no permission: the operator fixes the path, not the policies
        raise PolicyError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    return parse_policies(data, str(path))
