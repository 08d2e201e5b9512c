"""What an identity sync would change: joiners, movers, leavers and group changes — pure functions.

The sync activity lists the provider, builds the incoming directory and asks :func:`diff_directory` what
changed against the store. A full listing sees everything, deletions included; an incremental listing
(``meta.lastModified gt …``) sees only what changed, so absence means "unchanged", never "deleted".

:func:`guard` is the safety catch: a sync that would deactivate more than a configured share of the
directory, or empty a group that had members, is not applied — an IdP hiccup must not revoke everyone.

:class:`SyncInput` and :class:`SyncReport` are what a sync is asked and what it answers: the REST edge,
the workflow and the activity all speak them, so they live here rather than with any one of them.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from domain.identity import Person, PersonRef
from domain.requests import ApproversChanged, PersonLeft


class LeaveReason(StrEnum):
    DEACTIVATED = "deactivated"
    DELETED = "deleted"


class Leaver(BaseModel):
    person: PersonRef
    reason: LeaveReason


class ManagerChange(BaseModel):
    person: PersonRef
    old_manager_id: str | None
    new_manager_id: str | None


class DepartmentChange(BaseModel):
    """Someone's department changed (SCIM enterprise ``department``): a mover for triggered campaigns."""

    person: PersonRef
    old_department: str
    new_department: str


class GroupChange(BaseModel):
    group: str
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    members_after: int = 0
    added_total: int | None = Field(default=None, description="set when ``added`` was cut short in a report")
    removed_total: int | None = Field(default=None, description="set when ``removed`` was cut short")

    def cut_short(self, limit: int) -> GroupChange:
        """At most ``limit`` ids each way, with the totals kept (a report travels through Temporal)."""
        if len(self.added) <= limit and len(self.removed) <= limit:
            return self
        return self.model_copy(
            update={
                "added": self.added[:limit],
                "removed": self.removed[:limit],
                "added_total": len(self.added),
                "removed_total": len(self.removed),
            }
        )


class DirectoryChanges(BaseModel):
    """The difference between the store's directory and the provider's, person ids throughout."""

    full: bool
    joiners: list[PersonRef] = Field(default_factory=list)
    leavers: list[Leaver] = Field(default_factory=list)
    movers: list[ManagerChange] = Field(default_factory=list)
    department_changes: list[DepartmentChange] = Field(default_factory=list)
    updated: list[PersonRef] = Field(default_factory=list)
    group_changes: list[GroupChange] = Field(default_factory=list)
    upserts: list[Person] = Field(default_factory=list)
    """People to write (new or changed), without their groups: memberships come from ``memberships``."""
    memberships: dict[str, list[str]] = Field(default_factory=dict)
    """Groups whose member list is replaced, with their members after the sync."""

    @property
    def is_empty(self) -> bool:
        return not (
            self.joiners
            or self.leavers
            or self.movers
            or self.department_changes
            or self.updated
            or self.group_changes
        )

    def counts(self) -> dict[str, int]:
        return {
            "joiners": len(self.joiners),
            "movers": len(self.movers),
            "leavers": len(self.leavers),
            "updated": len(self.updated),
            "group_changes": len(self.group_changes),
        }


class SyncInput(BaseModel):
    sync_id: str
    full: bool = False
    dry_run: bool = False


class RequestSignal(BaseModel):
    """What one running request must be told: a person left, or its eligible approvers changed."""

    request_id: str
    person_left: PersonLeft | None = None
    approvers_changed: ApproversChanged | None = None


class GatewayChanges(BaseModel):
    deactivated: list[str] = Field(default_factory=list)
    """Emails set inactive in the gateway (or found inactive already), read back."""
    never_signed_in: list[str] = Field(default_factory=list)
    """Leavers or re-activated people with no gateway user: nothing to change there."""
    sessions_killed: dict[str, list[str]] = Field(default_factory=dict)
    """Email → ids of the sessions killed."""
    reactivated: list[str] = Field(default_factory=list)
    """Emails set active again in the gateway, read back."""


REPORT_DETAIL_LIMIT = 200
"""Joiners and group changes a report lists by name (its ``counts`` has every total, the ledger entry
``directory.synced`` every name): a first sync of 100,000 people would otherwise make a report of megabytes,
over Temporal's payload limit, and fail the sync."""


