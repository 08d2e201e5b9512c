"""Campaign items: one piece of standing access, what the reviewer sees about it, and who reviews it.

An item is *one identity and one way it reaches connections*: a person in an access-control group (from hoop,
from the directory over SCIM, or both — the item says which), a member of hoop's admin or auditor group (who
reaches every connection), or a non-human identity (an API key or AI agent through its groups, a machine
identity through the connections it is bound to). Revoking an item removes exactly that way in, in every
system it came from.

Each item carries its usage evidence and a recommendation computed from it with the inputs recorded, so the
evidence bundle shows what the reviewer saw. :func:`assign_reviewer` decides who reviews an item in a stage:
the stage's kind of reviewer, then the later stages' kinds, then the fallback reviewer, then the campaign
owner — skipping anyone who is the item's subject, inactive or unknown, and recording why. Nobody reviews
their own access: when nobody independent is left the item has no reviewer and the campaign reports it.

Pure functions over frozen values: no I/O, safe inside workflows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from domain.campaign_spec import CampaignSpec, ReviewerKind
from domain.identity import Person


class SubjectKind(StrEnum):
    PERSON = "person"
    API_KEY = "api_key"
    AI_AGENT = "ai_agent"
    SERVICE_ACCOUNT = "service_account"
    MACHINE_IDENTITY = "machine_identity"


class AccessVia(StrEnum):
    GROUP = "group"  # a member of an access-control group linked to the connections
    ADMIN = "admin"  # a member of hoop's admin or auditor group: every connection, no access control
    BINDING = "binding"  # a machine identity bound to connections, each with its own credentials


class Source(StrEnum):
    HOOP = "hoop"  # the membership is hoop's own (set in hoop, or by a login from the IdP)
    SCIM = "scim"  # the membership is the identity provider's, read over SCIM


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Subject(_Frozen):
    """Whose access an item is: a person (by directory id) or a non-human identity (by hoop name)."""

    kind: SubjectKind
    id: str = Field(description="the directory id of a person; hoop's name of a non-human identity")
    name: str = Field(description="a person's email; a non-human identity's name")
    display_name: str = ""
    manager_id: str | None = None
    owner_email: str | None = Field(
        default=None, description="a non-human identity's configured owner, else its creator"
    )

    @property
    def is_person(self) -> bool:
        return self.kind is SubjectKind.PERSON


class ItemAccess(_Frozen):
    via: AccessVia
    group: str | None = Field(default=None, description="the group, for group and admin access")
    sources: tuple[Source, ...] = Field(description="where the membership comes from (sorted)")
    connections: tuple[str, ...] = Field(description="the connections this way in reaches (sorted)")
    granted_at: datetime | None = Field(default=None, description="when the membership began, if known")

    def describe(self) -> str:
        if self.via is AccessVia.ADMIN:
            return f"member of {self.group} (every connection)"
        if self.via is AccessVia.BINDING:
            return "bound to " + ", ".join(self.connections)
        reach = ", ".join(self.connections) if self.connections else "no connection"
        return f"member of {self.group} ({'+'.join(s.value for s in self.sources)}) → {reach}"


class ConnectionUsage(_Frozen):
    connection: str
    last_used_at: datetime | None = None
    sessions: int = Field(default=0, ge=0, description="sessions since the usage window began")


class Usage(_Frozen):
    """What the gateway's records say about the item's use, over one window."""

    window_start: datetime = Field(
        description="the previous campaign of the same scope, or the window's start"
    )
    read_at: datetime
    per_connection: tuple[ConnectionUsage, ...] = ()
    key_last_used_at: datetime | None = Field(default=None, description="an API key's own last use")

    @property
    def last_used_at(self) -> datetime | None:
        moments = [u.last_used_at for u in self.per_connection if u.last_used_at is not None]
        if self.key_last_used_at is not None:
            moments.append(self.key_last_used_at)
        return max(moments, default=None)

    @property
    def sessions(self) -> int:
        return sum(u.sessions for u in self.per_connection)


class Recommendation(_Frozen):
    verdict: Literal["keep", "revoke"]
    sentence: str = Field(description="what the reviewer reads, e.g. 'revoke: unused for 142 days'")
    inputs: dict[str, str | int | None] = Field(description="everything the verdict was computed from")


def recommend(access: ItemAccess, usage: Usage, unused_threshold: timedelta) -> Recommendation:
    """Revoke what has not been used for ``unused_threshold``; keep what was used since, or is newer than
    the threshold (nobody could have used it long enough to tell)."""
    now = usage.read_at
    last = usage.last_used_at
    inputs: dict[str, str | int | None] = {
        "last_used_at": last.isoformat() if last else None,
        "sessions_since": usage.sessions,
        "window_start": usage.window_start.isoformat(),
        "unused_threshold_days": unused_threshold.days,
        "granted_at": access.granted_at.isoformat() if access.granted_at else None,
        "read_at": now.isoformat(),
    }
    if last is not None and now - last < unused_threshold:
        if usage.sessions:
            sentence = (
                f"keep: used {usage.sessions} time{'s' if usage.sessions != 1 else ''} since the last review"
            )
        else:
            sentence = f"keep: last used {(now - last).days} days ago"
        return Recommendation(verdict="keep", sentence=sentence, inputs=inputs)
    if access.granted_at is not None and now - access.granted_at < unused_threshold:
        days = (now - access.granted_at).days
        return Recommendation(
            verdict="keep", sentence=f"keep: granted {days} days ago, not yet used", inputs=inputs
        )
    if last is None:
        sentence = f"revoke: not used in the records (since {usage.window_start.date().isoformat()})"
    else:
        sentence = f"revoke: unused for {(now - last).days} days"
    return Recommendation(verdict="revoke", sentence=sentence, inputs=inputs)


def item_id(subject: Subject, access: ItemAccess) -> str:
    """A stable id for (subject, way in): the same access gets the same id in every snapshot of a campaign,
    so a retried snapshot writes each item once. The first two hex digits come from the subject alone, so
    all of a subject's items fall in one :func:`partition` — revocations of one person are then applied by
    one activity, one after the other (hoop's ``PUT /users`` replaces the whole user)."""
    subject_key = f"{subject.kind.value}:{subject.id}"
    key = f"{subject_key}:{access.via.value}:{access.group or ','.join(access.connections)}"
    prefix = hashlib.sha256(subject_key.encode()).hexdigest()[:2]
    return f"it-{prefix}{hashlib.sha256(key.encode()).hexdigest()[:18]}"


PARTITIONS = tuple("0123456789abcdef")
"""Items are processed in 16 partitions by the first hex digit of their id (see :func:`item_id`)."""


def partition(item_id: str) -> str:
    return item_id[3]


class CampaignItem(_Frozen):
    id: str
    subject: Subject
    access: ItemAccess
    usage: Usage | None = None
    recommendation: Recommendation | None = None

    @classmethod
    def of(
        cls,
        subject: Subject,
        access: ItemAccess,
        usage: Usage | None = None,
        unused_threshold: timedelta | None = None,
    ) -> CampaignItem:
        rec = recommend(access, usage, unused_threshold) if usage and unused_threshold else None
        return cls(
            id=item_id(subject, access), subject=subject, access=access, usage=usage, recommendation=rec
        )


def population_hash(items: Iterable[CampaignItem]) -> str:
    """SHA-256 over the population (each item's id, subject and way in, sorted): an auditor recomputes it
    from ``population.json`` to see that the reviewed population is the extracted one."""
    rows = sorted(
        json.dumps(
            [
                i.id,
                i.subject.kind.value,
                i.subject.id,
                i.access.via.value,
                i.access.group,
                list(i.access.connections),
            ],
            separators=(",", ":"),
        )
        for i in items
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode())
        digest.update(b"\n")
    return digest.hexdigest()


class People(Protocol):
    """The directory as reviewer resolution needs it."""

    def person(self, person_id: str) -> Person | None: ...

    def by_email(self, email: str) -> Person | None: ...

    def members(self, group: str) -> Sequence[Person]: ...


class Reviewer(_Frozen):
    """One person, or a group whose members (except the subject) may each decide."""

    kind: Literal["person", "group"]
    id: str = Field(description="a person's directory id, or the group's name")
    name: str = Field(description="a person's email, or the group's name")


class Assignment(_Frozen):
    stage: int
    reviewer: Reviewer | None = Field(description="None: nobody independent could be found")
    via: str = Field(description="the reviewer kind that resolved, 'fallback' or 'owner'")
    notes: tuple[str, ...] = Field(default=(), description="why earlier candidates were passed over")


def _person_reviewer(person: Person) -> Reviewer:
    return Reviewer(kind="person", id=person.id, name=person.email)


def _owner_email(item: CampaignItem, spec: CampaignSpec) -> str | None:
    access = item.access
    if access.group is not None and access.group in spec.owners.groups:
        return spec.owners.groups[access.group]
    if access.via is not AccessVia.ADMIN and len(access.connections) == 1:
        return spec.owners.connections.get(access.connections[0])
    return None


def _candidate(
    kind: ReviewerKind, group: str | None, item: CampaignItem, spec: CampaignSpec, people: People
) -> tuple[Reviewer | None, str]:
    """The reviewer ``kind`` gives for ``item``, or None with the reason."""
    subject = item.subject
    if kind is ReviewerKind.MANAGER:
        if not subject.is_person:
            return None, "a non-human identity has no manager"
        current = people.person(subject.id)  # the manager as of now: people move during a campaign
        manager_id = current.manager_id if current is not None else subject.manager_id
        manager = people.person(manager_id) if manager_id else None
        if manager is None:
            return None, f"{subject.name} has no manager in the directory"
        if not manager.active:
            return None, f"{subject.name}'s manager {manager.email} is inactive"
        return _person_reviewer(manager), ""
    if kind is ReviewerKind.RESOURCE_OWNER:
        email = _owner_email(item, spec)
        if email is None:
            return (
                None,
                f"no owner is configured for {item.access.group or ', '.join(item.access.connections)}",
            )
        return _email_reviewer(email, people, "the owner")
    if kind is ReviewerKind.IDENTITY_OWNER:
        if subject.is_person:
            return None, "a person has no identity owner"
        email = spec.owners.identities.get(subject.id) or subject.owner_email
        if email is None:
            return None, f"{subject.name} has no configured owner or known creator"
        return _email_reviewer(email, people, "the identity's owner")
    assert group is not None  # the spec requires it for group stages
    members = [m for m in people.members(group) if m.active and m.id != subject.id]
    if not members:
        return None, f"group {group} has no active member other than {subject.name}"
    return Reviewer(kind="group", id=group, name=group), ""


def _email_reviewer(email: str, people: People, role: str) -> tuple[Reviewer | None, str]:
    person = people.by_email(email)
    if person is None:
        return None, f"{role} {email} is not in the directory"
    if not person.active:
        return None, f"{role} {email} is inactive"
    return _person_reviewer(person), ""


def _is_subject(reviewer: Reviewer, item: CampaignItem) -> bool:
    return reviewer.kind == "person" and item.subject.is_person and reviewer.id == item.subject.id


def assign_reviewer(item: CampaignItem, stage: int, spec: CampaignSpec, people: People) -> Assignment:
    """Who reviews ``item`` in ``stage`` (0-based), with the reasons any candidate was passed over."""
    notes: list[str] = []
    for later in spec.stages[stage:]:
        reviewer, why = _candidate(later.reviewers, later.group, item, spec, people)
        if reviewer is not None and _is_subject(reviewer, item):
            reviewer, why = None, f"{item.subject.name} would review their own access"
        if reviewer is not None:
            return Assignment(stage=stage, reviewer=reviewer, via=later.reviewers.value, notes=tuple(notes))
        notes.append(f"{later.reviewers.value}: {why}")
    for via, email in (("fallback", spec.fallback_reviewer), ("owner", spec.owner)):
        reviewer, why = _email_reviewer(
            email, people, f"the {via} reviewer" if via == "fallback" else "the owner"
        )
        if reviewer is not None and _is_subject(reviewer, item):
            reviewer, why = None, f"{item.subject.name} would review their own access"
        if reviewer is not None:
            return Assignment(stage=stage, reviewer=reviewer, via=via, notes=tuple(notes))
        notes.append(f"{via}: {why}")
    return Assignment(stage=stage, reviewer=None, via="none", notes=tuple(notes))
