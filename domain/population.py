"""A campaign's population: who can reach what, computed from the gateway's and the directory's facts.

Standing access lives in two systems: hoop's access control (a person's groups in hoop, set in hoop or by
their last login from the identity provider, against each connection's access-control list and attribute
links — see ``domain/access.py``) and the identity provider's groups, read over SCIM. A membership in either
keeps someone able to reach a connection, so the population is the *union*: one item per (identity, group)
that reaches an in-scope connection, saying which systems the membership comes from, so that a revocation
removes it from each of them. Members of hoop's admin and auditor groups bypass access control and reach every
connection; non-human identities (API keys, AI agents, service accounts) reach connections through their
groups like people, and machine identities through the connections they are bound to.

:func:`build_population` is pure: activities read the facts (pages of hoop and SCIM), this module decides what
is in scope, and the result is written to the store with its provenance. Usage filters (``unused_for``,
``granted_since``) apply once usage is known (:func:`keep_after_usage`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time

from pydantic import BaseModel, ConfigDict, Field

from domain.access import ADMIN_GROUP, AUDITOR_GROUP, ConnectionAccessRules
from domain.campaign_spec import IdentityKind, Scope
from domain.campaigns import AccessVia, CampaignItem, ItemAccess, Source, Subject, SubjectKind, Usage
from domain.identity import Person


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConnectionFacts(_Frozen):
    """One gateway connection as the snapshot reads it."""

    name: str
    type: str = ""  # hoop's type (database, application, custom)
    subtype: str = ""  # and its implementation (postgres, mysql, ssh …): a scope may name either
    tags: dict[str, str] = Field(default_factory=dict)
    rules: ConnectionAccessRules


class GatewayMember(_Frozen):
    """A hoop user: keyed by email, with the groups hoop holds for them."""

    email: str
    groups: tuple[str, ...] = ()
    active: bool = True


class NonHumanIdentity(_Frozen):
    """An API key, AI agent, service account or machine identity in hoop."""

    kind: IdentityKind
    name: str
    groups: tuple[str, ...] = ()
    connections: tuple[str, ...] = Field(default=(), description="machine identities: bound connections")
    created_by: str | None = None
    last_used_at: datetime | None = None
    active: bool = True


class Facts(_Frozen):
    """Everything a snapshot reads, as of ``read_at``."""

    read_at: datetime
    connections: tuple[ConnectionFacts, ...]
    gateway_members: tuple[GatewayMember, ...]
    people: tuple[Person, ...] = Field(description="the directory (SCIM users)")
    idp_groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="SCIM group name → member person ids"
    )
    identities: tuple[NonHumanIdentity, ...] = ()
    excluded_identities: tuple[str, ...] = Field(
        default=(), description="never reviewed: grantflow's own API key"
    )
    admin_group: str = ADMIN_GROUP
    auditor_group: str = AUDITOR_GROUP


class PopulationNote(_Frozen):
    """Something about the population an auditor must see (access nobody can review item by item)."""

    kind: str
    detail: str


class Population(_Frozen):
    items: tuple[CampaignItem, ...]
    connections: tuple[str, ...] = Field(description="the connections in scope")
    notes: tuple[PopulationNote, ...] = ()


def connections_in_scope(scope: Scope, connections: Iterable[ConnectionFacts]) -> list[ConnectionFacts]:
    """The connections a scope selects; every connection when it names none (it selects by group or
    identity instead)."""
    every = sorted(connections, key=lambda c: c.name)
    if not scope.selects_connections:
        return every
    tags = [tuple(t.split("=", 1)) for t in scope.connection_tags]
    return [
        c
        for c in every
        if c.name in scope.connections
        or c.type in scope.connection_types
        or (c.subtype != "" and c.subtype in scope.connection_types)
        or any(c.tags.get(key) == value for key, value in tags)
    ]


def _person_matches(person: Person | None, scope: Scope, managers: set[str]) -> bool:
    people = scope.people
    if not (people.departments or people.managers or people.employment_types or people.ids):
        return True
    if person is None:  # known to hoop only: nothing to filter on, so a people filter leaves it out
        return False
    return (
        (not people.ids or person.id in people.ids)
        and (not people.departments or person.department in people.departments)
        and (not people.managers or (person.manager_id or "") in managers)
        and (not people.employment_types or person.employment_type in people.employment_types)
    )


def build_population(scope: Scope, facts: Facts) -> Population:
    in_scope = connections_in_scope(scope, facts.connections)
    names = tuple(c.name for c in in_scope)
    notes: list[PopulationNote] = []
    reach: dict[str, set[str]] = defaultdict(set)  # group -> in-scope connections it reaches
    for connection in in_scope:
        if not connection.rules.access_control_enabled:
            notes.append(
                PopulationNote(
                    kind="access_control_off",
                    detail=f"{connection.name}: hoop's access control is off, so every user reaches it; "
                    "only its review rule stands between them and the connection",
                )
            )
            continue
        for group in connection.rules.allowing_groups():
            reach[group].add(connection.name)
    if scope.groups:
        reach = defaultdict(set, {g: c for g, c in reach.items() if g in scope.groups})

    by_id = {p.id: p for p in facts.people}
    by_email = {p.email.lower(): p for p in facts.people}
    managers = {p.id for p in facts.people if p.email.lower() in set(scope.people.managers)}
    admin_groups = {facts.admin_group, facts.auditor_group}

    # A scope naming only non-human identities reviews those alone; any other selector brings people in.
    people_in_scope = bool(
        scope.selects_connections
        or scope.groups
        or scope.people.departments
        or scope.people.managers
        or scope.people.employment_types
        or scope.people.ids
    )
    # (subject key) -> group -> sources
    memberships: dict[str, dict[str, set[Source]]] = defaultdict(lambda: defaultdict(set))
    subjects: dict[str, Subject] = {}

    def person_subject(person: Person | None, email: str) -> tuple[str, Subject]:
        if person is not None:
            return person.id, Subject(
                kind=SubjectKind.PERSON,
                id=person.id,
                name=person.email.lower(),
                display_name=person.display_name,
                manager_id=person.manager_id,
            )
        # In hoop but not in the directory: reviewed all the same (the fallback reviewer decides).
        key = f"hoop:{email.lower()}"
        return key, Subject(kind=SubjectKind.PERSON, id=key, name=email.lower())

    for member in facts.gateway_members if people_in_scope else ():
        person = by_email.get(member.email.lower())
        if not member.active or not _person_matches(person, scope, managers):
            continue
        key, subject = person_subject(person, member.email)
        subjects[key] = subject
        for group in member.groups:
            if group in reach or (group in admin_groups and scope.include_admins):
                memberships[key][group].add(Source.HOOP)
    for group, member_ids in facts.idp_groups.items() if people_in_scope else ():
        if group not in reach:
            continue
        for person_id in member_ids:
            person = by_id.get(person_id)
            if person is None or not person.active or not _person_matches(person, scope, managers):
                continue
            key, subject = person_subject(person, person.email)
            subjects[key] = subject
            memberships[key][group].add(Source.SCIM)

    # Items through the same group from the same systems have equal (frozen) accesses: one object for all
    # of them, not one per item — a large population holds thousands of items per group.
    accesses: dict[tuple[str, frozenset[Source]], ItemAccess] = {}

    def group_access(group: str, sources: set[Source]) -> ItemAccess:
        key = (group, frozenset(sources))
        if key not in accesses:
            accesses[key] = _group_access(group, sources, reach, names, admin_groups)
        return accesses[key]

    items: list[CampaignItem] = []
    for key, groups in memberships.items():
        for group, sources in groups.items():
            items.append(CampaignItem.of(subjects[key], group_access(group, sources)))

    wanted = set(scope.identities)
    excluded = set(facts.excluded_identities)
    for identity in facts.identities:
        if identity.kind not in wanted or identity.name in excluded or not identity.active:
            continue
        subject = Subject(
            kind=SubjectKind(identity.kind.value),
            id=identity.name,
            name=identity.name,
            owner_email=identity.created_by,
        )
        if identity.kind is IdentityKind.MACHINE_IDENTITY:
            bound = tuple(sorted(set(identity.connections) & set(names)))
            if bound:
                access = ItemAccess(via=AccessVia.BINDING, sources=(Source.HOOP,), connections=bound)
                items.append(CampaignItem.of(subject, access))
            continue
        for group in identity.groups:
            if group in reach or (group in admin_groups and scope.include_admins):
                items.append(CampaignItem.of(subject, group_access(group, {Source.HOOP})))
    items.sort(key=lambda i: (i.subject.kind.value, i.subject.name, i.access.group or "", i.id))
    return Population(items=tuple(items), connections=names, notes=tuple(notes))


def _group_access(
    group: str,
    sources: Iterable[Source],
    reach: dict[str, set[str]],
    in_scope: Sequence[str],
    admin_groups: set[str],
) -> ItemAccess:
    if group in admin_groups:
        return ItemAccess(
            via=AccessVia.ADMIN, group=group, sources=tuple(sorted(set(sources))), connections=tuple(in_scope)
        )
    return ItemAccess(
        via=AccessVia.GROUP,
        group=group,
        sources=tuple(sorted(set(sources))),
        connections=tuple(sorted(reach[group])),
    )


def keep_after_usage(item: CampaignItem, usage: Usage, scope: Scope) -> bool:
    """Whether an item stays in a scope with ``unused_for`` / ``granted_since`` once its usage is known."""
    if scope.unused_for is not None:
        last = usage.last_used_at
        if last is not None and usage.read_at - last < scope.unused_for:
            return False
    if scope.granted_since is not None:
        granted = item.access.granted_at
        since = datetime.combine(scope.granted_since, time(), tzinfo=UTC)
        if granted is None or granted < since:
            return False
    return True
