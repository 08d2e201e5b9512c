"""Campaign items: recommendations with their inputs, stable ids, the population hash, and reviewer
assignment — stages in order, owners, groups, the fallback, and nobody reviewing their own access."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from domain.campaign_spec import CampaignSpec, parse_campaign_spec
from domain.campaigns import (
    PARTITIONS,
    AccessVia,
    CampaignItem,
    ConnectionUsage,
    ItemAccess,
    Source,
    Subject,
    SubjectKind,
    Usage,
    assign_reviewer,
    item_id,
    partition,
    population_hash,
    recommend,
)
from domain.identity import Person

NOW = datetime(2027, 1, 4, 9, tzinfo=UTC)
NINETY_DAYS = timedelta(days=90)


class Directory:
    def __init__(self, people: Sequence[Person]) -> None:
        self._people = {p.id: p for p in people}

    def person(self, person_id: str) -> Person | None:
        return self._people.get(person_id)

    def by_email(self, email: str) -> Person | None:
        return next((p for p in self._people.values() if p.email == email.lower()), None)

    def members(self, group: str) -> Sequence[Person]:
        return [p for p in self._people.values() if group in p.groups]


PEOPLE = Directory(
    [
        Person(id="u-1", email="grace@example.com", groups=("security",)),
        Person(id="u-2", email="ken@example.com", manager_id="u-1", groups=("db-owners",)),
        Person(id="u-3", email="bob@example.com", manager_id="u-2", groups=("db-owners",)),
        Person(id="u-4", email="old@example.com", manager_id="u-2", active=False),
        Person(id="u-5", email="orphan@example.com", groups=("security",)),
        Person(id="u-6", email="lone@example.com", manager_id="u-4", groups=("solo",)),
    ]
)


def _spec(stages: str, extra: str = "", fallback: str = "grace@example.com") -> CampaignSpec:
    return parse_campaign_spec(
        f"""\