class SyncReport(BaseModel):
    sync_id: str
    mode: str  # full or incremental
    dry_run: bool
    applied: bool
    blocked_reason: str | None = None
    users_listed: int
    groups_listed: int
    counts: dict[str, int]
    joiners: list[PersonRef] = Field(default_factory=list)
    leavers: list[Leaver] = Field(default_factory=list)
    reactivated: list[PersonRef] = Field(default_factory=list)
    """Joiners who were in the directory before, inactive: set active in the gateway again."""
    movers: list[ManagerChange] = Field(default_factory=list)
    department_changes: list[DepartmentChange] = Field(default_factory=list)
    """People whose department changed (their manager may have changed too: then they are in ``movers``)."""
    group_changes: list[GroupChange] = Field(default_factory=list)
    details_cut_short: bool = False
    """More joiners or group changes than :data:`REPORT_DETAIL_LIMIT`: ``counts`` has the totals."""
    signals: list[RequestSignal] = Field(default_factory=list)
    """For a dry run: the requests that *would* be told."""
    gateway: GatewayChanges | None = None
    """What the gateway was told (set by the workflow once applied)."""
    gateway_error: str | None = None
    """Why the gateway could not be told, after retries (escalated in the ledger)."""
    campaigns_triggered: list[str] = Field(default_factory=list)
    """Campaigns this sync's movers opened (``[trigger] on = "mover"`` specs), by id."""
    campaigns_not_started: dict[str, str] = Field(default_factory=dict)
    """Triggered campaigns whose start failed, with why: each is retried by the next sync."""
    campaign_trigger_error: str | None = None
    """Why triggered campaigns could not be fired at all (the next sync fires this sync's movers no more)."""


def diff_directory(
    current: list[Person],
    incoming: list[Person],
    incoming_groups: dict[str, list[str]],
    *,
    full: bool,
) -> DirectoryChanges:
    """Compare the stored directory with a listing; ``incoming_groups`` maps group name to member ids."""
    stored = {p.id: p for p in current}
    listed = {p.id: p for p in incoming}
    changes = DirectoryChanges(full=full)

    for pid, person in listed.items():
        before = stored.get(pid)
        if person.active and (before is None or not before.active):
            changes.joiners.append(person.ref)
        elif before is not None and before.active and not person.active:
            changes.leavers.append(Leaver(person=before.ref, reason=LeaveReason.DEACTIVATED))
        if before is not None and before.active and person.active and before.manager_id != person.manager_id:
            changes.movers.append(
                ManagerChange(
                    person=person.ref, old_manager_id=before.manager_id, new_manager_id=person.manager_id
                )
            )
        if before is not None and before.active and person.active and before.department != person.department:
            changes.department_changes.append(
                DepartmentChange(
                    person=person.ref, old_department=before.department, new_department=person.department
                )
            )
        if before is not None and (
            before.email != person.email or before.display_name != person.display_name
        ):
            changes.updated.append(person.ref)
        if before is None or _fields(before) != _fields(person):
            changes.upserts.append(person.model_copy(update={"groups": ()}))

    if full:
        for pid, before in stored.items():
            if pid not in listed and before.active:
                changes.leavers.append(Leaver(person=before.ref, reason=LeaveReason.DELETED))

    stored_groups: dict[str, set[str]] = {}
    for person in current:
        for group in person.groups:
            stored_groups.setdefault(group, set()).add(person.id)
    names = set(incoming_groups) | (set(stored_groups) if full else set())
    for name in sorted(names):
        before_ids = stored_groups.get(name, set())
        after_ids = set(incoming_groups.get(name, []))
        if before_ids != after_ids:
            changes.group_changes.append(
                GroupChange(
                    group=name,
                    added=sorted(after_ids - before_ids),
                    removed=sorted(before_ids - after_ids),
                    members_after=len(after_ids),
                )
            )
            changes.memberships[name] = sorted(after_ids)
    return changes


def _fields(person: Person) -> tuple[str, str, str | None, bool, str, str]:
    return (
        person.email,
        person.display_name,
        person.manager_id,
        person.active,
        person.department,
        person.employment_type,
    )


def guard(changes: DirectoryChanges, active_before: int, max_deactivation_share: float) -> str | None:
    """Why this sync must not be applied, or None. Counted against the active people before the sync."""
    if active_before > 0 and changes.leavers:
        share = len(changes.leavers) / active_before
        if share > max_deactivation_share:
            return (
                f"the sync would deactivate {len(changes.leavers)} of {active_before} active people "
                f"({share:.0%}), more than the allowed {max_deactivation_share:.0%}; nothing was applied"
            )
    emptied = [g.group for g in changes.group_changes if g.members_after == 0 and g.removed]
    if emptied:
        return f"the sync would empty group(s) {', '.join(emptied)}; nothing was applied"
    return None
