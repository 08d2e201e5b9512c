"""Event-triggered campaigns: what one directory event makes of a triggered spec — pure functions.

A spec with ``[trigger] on = "mover"`` is registered once (``grantflow campaign trigger SPEC``); each time the
identity sync applies a mover change for a person (manager or department, as the spec's ``changes`` say), one
small campaign opens: the spec's scope narrowed to that person (``scope.people.ids``), one stage reviewed by
their manager — the new one, as the directory has it at the snapshot — for the spec's duration.

One event is one campaign, however often it is seen: the campaign's id is derived from the spec's name, the
person and the change (old and new values), so a retried sync, a re-run, or two syncs racing over the same
change all name the same campaign, and its workflow id (``campaign-<id>``) is started once.
"""

from __future__ import annotations

import hashlib
import tomllib
from enum import StrEnum
from typing import Any

import tomli_w
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.campaign_spec import MoverChange, ReviewerKind, Trigger
from domain.directory_sync import DepartmentChange, ManagerChange
from domain.identity import PersonRef

MAX_TRIGGERED_NAME = 200
"""A launched campaign's name (the spec's, then the person's email) is cut to the spec's own limit."""


class Move(BaseModel):
    """What one sync saw change about one person: their manager, their department, or both."""

    model_config = ConfigDict(frozen=True)

    person: PersonRef
    old_manager_id: str | None = None
    new_manager_id: str | None = None
    manager_changed: bool = False
    old_department: str | None = None
    new_department: str | None = None
    department_changed: bool = False

    def kinds(self) -> list[MoverChange]:
        kinds: list[MoverChange] = []
        if self.manager_changed:
            kinds.append("manager")
        if self.department_changed:
            kinds.append("department")
        return kinds

    def counts_for(self, trigger: Trigger) -> bool:
        return bool(set(self.kinds()) & set(trigger.changes))

    def change(self, trigger: Trigger) -> dict[str, dict[str, str | None]]:
        """The part of the move the trigger listens to, as the ledger records it."""
        change: dict[str, dict[str, str | None]] = {}
        if self.manager_changed and "manager" in trigger.changes:
            change["manager"] = {"from": self.old_manager_id, "to": self.new_manager_id}
        if self.department_changed and "department" in trigger.changes:
            change["department"] = {"from": self.old_department, "to": self.new_department}
        return change


def moves_of(movers: list[ManagerChange], departments: list[DepartmentChange]) -> list[Move]:
    """One move per person, manager and department changes of the same sync together."""
    moves: dict[str, Move] = {}
    for m in movers:
        moves[m.person.id] = Move(
            person=m.person,
            old_manager_id=m.old_manager_id,
            new_manager_id=m.new_manager_id,
            manager_changed=True,
        )
    for d in departments:
        before = moves.get(d.person.id, Move(person=d.person))
        moves[d.person.id] = before.model_copy(
            update={
                "old_department": d.old_department,
                "new_department": d.new_department,
                "department_changed": True,
            }
        )
    return [moves[pid] for pid in sorted(moves)]


def _slug(name: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in name.lower()).split()
    return "-".join(words)[:24].strip("-") or "campaign"


def triggered_campaign_id(spec_name: str, person_id: str, change: dict[str, dict[str, str | None]]) -> str:
    """The same spec, person and change always name the same campaign (and so the same workflow)."""
    parts = [spec_name, person_id] + [
        f"{kind}:{values['from'] or ''}>{values['to'] or ''}" for kind, values in sorted(change.items())
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"cmp-mv-{_slug(spec_name)}-{digest}"


def launch_spec_toml(spec_toml: str, move: Move, change: dict[str, dict[str, str | None]]) -> str:
    """The spec one event's campaign runs: the registered spec without its trigger, its scope narrowed to
    the mover, its one stage reviewed by the mover's manager. Deterministic, so a retried launch finds the
    campaign it recorded (same spec hash)."""
    data: dict[str, Any] = tomllib.loads(spec_toml)
    data.pop("trigger", None)
    name = f"{data['name']}: {move.person.email}"
    data["name"] = name[:MAX_TRIGGERED_NAME]
    what = ", ".join(f"{kind} {v['from'] or '(none)'} → {v['to'] or '(none)'}" for kind, v in change.items())
    note = f"Opened because {move.person.email} moved ({what})."
    data["description"] = f"{data['description']}\n\n{note}" if data.get("description") else note
    scope = data.setdefault("scope", {})
    scope.setdefault("people", {})["ids"] = [move.person.id]
    data["stages"] = data.get("stages") or [{"reviewers": ReviewerKind.MANAGER.value}]
    return tomli_w.dumps(data)


def trigger_id_of(spec_name: str) -> str:
    """A triggered spec is registered under its name: registering the same name again replaces it."""
    words = "".join(c if c.isalnum() else " " for c in spec_name.lower()).split()
    return "campaign-trigger-" + ("-".join(words)[:40].strip("-") or "campaign")


class RegisteredTrigger(BaseModel):
    """A triggered spec as registered: the sync fires it for every matching event from then on."""

    trigger_id: str
    name: str
    event: str
    spec_toml: str
    spec_sha256: str
    registered_by: str
    registered_at: AwareDatetime


class FiringStatus(StrEnum):
    PENDING = "pending"  # recorded; its campaign's workflow not started yet (or the start failed)
    STARTED = "started"  # the workflow was started (by this attempt or an earlier one)


class TriggerFiring(BaseModel):
    """One event that fired a triggered spec: the campaign it opens, for whom, on which change."""

    campaign_id: str
    trigger_id: str
    person_id: str
    change: dict[str, dict[str, str | None]]
    spec_toml: str = Field(description="the spec the campaign runs (narrowed to the person)")
    sync_id: str
    status: FiringStatus
    attempts: int = 0
    error: str | None = None
    fired_at: AwareDatetime
    updated_at: AwareDatetime