name = "t"
owner = "ken@example.com"
duration = "14d"
default_decision = "keep"
fallback_reviewer = "{fallback}"
{extra}
[scope]
groups = ["db-owners"]
identities = ["api_key"]
{stages}
[owners]
groups = {{ db-owners = "ken@example.com" }}
connections = {{ pg-prod-admin = "bob@example.com" }}
identities = {{ ci-deploy = "bob@example.com" }}
"""
    )


def _person_item(person_id: str, email: str, manager: str | None, group: str = "db-owners") -> CampaignItem:
    subject = Subject(kind=SubjectKind.PERSON, id=person_id, name=email, manager_id=manager)
    access = ItemAccess(
        via=AccessVia.GROUP, group=group, sources=(Source.HOOP, Source.SCIM), connections=("pg-prod-ro",)
    )
    return CampaignItem.of(subject, access)


BOB = _person_item("u-3", "bob@example.com", "u-2")
KEY = CampaignItem.of(
    Subject(kind=SubjectKind.API_KEY, id="ci-deploy", name="ci-deploy", owner_email="linus@example.com"),
    ItemAccess(via=AccessVia.GROUP, group="db-owners", sources=(Source.HOOP,), connections=("pg-prod-ro",)),
)


def test_recommendation_revokes_the_unused_and_keeps_the_used_with_its_inputs() -> None:
    access = BOB.access
    unused = Usage(
        window_start=NOW - timedelta(days=200),
        read_at=NOW,
        per_connection=(ConnectionUsage(connection="pg-prod-ro", last_used_at=NOW - timedelta(days=142)),),
    )
    rec = recommend(access, unused, NINETY_DAYS)
    assert (rec.verdict, rec.sentence) == ("revoke", "revoke: unused for 142 days")
    assert rec.inputs["unused_threshold_days"] == 90
    assert rec.inputs["last_used_at"] == (NOW - timedelta(days=142)).isoformat()

    used = Usage(
        window_start=NOW - timedelta(days=90),
        read_at=NOW,
        per_connection=(
            ConnectionUsage(connection="pg-prod-ro", last_used_at=NOW - timedelta(days=3), sessions=30),
            ConnectionUsage(connection="pg-prod-admin", last_used_at=NOW - timedelta(days=40), sessions=7),
        ),
    )
    rec = recommend(access, used, NINETY_DAYS)
    assert (rec.verdict, rec.sentence) == ("keep", "keep: used 37 times since the last review")
    assert rec.inputs["sessions_since"] == 37

    never = Usage(window_start=datetime(2026, 10, 1, tzinfo=UTC), read_at=NOW)
    assert (
        recommend(access, never, NINETY_DAYS).sentence == "revoke: not used in the records (since 2026-10-01)"
    )
    fresh = access.model_copy(update={"granted_at": NOW - timedelta(days=12)})
    assert recommend(fresh, never, NINETY_DAYS).sentence == "keep: granted 12 days ago, not yet used"
    key_used = Usage(
        window_start=NOW - timedelta(days=90), read_at=NOW, key_last_used_at=NOW - timedelta(days=1)
    )
    assert recommend(KEY.access, key_used, NINETY_DAYS).sentence == "keep: last used 1 days ago"


def test_item_ids_are_stable_and_the_population_hash_sees_any_change() -> None:
    again = _person_item("u-3", "bob@example.com", "u-2")
    assert BOB.id == again.id == item_id(BOB.subject, BOB.access)
    other_group = _person_item("u-3", "bob@example.com", "u-2", group="engineering")
    assert other_group.id != BOB.id
    # All of a subject's items share a partition, so one activity applies a person's revocations in order.
    assert partition(other_group.id) == partition(BOB.id) and partition(BOB.id) in PARTITIONS
    assert population_hash([BOB, KEY]) == population_hash([KEY, BOB])
    assert population_hash([BOB, KEY]) != population_hash([BOB])
    assert population_hash([BOB, KEY]) != population_hash([other_group, KEY])
    assert "db-owners (hoop+scim) → pg-prod-ro" in BOB.access.describe()


def test_each_stage_kind_resolves_its_reviewer() -> None:
    manager_then_owner = _spec(
        '[[stages]]\nreviewers = "manager"\n[[stages]]\nreviewers = "resource_owner"\n'
    )
    first = assign_reviewer(BOB, 0, manager_then_owner, PEOPLE)
    assert (first.reviewer and first.reviewer.name, first.via, first.notes) == (
        "ken@example.com",
        "manager",
        (),
    )
    # Stage 2 asks the owner of db-owners, ken — not bob, the subject.
    second = assign_reviewer(BOB, 1, manager_then_owner, PEOPLE)
    assert (second.reviewer and second.reviewer.name, second.via) == ("ken@example.com", "resource_owner")

    group_stage = _spec('[[stages]]\nreviewers = "group"\ngroup = "security"\n')
    by_group = assign_reviewer(BOB, 0, group_stage, PEOPLE)
    assert by_group.reviewer is not None and (by_group.reviewer.kind, by_group.reviewer.id) == (
        "group",
        "security",
    )

    identity = _spec('[[stages]]\nreviewers = "identity_owner"\n')
    owner = assign_reviewer(KEY, 0, identity, PEOPLE)
    assert (owner.reviewer and owner.reviewer.name, owner.via) == ("bob@example.com", "identity_owner")


def test_the_manager_is_the_directorys_as_of_now_not_the_snapshots() -> None:
    moved = Directory(
        [Person(id="u-3", email="bob@example.com", manager_id="u-1"), *PEOPLE.members("security")]
    )
    spec = _spec('[[stages]]\nreviewers = "manager"\n')
    assigned = assign_reviewer(BOB, 0, spec, moved)  # the snapshot said ken; bob reports to grace now
    assert assigned.reviewer is not None and assigned.reviewer.name == "grace@example.com"


def test_unresolvable_items_go_to_the_next_stage_then_the_fallback_with_reasons() -> None:
    spec = _spec('[[stages]]\nreviewers = "manager"\n[[stages]]\nreviewers = "resource_owner"\n')
    # A key has no manager: stage 1 is reviewed by the owner of its group.
    key = assign_reviewer(KEY, 0, spec, PEOPLE)
    assert (key.reviewer and key.reviewer.name, key.via) == ("ken@example.com", "resource_owner")
    assert key.notes == ("manager: a non-human identity has no manager",)
    # lone's manager left and group "solo" has no owner: the fallback reviews, and the ledger knows why.
    lone = _person_item("u-6", "lone@example.com", "u-4", group="solo")
    assigned = assign_reviewer(lone, 0, spec, PEOPLE)
    assert (assigned.reviewer and assigned.reviewer.name, assigned.via) == ("grace@example.com", "fallback")
    assert assigned.notes == (
        "manager: lone@example.com's manager old@example.com is inactive",
        "resource_owner: no owner is configured for solo",
    )


@pytest.mark.parametrize("stage_kind", ["manager", "resource_owner"])
def test_nobody_reviews_their_own_access(stage_kind: str) -> None:
    # ken is the owner of db-owners and grace's report chain top: ken's own db-owners access must not
    # be reviewed by ken as owner; grace (his manager / the fallback) reviews it.
    ken = _person_item("u-2", "ken@example.com", "u-1")
    spec = _spec(f'[[stages]]\nreviewers = "{stage_kind}"\n')
    assigned = assign_reviewer(ken, 0, spec, PEOPLE)
    assert assigned.reviewer is not None and assigned.reviewer.name == "grace@example.com"
    if stage_kind == "resource_owner":
        assert assigned.notes == ("resource_owner: ken@example.com would review their own access",)
        assert assigned.via == "fallback"


def test_a_group_reviews_without_the_subject_and_nobody_independent_means_no_reviewer() -> None:
    grace = _person_item("u-1", "grace@example.com", None, group="security")
    group_stage = _spec('[[stages]]\nreviewers = "group"\ngroup = "security"\n')
    # orphan is the other security member, so the group can still review grace's access.
    assert assign_reviewer(grace, 0, group_stage, PEOPLE).via == "group"
    # With the fallback being grace herself and the owner being ken, ken reviews.
    manager = _spec('[[stages]]\nreviewers = "manager"\n')
    assigned = assign_reviewer(grace, 0, manager, PEOPLE)
    assert (assigned.reviewer and assigned.reviewer.name, assigned.via) == ("ken@example.com", "owner")
    # Nobody independent at all (ken has no manager, and is the fallback and the owner): no reviewer, and
    # every reason recorded.
    ken = _person_item("u-2", "ken@example.com", None)
    alone = _spec('[[stages]]\nreviewers = "manager"\n', fallback="ken@example.com")
    none = assign_reviewer(ken, 0, alone, Directory([Person(id="u-2", email="ken@example.com")]))
    assert none.reviewer is None and none.via == "none"
    assert len(none.notes) == 3 and all("ken@example.com" in n for n in none.notes)
