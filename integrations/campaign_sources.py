"""Reading what a campaign's snapshot needs from hoop and the identity provider, with where it came from.

Facts: hoop's connections and each one's access rules (``domain.access``), hoop's users with their groups,
its non-human identities (API keys, AI agents and service accounts with their groups, machine identities with
the connections they are bound to), and the identity provider's users and groups over SCIM; usage: hoop's
sessions since the window's start, paged once and aggregated per (identity, connection) — never one call per
item. Every read is recorded as a
:class:`~domain.campaign_report.SourceExtract` (system, endpoint, filters, count, time) for the evidence's
provenance. This module reads only; it never decides what is in scope (``domain/population.py`` does).
"""

from __future__ import annotations

from datetime import datetime

from domain.campaign_report import SourceExtract
from domain.campaign_spec import IdentityKind
from domain.campaigns import ConnectionUsage
from domain.identity import Person
from domain.population import ConnectionFacts, Facts, GatewayMember, NonHumanIdentity
from integrations.gateway import Gateway
from integrations.scim import ScimDirectory


class HoopScimSources:
    """:class:`activities.campaigns.CampaignSources` over hoop's API and a SCIM directory (optional: without
    one, the population is hoop's memberships alone, and the provenance says so)."""

    def __init__(
        self,
        gateway: Gateway,
        directory: ScimDirectory | None,
        *,
        excluded_identities: tuple[str, ...] = (),
    ) -> None:
        self._gateway = gateway
        self._directory = directory
        self._excluded = excluded_identities

    async def read_facts(self, read_at: datetime) -> tuple[Facts, list[SourceExtract]]:
        extracts: list[SourceExtract] = []
        connections = await self._gateway.list_connections()
        extracts.append(_extract("hoop", "GET /api/connections", "all pages", len(connections), read_at))
        facts = []
        for connection in connections:
            rules = await self._gateway.connection_access_rules(connection.name)
            facts.append(
                ConnectionFacts(
                    name=connection.name,
                    type=connection.type,
                    subtype=connection.subtype,
                    tags=connection.tags,
                    rules=rules,
                )
            )
        extracts.append(
            _extract(
                "hoop",
                "GET /api/plugins/access_control, /api/accessrequests/rules, /api/connections/{name}",
                "per connection",
                len(facts),
                read_at,
            )
        )
        users = await self._gateway.list_users()
        extracts.append(_extract("hoop", "GET /api/users", "all users", len(users), read_at))
        members = tuple(
            GatewayMember(email=u.email, groups=tuple(u.groups), active=u.status == "active") for u in users
        )
        identities: list[NonHumanIdentity] = []
        for kind, identity_kind in (("api_keys", IdentityKind.API_KEY), ("ai_agents", IdentityKind.AI_AGENT)):
            keys = await self._gateway.list_identity_keys(kind)  # type: ignore[arg-type]
            path = "/api/api-keys" if kind == "api_keys" else "/api/ai-agents"
            extracts.append(_extract("hoop", f"GET {path}", "all, active and revoked", len(keys), read_at))
            identities += [
                NonHumanIdentity(
                    kind=identity_kind,
                    name=k.name,
                    groups=tuple(k.groups),
                    created_by=k.created_by,
                    last_used_at=k.last_used_at,
                    active=k.status == "active",
                )
                for k in keys
            ]
        # Service accounts sign in like people and reach connections through their groups; an inactive one
        # cannot use hoop at all. Keyed by subject: unique, and what hoop's PUT names.
        accounts = await self._gateway.list_service_accounts()
        extracts.append(
            _extract("hoop", "GET /api/serviceaccounts", "all, with groups", len(accounts), read_at)
        )
        identities += [
            NonHumanIdentity(
                kind=IdentityKind.SERVICE_ACCOUNT,
                name=a.subject,
                groups=tuple(a.groups),
                active=a.status == "active",
            )
            for a in accounts
        ]
        # Machine identities reach the connections they are bound to by name and those an attribute of
        # theirs links (hoop provisions a credential for each).
        machines = await self._gateway.list_machine_identities()
        extracts.append(
            _extract(
                "hoop",
                "GET /api/machineidentities, /api/attributes",
                "all, with bound and attribute-linked connections",
                len(machines),
                read_at,
            )
        )
        identities += [
            NonHumanIdentity(
                kind=IdentityKind.MACHINE_IDENTITY,
                name=m.name,
                connections=tuple(sorted({*m.connection_names, *m.attribute_connections})),
            )
            for m in machines
        ]
        people: tuple[Person, ...] = ()
        idp_groups: dict[str, tuple[str, ...]] = {}
        if self._directory is not None:
            scim_users = await self._directory.list_users()
            extracts.append(_extract("scim", "GET /Users", "all pages", len(scim_users), read_at))
            people = tuple(
                Person(
                    id=u.id,
                    email=u.primary_email,
                    display_name=u.display_name,
                    manager_id=u.manager_id,
                    active=u.active,
                    department=u.department,
                    employment_type=u.user_type.lower(),
                )
                for u in scim_users
            )
            groups = await self._directory.list_groups()
            extracts.append(_extract("scim", "GET /Groups", "all pages, members", len(groups), read_at))
            idp_groups = {g.display_name: tuple(g.member_ids) for g in groups}
        return (
            Facts(
                read_at=read_at,
                connections=tuple(facts),
                gateway_members=members,
                people=people,
                idp_groups=idp_groups,
                identities=tuple(identities),
                excluded_identities=self._excluded,
            ),
            extracts,
        )

    async def read_usage(
        self, since: datetime, count_from: datetime, read_at: datetime
    ) -> tuple[dict[tuple[str, str], ConnectionUsage], list[SourceExtract]]:
        """(email lower case, connection) → last session start since ``since`` and the number of sessions
        started since ``count_from`` (the previous campaign of the same scope)."""
        sessions = await self._gateway.list_sessions(since=since)
        usage: dict[tuple[str, str], ConnectionUsage] = {}
        for session in sessions:
            if session.start_date is None:
                continue
            key = (session.user_email.lower(), session.connection)
            seen = usage.get(key, ConnectionUsage(connection=session.connection))
            last = seen.last_used_at
            usage[key] = ConnectionUsage(
                connection=session.connection,
                last_used_at=session.start_date if last is None or session.start_date > last else last,
                sessions=seen.sessions + (1 if session.start_date >= count_from else 0),
            )
        extract = _extract(
            "hoop", "GET /api/sessions", f"start_date >= {since.isoformat()}", len(sessions), read_at
        )
        return usage, [extract]


def _extract(system: str, endpoint: str, query: str, count: int, at: datetime) -> SourceExtract:
    return SourceExtract.model_validate(
        {"system": system, "endpoint": endpoint, "query": query, "count": count, "extracted_at": at}
    )
