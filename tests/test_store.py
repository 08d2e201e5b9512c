"""The SQL store: migrations, the directory and requests, on SQLite and PostgreSQL (see tests/db.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from domain.identity import Person, PersonRef
from domain.policy import RolePolicy
from domain.requests import Decision, EndReason, RequestStatus, RequestView, Verdict
from store import SlotTaken, Store, StoreError
from store.engine import normalize_url
from store.schema import metadata
from tests.db import TEST_LEDGER_KEY

pytest_plugins = ["tests.db"]

T0 = datetime(2025, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
ALICE = PersonRef(id="u-alice", email="alice@example.com")
BOB = PersonRef(id="u-bob", email="bob@example.com")
DBA = PersonRef(id="u-dana", email="dana@example.com")
POLICY = RolePolicy(connection="pg-prod-admin", approver_groups=["dba"])


def view(
    request_id: str,
    *,
    requester: PersonRef = ALICE,
    connection: str = "pg-prod-admin",
    status: RequestStatus = RequestStatus.PENDING,
    created: datetime = T0,
    updated: datetime | None = None,
    **extra: object,
) -> RequestView:
    return RequestView.model_validate(
        {
            "id": request_id,
            "status": status,
            "requester": requester,
            "submitted_by": requester.email,
            "resource": "pg-prod",
            "role": "admin",
            "connection": connection,
            "reason": "incident 42",
            "requested_duration": timedelta(hours=2),
            "required_approvals": 1,
            "policy": POLICY,
            "created_at": created,
            "updated_at": updated or created,
            **extra,
        }
    )


# --- engine and migrations -------------------------------------------------------------------------


def test_postgresql_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db?options=-csearch_path%3Dx").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_empty_ledger_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="ledger key is empty"):
        Store(f"sqlite:///{tmp_path / 'x.db'}", ledger_key=b"", anchor_path=None)


def test_migrate_twice_is_harmless(store: Store) -> None:
    store.replace_directory([Person(id="u-alice", email="alice@example.com", groups=("dba",))])
    store.reserve_request(view("r1"))
    store.migrate()
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            "0008_campaign_page_indexes"
        ]
        tables = set(inspect(conn).get_table_names())
    assert {"people", "group_members", "requests", "ledger", "alembic_version", "campaigns"} <= tables
    assert store.get_person("u-alice") is not None
    assert store.get_request("r1") is not None


def test_migrations_create_exactly_the_schema_the_code_uses(store: Store) -> None:
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diffs == []


def test_concurrent_migrate_from_two_stores_on_a_fresh_database(store_url: str, tmp_path: Path) -> None:
    stores = [Store(store_url, ledger_key=TEST_LEDGER_KEY, anchor_path=None) for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(s: Store) -> None:
        try:
            barrier.wait()
            s.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        stores[0].reserve_request(view("r1"))
        assert stores[1].get_request("r1") is not None
    finally:
        for s in stores:
            s.close()


def test_each_test_gets_a_database_of_its_own(store: Store, tmp_path: Path) -> None:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            assert store.engine.url.database == str(tmp_path / "store.db")
            return
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        located = conn.execute(
            text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'ledger'")
        ).scalars()
        assert schema.startswith("gf_test_")
        assert schema in set(located)


# --- directory -------------------------------------------------------------------------------------

PEOPLE = [
    Person(id="u-alice", email="Alice@Example.com", display_name="Alice", groups=("eng", "oncall")),
    Person(id="u-bob", email="bob@example.com", display_name="Bob", manager_id="u-alice", groups=("eng",)),
    Person(id="u-carol", email="carol@example.com", active=False, groups=("eng", "dba")),
    Person(id="u-dana", email="dana@example.com", groups=("dba", "eng")),
]


def test_directory_round_trips_people_with_their_groups(store: Store) -> None:
    store.replace_directory(PEOPLE)
    assert store.get_person("u-bob") == PEOPLE[1]
    assert store.get_person("u-dana") == PEOPLE[3]  # group order kept
    assert store.get_person("nobody") is None
    assert [p.id for p in store.list_people()] == ["u-alice", "u-bob", "u-carol", "u-dana"]
    assert set(store.list_people()) == set(PEOPLE)


def test_find_person_by_email_ignores_case(store: Store) -> None:
    store.replace_directory(PEOPLE)
    assert store.find_person_by_email("alice@example.com") == PEOPLE[0]
    assert store.find_person_by_email("ALICE@EXAMPLE.COM") == PEOPLE[0]
    assert store.find_person_by_email("BoB@example.COM") == PEOPLE[1]
    assert store.find_person_by_email("eve@example.com") is None


def test_group_members_are_active_people_only(store: Store) -> None:
    store.replace_directory(PEOPLE)
    assert [p.id for p in store.group_members("eng")] == ["u-alice", "u-bob", "u-dana"]
    assert [p.id for p in store.group_members("dba")] == ["u-dana"]  # carol is inactive
    assert store.group_members("nope") == []


def test_replace_directory_replaces_everything(store: Store) -> None:
    store.replace_directory(PEOPLE)
    moved = Person(id="u-bob", email="robert@example.com", groups=("dba",))
    store.replace_directory([moved])
    assert store.list_people() == [moved]
    assert store.group_members("eng") == []
    assert store.group_members("dba") == [moved]
    assert store.find_person_by_email("bob@example.com") is None
    store.replace_directory([])
    assert store.list_people() == []


def test_duplicate_ids_are_refused_and_leave_the_directory_as_it_was(store: Store) -> None:
    store.replace_directory(PEOPLE)
    with pytest.raises(StoreError, match="u-bob"):
        store.replace_directory([PEOPLE[1], PEOPLE[1].model_copy(update={"email": "b2@example.com"})])
    assert set(store.list_people()) == set(PEOPLE)


# --- requests --------------------------------------------------------------------------------------


def test_request_round_trips_exactly(store: Store) -> None:
    full = view(
        "r1",
        status=RequestStatus.ACTIVE,
        updated=T0 + timedelta(minutes=5),
        granted_total=timedelta(hours=2),
        granted_at=T0 + timedelta(minutes=5),
        expires_at=T0 + timedelta(hours=2, minutes=5),
        eligible_approvers=[DBA],
        approvals=[
            Decision(approver=DBA, verdict=Verdict.APPROVE, channel="slack", at=T0 + timedelta(minutes=4))
        ],
    )
    store.save_request(full)
    assert store.get_request("r1") == full
    assert store.get_request("nope") is None


def test_second_open_request_for_the_same_slot_is_refused_naming_the_first(store: Store) -> None:
    store.reserve_request(view("r1"))
    with pytest.raises(SlotTaken) as caught:
        store.reserve_request(view("r2", created=T0 + timedelta(seconds=1)))
    assert caught.value.existing_request_id == "r1"
    assert caught.value.existing_status == "PENDING"
    assert "r1" in str(caught.value) and "pg-prod-admin" in str(caught.value)
    assert store.get_request("r2") is None
    # other connections and other people are independent slots
    store.reserve_request(view("r3", connection="pg-prod-ro"))
    store.reserve_request(view("r4", requester=BOB))
    open_one = store.find_open_request(ALICE.id, "pg-prod-admin")
    assert open_one is not None and open_one.id == "r1"
    assert store.find_open_request(BOB.id, "pg-prod-ro") is None


def test_slot_stays_taken_while_active_and_is_freed_by_a_terminal_status(store: Store) -> None:
    store.reserve_request(view("r1"))
    assert store.save_request(view("r1", status=RequestStatus.ACTIVE, updated=T0 + timedelta(minutes=1)))
    with pytest.raises(SlotTaken) as caught:
        store.reserve_request(view("r2"))
    assert caught.value.existing_status == "ACTIVE"
    ended = view(
        "r1", status=RequestStatus.ENDED, end_reason=EndReason.EXPIRED, updated=T0 + timedelta(hours=2)
    )
    assert store.save_request(ended)
    assert store.find_open_request(ALICE.id, "pg-prod-admin") is None
    store.reserve_request(view("r2", created=T0 + timedelta(hours=3)))
    again = store.find_open_request(ALICE.id, "pg-prod-admin")
    assert again is not None and again.id == "r2"


def test_reserving_the_same_request_again_is_a_no_op(store: Store) -> None:
    store.reserve_request(view("r1"))
    store.reserve_request(view("r1"))  # an activity retry
    assert [v.id for v in store.list_requests()] == ["r1"]
    with pytest.raises(StoreError, match="r1"):
        store.reserve_request(view("r1", connection="other"))


def test_terminal_request_never_moves_back(store: Store) -> None:
    store.reserve_request(view("r1"))
    assert store.save_request(view("r1", status=RequestStatus.DENIED, updated=T0 + timedelta(minutes=2)))
    late = view("r1", status=RequestStatus.ACTIVE, updated=T0 + timedelta(minutes=3))
    assert store.save_request(late) is False
    stored = store.get_request("r1")
    assert stored is not None and stored.status is RequestStatus.DENIED
    assert store.find_open_request(ALICE.id, "pg-prod-admin") is None
    store.reserve_request(view("r2"))  # the slot stayed free


def test_stale_view_is_ignored(store: Store) -> None:
    store.reserve_request(view("r1"))
    active = view("r1", status=RequestStatus.ACTIVE, updated=T0 + timedelta(minutes=5))
    assert store.save_request(active)
    stale = view("r1", status=RequestStatus.PENDING, updated=T0 + timedelta(minutes=1), reason="old")
    assert store.save_request(stale) is False
    assert store.get_request("r1") == active
    # an older terminal view cannot overwrite a newer one either
    revoked = view("r1", status=RequestStatus.ENDED, updated=T0 + timedelta(hours=1), reason="newest")
    assert store.save_request(revoked)
    older_terminal = view("r1", status=RequestStatus.FAILED, updated=T0 + timedelta(minutes=30))
    assert store.save_request(older_terminal) is False
    assert store.get_request("r1") == revoked
    # the same view again (a retry) is accepted
    assert store.save_request(revoked)


def test_naive_and_offset_timestamps_compare_as_utc(store: Store) -> None:
    later_in_paris = (T0 + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=1)))
    store.save_request(view("r1", status=RequestStatus.ACTIVE, updated=later_in_paris))
    naive_earlier = T0.replace(tzinfo=None)
    assert store.save_request(view("r1", status=RequestStatus.PENDING, updated=naive_earlier)) is False
    stored = store.get_request("r1")
    assert stored is not None and stored.status is RequestStatus.ACTIVE


def test_save_inserts_an_unreserved_request(store: Store) -> None:
    assert store.save_request(view("r1", status=RequestStatus.ACTIVE))
    with pytest.raises(SlotTaken):
        store.reserve_request(view("r2"))


def test_list_requests_filters_and_orders_newest_first(store: Store) -> None:
    rows = [
        view("a1", created=T0),
        view("a2", created=T0 + timedelta(minutes=1), connection="c2", status=RequestStatus.ACTIVE),
        view("b1", created=T0 + timedelta(minutes=2), requester=BOB),
        view("a3", created=T0 + timedelta(minutes=3), connection="c3", status=RequestStatus.DENIED),
    ]
    for row in rows:
        store.reserve_request(row)
    assert [v.id for v in store.list_requests()] == ["a3", "b1", "a2", "a1"]
    assert [v.id for v in store.list_requests(requester_id=ALICE.id)] == ["a3", "a2", "a1"]
    assert [v.id for v in store.list_requests(statuses=[RequestStatus.PENDING])] == ["b1", "a1"]
    assert [
        v.id
        for v in store.list_requests(
            requester_id=ALICE.id, statuses=[RequestStatus.ACTIVE, RequestStatus.DENIED]
        )
    ] == ["a3", "a2"]
    assert [v.id for v in store.list_requests(limit=2)] == ["a3", "b1"]
    assert store.list_requests(statuses=[]) == []
    assert store.list_requests(requester_id="nobody") == []


def _race(stores: list[Store], request_ids: list[str], connection: str) -> tuple[list[str], list[SlotTaken]]:
    """Reserve every id at the same moment (one thread each) for ALICE on ``connection``."""
    barrier = threading.Barrier(len(request_ids))
    won: list[str] = []
    lost: list[SlotTaken] = []
    other: list[BaseException] = []

    def attempt(request_id: str, s: Store) -> None:
        barrier.wait()
        try:
            s.reserve_request(view(request_id, connection=connection))
            won.append(request_id)
        except SlotTaken as exc:
            lost.append(exc)
        except BaseException as exc:
            other.append(exc)

    threads = [
        threading.Thread(target=attempt, args=(rid, stores[i % len(stores)]))
        for i, rid in enumerate(request_ids)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert other == []
    return won, lost


@pytest.mark.parametrize("stores", [1, 2], ids=["one-store", "two-stores"])
def test_concurrent_reserve_exactly_one_wins(make_store: Callable[..., Store], stores: int) -> None:
    pool = [make_store() for _ in range(stores)]
    for round_no in range(8):
        connection = f"conn-{round_no}"
        ids = [f"r{round_no}-a", f"r{round_no}-b"]
        won, lost = _race(pool, ids, connection)
        assert len(won) == 1 and len(lost) == 1
        assert lost[0].existing_request_id == won[0]
        open_one = pool[0].find_open_request(ALICE.id, connection)
        assert open_one is not None and open_one.id == won[0]
        (loser,) = set(ids) - set(won)
        assert pool[0].get_request(loser) is None
