"""A campaign's population: the union of hoop's and the directory's memberships, admins, non-human identities,
scope selectors and filters, and the usage filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from domain.access import ConnectionAccessRules
from domain.campaign_spec import IdentityKind, PeopleFilter, Scope
from domain.campaigns import AccessVia, ConnectionUsage, Source, SubjectKind, Usage
from domain.identity import Person
from domain.population import (
    ConnectionFacts,
    Facts,
    GatewayMember,
    NonHumanIdentity,
    build_population,
    connections_in_scope,
    keep_after_usage,
)

NOW = datetime(2027, 1, 4, 9, tzinfo=UTC)


def _connection(name: str, groups: list[str], *, type_: str = "database", env: str = "prod", on: bool = True):
    return ConnectionFacts(
        name=name,
        type=type_,
        tags={"env": env},
        rules=ConnectionAccessRules(
            connection=name,
            access_control_enabled=on,
            access_groups=groups[:1],
            attribute_groups={"tier": groups[1:]} if groups[1:] else {},
        ),
    )


FACTS = Facts(
    read_at=NOW,
    connections=(
        _connection("pg-prod-ro", ["engineering", "analytics"]),
        _connection("pg-prod-admin", ["db-owners"]),
        _connection("pg-staging", ["engineering"], env="staging"),
        _connection("k8s-prod", ["platform"], type_="kubernetes"),
        _connection("legacy-ftp", [], type_="ftp", on=False),
    ),
    gateway_members=(
        GatewayMember(email="Bob@example.com", groups=("db-owners", "engineering")),
        GatewayMember(email="alice@example.com", groups=("engineering",)),
        GatewayMember(email="root@example.com", groups=("admin",)),
        GatewayMember(email="ghost@example.com", groups=("analytics",)),  # not in the directory
        GatewayMember(email="gone@example.com", groups=("platform",), active=False),
    ),
    people=(
        Person(id="u-1", email="bob@example.com", manager_id="u-9", department="Data"),
        Person(id="u-2", email="alice@example.com", manager_id="u-9", department="Web"),
        Person(id="u-3", email="zoe@example.com", employment_type="contractor", department="Data"),
        Person(id="u-4", email="root@example.com"),
        Person(id="u-9", email="ken@example.com"),
    ),
    idp_groups={"db-owners": ("u-1", "u-3"), "finance": ("u-2",)},
    identities=(
        NonHumanIdentity(
            kind=IdentityKind.API_KEY, name="ci-deploy", groups=("platform",), created_by="linus@x"
        ),
        NonHumanIdentity(kind=IdentityKind.API_KEY, name="grantflow", groups=("admin",)),
        NonHumanIdentity(kind=IdentityKind.AI_AGENT, name="sql-helper", groups=("analytics", "admin")),
        NonHumanIdentity(
            kind=IdentityKind.MACHINE_IDENTITY, name="etl", connections=("pg-prod-ro", "pg-staging")
        ),
        NonHumanIdentity(
            kind=IdentityKind.SERVICE_ACCOUNT, name="old-sa", groups=("platform",), active=False
        ),
    ),
    excluded_identities=("grantflow",),
)


def _rows(scope: Scope) -> set[tuple[str, str | None, str, tuple[str, ...]]]:
    population = build_population(scope, FACTS)
    return {
        (i.subject.name, i.access.group, "+".join(s.value for s in i.access.sources), i.access.connections)
        for i in population.items
    }


def test_scope_selects_connections_by_name_tag_and_type() -> None:
    def names(scope: Scope) -> list[str]:
        return [c.name for c in connections_in_scope(scope, FACTS.connections)]

    assert names(Scope(connections=["pg-staging"])) == ["pg-staging"]
    assert names(Scope(connection_tags=["env=prod"])) == [
        "k8s-prod",
        "legacy-ftp",
        "pg-prod-admin",
        "pg-prod-ro",
    ]
    assert names(Scope(connection_types=["kubernetes"])) == ["k8s-prod"]
    assert len(names(Scope(groups=["db-owners"]))) == 5  # by group only: every connection


def test_the_population_is_the_union_of_hoop_and_the_directory() -> None:
    rows = _rows(Scope(connection_tags=["env=prod"], include_admins=True))
    prod = ("k8s-prod", "legacy-ftp", "pg-prod-admin", "pg-prod-ro")
    assert rows == {
        ("bob@example.com", "db-owners", "hoop+scim", ("pg-prod-admin",)),  # both systems: revoke in both
        ("bob@example.com", "engineering", "hoop", ("pg-prod-ro",)),
        ("alice@example.com", "engineering", "hoop", ("pg-prod-ro",)),
        ("zoe@example.com", "db-owners", "scim", ("pg-prod-admin",)),  # IdP only: hoop gets it at next login
        ("root@example.com", "admin", "hoop", prod),  # admins reach every connection in scope
        ("ghost@example.com", "analytics", "hoop", ("pg-prod-ro",)),  # in hoop, not in the directory
    }
    population = build_population(Scope(connection_tags=["env=prod"]), FACTS)
    assert [n.kind for n in population.notes] == ["access_control_off"]
    assert "legacy-ftp" in population.notes[0].detail
    assert population.connections == prod
    admin = next(i for i in population.items if i.access.via is AccessVia.ADMIN)
    assert admin.access.describe() == "member of admin (every connection)"
    # A group the directory has but no in-scope connection allows is not access: finance is absent.
    assert not any(i.access.group == "finance" for i in population.items)


def test_admins_can_be_left_out_and_groups_narrow_the_scope() -> None:
    rows = _rows(Scope(connection_tags=["env=prod"], include_admins=False))
    assert not any(group == "admin" for _, group, _, _ in rows)
    rows = _rows(Scope(groups=["db-owners"]))
    assert rows == {
        ("bob@example.com", "db-owners", "hoop+scim", ("pg-prod-admin",)),
        ("zoe@example.com", "db-owners", "scim", ("pg-prod-admin",)),
        ("root@example.com", "admin", "hoop", tuple(sorted(c.name for c in FACTS.connections))),
    }


def test_people_filters_by_department_manager_and_employment_type() -> None:
    base = {"connection_tags": ["env=prod"], "include_admins": False}
    data = _rows(Scope(**base, people=PeopleFilter(departments=["Data"])))
    assert {r[0] for r in data} == {"bob@example.com", "zoe@example.com"}
    managed = _rows(Scope(**base, people=PeopleFilter(managers=["ken@example.com"])))
    assert {r[0] for r in managed} == {"bob@example.com", "alice@example.com"}
    contractors = _rows(Scope(**base, people=PeopleFilter(employment_types=["contractor"])))
    assert contractors == {("zoe@example.com", "db-owners", "scim", ("pg-prod-admin",))}


def test_non_human_identities_by_group_and_binding_without_grantflows_own_key() -> None:
    scope = Scope(
        connection_tags=["env=prod"],
        identities=[IdentityKind.API_KEY, IdentityKind.AI_AGENT, IdentityKind.MACHINE_IDENTITY],
    )
    population = build_population(scope, FACTS)
    machines = {
        (i.subject.kind, i.subject.name, i.access.via, i.access.group, i.access.connections)
        for i in population.items
        if not i.subject.is_person
    }
    prod = ("k8s-prod", "legacy-ftp", "pg-prod-admin", "pg-prod-ro")
    assert machines == {
        (SubjectKind.API_KEY, "ci-deploy", AccessVia.GROUP, "platform", ("k8s-prod",)),
        (SubjectKind.AI_AGENT, "sql-helper", AccessVia.GROUP, "analytics", ("pg-prod-ro",)),
        (SubjectKind.AI_AGENT, "sql-helper", AccessVia.ADMIN, "admin", prod),
        (SubjectKind.MACHINE_IDENTITY, "etl", AccessVia.BINDING, None, ("pg-prod-ro",)),  # staging is out
    }
    key = next(i for i in population.items if i.subject.name == "ci-deploy")
    assert key.subject.owner_email == "linus@x"
    assert all(i.access.sources == (Source.HOOP,) for i in population.items if not i.subject.is_person)


def test_usage_filters_apply_once_usage_is_known() -> None:
    population = build_population(Scope(groups=["db-owners"], include_admins=False), FACTS)
    item = population.items[0]
    recent = Usage(
        window_start=NOW - timedelta(days=90),
        read_at=NOW,
        per_connection=(ConnectionUsage(connection="pg-prod-admin", last_used_at=NOW - timedelta(days=5)),),
    )
    stale = Usage(window_start=NOW - timedelta(days=90), read_at=NOW)
    unused_scope = Scope(groups=["db-owners"], unused_for=timedelta(days=30))
    assert not keep_after_usage(item, recent, unused_scope)
    assert keep_after_usage(item, stale, unused_scope)
    since_scope = Scope(groups=["db-owners"], granted_since=date(2026, 12, 1))
    assert not keep_after_usage(item, stale, since_scope)  # when it was granted is unknown: not "since"
    newer = item.model_copy(update={"access": item.access.model_copy(update={"granted_at": NOW})})
    assert keep_after_usage(newer, stale, since_scope)


def test_a_scope_of_identities_alone_reviews_no_people() -> None:
    population = build_population(Scope(identities=[IdentityKind.API_KEY]), FACTS)
    assert {i.subject.name for i in population.items} == {"ci-deploy"}


def test_service_accounts_reach_through_their_groups_while_active() -> None:
    accounts = (
        NonHumanIdentity(kind=IdentityKind.SERVICE_ACCOUNT, name="etl-client", groups=("analytics", "admin")),
        NonHumanIdentity(
            kind=IdentityKind.SERVICE_ACCOUNT, name="old-client", groups=("analytics",), active=False
        ),
    )
    facts = FACTS.model_copy(update={"identities": accounts})
    scope = Scope(
        connection_tags=["env=prod"], identities=[IdentityKind.SERVICE_ACCOUNT], include_admins=False
    )
    rows = {
        (i.subject.kind, i.subject.name, i.access.group, i.access.connections)
        for i in build_population(scope, facts).items
        if not i.subject.is_person
    }
    # an inactive service account cannot use hoop: nothing to review; admin left out by the scope
    assert rows == {(SubjectKind.SERVICE_ACCOUNT, "etl-client", "analytics", ("pg-prod-ro",))}
