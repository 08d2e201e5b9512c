"""The hoop stand-in over real HTTP: the behaviours of hoop that grantflow relies on (``sandbox/hoop.py``)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sandbox.hoop import DEFAULT_API_KEY, NANOS, HoopAccessDenied, HoopStandIn, ManualClock

ADMIN_KEY = DEFAULT_API_KEY
DBA_KEY = "hpk_dba_owners"  # a key that is only in the reviewer group dba-owners
SRE_KEY = "hpk_sre"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def seed(hoop: HoopStandIn) -> None:
    hoop.add_user("alice@corp.example", "Alice", groups=["eng"])
    hoop.add_user("bob@corp.example", "Bob", groups=["dba", "dba-owners"], slack_id="U0BOB")
    hoop.add_user("carol@corp.example", "Carol", groups=["sre", "eng"])
    hoop.add_user("newbie@corp.example", "Newbie", groups=["eng"], signed_in=False)
    hoop.add_connection("pg-prod", access_groups=["dba"], reviewers=["dba-owners"])
    hoop.add_connection(
        "pg-staging", access_groups=["eng"], reviewers=["dba-owners", "sre"], min_review_approvals=1
    )
    hoop.add_connection("shell", type="custom", subtype="", access_groups=[], reviewers=[])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "hoop" / "state.json"


@pytest.fixture
def hoop(clock: ManualClock, state_file: Path) -> Iterator[HoopStandIn]:
    stand_in = HoopStandIn(
        state_file=state_file,
        clock=clock,
        api_keys={ADMIN_KEY: ["admin"], DBA_KEY: ["dba-owners"], SRE_KEY: ["sre"]},
    )
    seed(stand_in)
    stand_in.start()
    yield stand_in
    stand_in.stop()


# one TLS context for every client: building one per client costs more than the requests (plain HTTP here)
_TLS = ssl.create_default_context()


def as_key(hoop: HoopStandIn, key: str | None) -> httpx.Client:
    """A client of the stand-in authenticating with an API key or a person's token (None: no auth)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=hoop.api_url, headers=headers, verify=_TLS)


@pytest.fixture
def api(hoop: HoopStandIn) -> Iterator[httpx.Client]:
    with as_key(hoop, ADMIN_KEY) as client:
        yield client


def provision(
    api: httpx.Client, user: str = "alice@corp.example", conn: str = "pg-prod", **extra: object
) -> str:
    body = {"user_email": user, "connection": conn, "access_duration_sec": 3600, **extra}
    response = api.post("/sessions/provision", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["session_id"])


# ---------------------------------------------------------------------- provision


def test_provision_answers_202_with_an_approved_jit_review_in_nanoseconds(api: httpx.Client) -> None:
    response = api.post(
        "/sessions/provision",
        json={
            "user_email": "alice@corp.example",
            "connection": "pg-prod",
            "access_duration_sec": 5400,
            "correlation_id": "wf-1:grant",
            "metadata": {"ticket": "ACC-1"},
        },
    )
    assert response.status_code == 202
    body = response.json()
    assert body == {"session_id": body["session_id"], "user_email": "alice@corp.example", "has_review": False}

    session = api.get(f"/sessions/{body['session_id']}").json()
    assert session["status"] == "ready"
    assert session["correlation_id"] == "wf-1:grant"
    assert session["metadata"] == {"ticket": "ACC-1"}
    assert session["end_date"] is None
    review = session["review"]
    assert review["type"] == "jit"
    assert review["status"] == "APPROVED"
    assert review["access_duration"] == 5400 * NANOS
    assert review["revoke_at"] == iso(T0 + timedelta(seconds=5400))
    assert [(g["group"], g["status"]) for g in review["review_groups_data"]] == [("dba-owners", "APPROVED")]
    assert review["review_groups_data"][0]["reviewed_by"]["name"] == "api-key-1"

    by_id = api.get(f"/reviews/{review['id']}").json()
    assert by_id["session"] == session["id"]
    assert api.get(f"/reviews/{session['id']}").json()["id"] == review["id"]  # by session id too


def test_provision_never_deduplicates_and_correlation_id_only_filters(api: httpx.Client) -> None:
    first = provision(api, correlation_id="wf-2:grant")
    second = provision(api, correlation_id="wf-2:grant")
    provision(api, correlation_id="other")
    assert first != second
    listed = api.get("/sessions", params={"correlation_id": "wf-2:grant"}).json()
    assert {s["id"] for s in listed["data"]} == {first, second}
    assert listed["total"] == 2
    assert listed["data"][0]["review"]["id"] != listed["data"][1]["review"]["id"]


def test_provision_beyond_48h_leaves_an_orphan_and_answers_500(api: httpx.Client, hoop: HoopStandIn) -> None:
    response = api.post(
        "/sessions/provision",
        json={
            "user_email": "alice@corp.example",
            "connection": "pg-prod",
            "access_duration_sec": 48 * 3600 + 1,
            "correlation_id": "too-long",
        },
    )
    assert response.status_code == 500
    assert "48h" in response.json()["message"]
    orphans = hoop.sessions(correlation_id="too-long")
    assert len(orphans) == 1 and orphans[0]["review"] is None
    with pytest.raises(HoopAccessDenied):
        hoop.connect("alice@corp.example", "pg-prod")
    assert provision(api, correlation_id="exactly-48h", access_duration_sec=48 * 3600)


def test_provision_for_someone_who_never_signed_in_is_400(api: httpx.Client, hoop: HoopStandIn) -> None:
    response = api.post(
        "/sessions/provision", json={"user_email": "newbie@corp.example", "connection": "pg-prod"}
    )
    assert response.status_code == 400
    assert response.json() == {"message": "user not found: newbie@corp.example"}
    assert api.get("/users/newbie@corp.example").status_code == 404
    hoop.sign_in("newbie@corp.example")
    assert provision(api, user="newbie@corp.example")
    assert api.get("/users/newbie@corp.example").json()["groups"] == ["eng"]


def test_provision_unknown_connection_and_bad_bodies(api: httpx.Client, hoop: HoopStandIn) -> None:
    unknown = api.post("/sessions/provision", json={"user_email": "alice@corp.example", "connection": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "connection not found"
    assert api.post("/sessions/provision", json={"connection": "pg-prod"}).status_code == 422
    assert api.post("/sessions/provision", content=b"{not json").status_code == 422
    assert hoop.sessions() == []


def test_provision_without_a_duration_uses_the_connection_or_30_minutes(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    sid = provision(api, access_duration_sec=0)
    assert hoop.session(sid)["review"]["access_duration"] == 1800 * NANOS
    hoop.add_connection(
        "pg-prod", access_groups=["dba"], reviewers=["dba-owners"], jit_access_duration_sec=600
    )
    sid = api.post(
        "/sessions/provision", json={"user_email": "alice@corp.example", "connection": "pg-prod"}
    ).json()["session_id"]
    assert hoop.session(sid)["review"]["access_duration"] == 600 * NANOS


def test_provision_with_approved_reviewers_leaves_other_groups_pending(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    response = api.post(
        "/sessions/provision",
        json={"user_email": "alice@corp.example", "connection": "pg-prod", "approved_reviewers": []},
    )
    assert response.status_code == 202 and response.json()["has_review"] is True
    review = hoop.session(response.json()["session_id"])["review"]
    assert review["status"] == "PENDING" and review["revoke_at"] is None


# ---------------------------------------------------------------------- auth


def test_auth_bearer_or_api_key_header_else_401(hoop: HoopStandIn) -> None:
    with as_key(hoop, None) as anonymous:
        assert anonymous.get("/connections").status_code == 401
        assert anonymous.get("/connections").json() == {"message": "unauthorized"}
        for headers in (
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {ADMIN_KEY}"},
            {"Api-Key": "x"},
        ):
            assert anonymous.get("/connections", headers=headers).status_code == 401
        assert (
            anonymous.get("/connections", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
        )
        assert anonymous.get("/connections", headers={"Api-Key": ADMIN_KEY}).status_code == 200


def test_provision_accepts_only_api_keys_and_admin_routes_need_admin(hoop: HoopStandIn) -> None:
    token = hoop.issue_user_token("bob@corp.example")
    body = {"user_email": "alice@corp.example", "connection": "pg-prod"}
    with as_key(hoop, token) as person:
        assert person.post("/sessions/provision", json=body).status_code == 403
        assert person.get("/connections").status_code == 200
    with as_key(hoop, DBA_KEY) as dba:
        assert dba.post("/sessions/provision", json=body).status_code == 403
        assert dba.get("/users").status_code == 403
    assert hoop.sessions() == []


# ---------------------------------------------------------------------- grants and sessions


def test_newest_approved_grant_wins(api: httpx.Client, hoop: HoopStandIn, clock: ManualClock) -> None:
    long = provision(api, access_duration_sec=8 * 3600)
    clock.advance(minutes=1)
    short = provision(api, access_duration_sec=600)
    hoop.connect("alice@corp.example", "pg-prod")
    clock.advance(minutes=20)  # the short (newest) grant is over: it wins, so no access despite the long one
    with pytest.raises(HoopAccessDenied, match="expired"):
        hoop.connect("alice@corp.example", "pg-prod")
    # revoking the newest re-enables the older grant that has not expired
    short_review = hoop.session(short)["review"]["id"]
    assert api.put(f"/reviews/{short_review}", json={"status": "REVOKED"}).status_code == 200
    sid = hoop.connect("alice@corp.example", "pg-prod")
    assert hoop.session(sid)["review"]["id"] == hoop.session(long)["review"]["id"]


def test_revoke_blocks_new_sessions_but_open_ones_stay_until_killed(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    grant = provision(api)
    review_id = hoop.session(grant)["review"]["id"]
    live = hoop.connect("alice@corp.example", "pg-prod")
    assert hoop.session(live)["status"] == "open"
    assert hoop.session(live)["review"]["id"] == review_id

    clock.advance(minutes=5)
    revoked = api.put(f"/reviews/{review_id}", json={"status": "REVOKED"})
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "REVOKED"
    assert revoked.json()["revoke_at"] == iso(clock())
    with pytest.raises(HoopAccessDenied):
        hoop.connect("alice@corp.example", "pg-prod")
    assert hoop.session(live)["status"] == "open"  # revoking did not touch the running session

    subject = hoop.user("alice@corp.example")["id"]
    rows = api.get("/sessions", params={"user": subject, "connection": "pg-prod"}).json()["data"]
    open_ids = [r["id"] for r in rows if r["status"] == "open"]
    assert open_ids == [live]
    killed = api.post(f"/sessions/{live}/kill")
    assert killed.status_code == 204 and killed.content == b""
    after = api.get(f"/sessions/{live}").json()
    assert after["status"] == "done" and after["end_date"] == iso(clock())
    again = api.post(f"/sessions/{live}/kill")
    assert again.status_code == 400
    assert api.post("/sessions/00000000-0000-4000-8000-000000000000/kill").status_code == 404
    assert api.put(f"/reviews/{review_id}", json={"status": "REVOKED"}).json() == {
        "message": "review is in wrong state"
    }


def test_connect_through_standing_access_and_the_sandbox_endpoint(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    sid = hoop.connect("bob@corp.example", "pg-prod")  # group dba is in pg-prod's access list
    assert hoop.session(sid)["review"] is None
    ok = api.post("/_sandbox/connect", json={"user_email": "bob@corp.example", "connection": "pg-prod"})
    assert ok.status_code == 201 and set(ok.json()) == {"session_id"}
    refused = api.post(
        "/_sandbox/connect", json={"user_email": "alice@corp.example", "connection": "pg-prod"}
    )
    assert refused.status_code == 403
    assert "alice@corp.example has no approved jit grant for pg-prod" in refused.json()["message"]
    hoop.add_user("alice@corp.example", "Alice", groups=["eng"], status="inactive")
    with pytest.raises(HoopAccessDenied, match="inactive"):
        hoop.connect("alice@corp.example", "pg-staging")
    with pytest.raises(HoopAccessDenied, match="never signed in"):
        hoop.connect("newbie@corp.example", "pg-staging")
    hoop.disconnect(sid)
    assert hoop.session(sid)["status"] == "done"


def test_injected_clock_makes_a_grant_expire(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    grant = provision(api, access_duration_sec=3600)
    hoop.connect("alice@corp.example", "pg-prod")
    clock.advance(minutes=59, seconds=59)
    hoop.connect("alice@corp.example", "pg-prod")
    clock.advance(seconds=1)  # revoke_at == now: hoop allows only while revoke_at > now
    with pytest.raises(HoopAccessDenied, match="expired at 2026-03-02T10:00:00Z"):
        hoop.connect("alice@corp.example", "pg-prod")
    assert hoop.session(grant)["review"]["status"] == "APPROVED"  # expiry changes nothing on the review


def test_sub_second_timestamps_sort_as_times(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    first = hoop.connect("bob@corp.example", "pg-prod")  # 09:00:00Z
    clock.advance(milliseconds=500)
    second = hoop.connect("bob@corp.example", "pg-prod")  # 09:00:00.500000Z sorts before "…00Z" as text
    assert [s["id"] for s in api.get("/sessions").json()["data"]] == [second, first]


# ---------------------------------------------------------------------- reviews


def test_review_rules(api: httpx.Client, hoop: HoopStandIn, clock: ManualClock) -> None:
    pending = hoop.create_pending_review("alice@corp.example", "pg-prod", duration_sec=900)
    assert (
        api.get("/sessions", params={"review.status": "PENDING"}).json()["data"][0]["id"]
        == pending.session_id
    )
    # REVOKED only on an approved review
    assert api.put(f"/reviews/{pending.review_id}", json={"status": "REVOKED"}).status_code == 400
    # the owner cannot approve their own
    hoop.add_user("alice@corp.example", "Alice", groups=["eng", "dba-owners"])
    token = hoop.issue_user_token("alice@corp.example")
    with as_key(hoop, token) as alice:
        own = alice.put(f"/reviews/{pending.review_id}", json={"status": "APPROVED"})
    assert own.status_code == 403
    # a caller outside the review's groups (and not admin) is refused
    with as_key(hoop, SRE_KEY) as sre:
        outsider = sre.put(f"/reviews/{pending.review_id}", json={"status": "APPROVED"})
        assert outsider.status_code == 403
        assert "dba-owners" in outsider.json()["message"]
    assert api.put(f"/reviews/{pending.review_id}", json={"status": "MAYBE"}).status_code == 422
    assert (
        api.put("/reviews/00000000-0000-4000-8000-000000000000", json={"status": "APPROVED"}).status_code
        == 404
    )

    clock.advance(minutes=10)
    with as_key(hoop, DBA_KEY) as dba:
        approved = dba.put(f"/reviews/{pending.review_id}", json={"status": "APPROVED"})
    assert approved.status_code == 200
    body = approved.json()
    assert body["status"] == "APPROVED"
    assert body["revoke_at"] == iso(clock() + timedelta(seconds=900))  # counted from the approval
    assert body["review_groups_data"][0]["reviewed_by"]["name"] == "api-key-2"
    # APPROVED may still be rejected; then it is final
    rejected = api.put(f"/reviews/{pending.review_id}", json={"status": "REJECTED", "rejection_reason": "no"})
    assert rejected.json()["status"] == "REJECTED" and rejected.json()["rejection_reason"] == "no"
    assert api.put(f"/reviews/{pending.review_id}", json={"status": "APPROVED"}).status_code == 400


def test_approval_count_follows_the_code_not_the_prose(api: httpx.Client, hoop: HoopStandIn) -> None:
    one_of_two = hoop.create_pending_review(
        "alice@corp.example", "pg-staging", groups=["dba-owners", "sre"], min_approvals=1
    )
    # pg-prod sets no min_review_approvals: every group must approve
    all_of_two = hoop.create_pending_review("alice@corp.example", "pg-prod", groups=["dba-owners", "sre"])
    with as_key(hoop, SRE_KEY) as sre:
        first = sre.put(f"/reviews/{one_of_two.review_id}", json={"status": "APPROVED"}).json()
        assert first["status"] == "APPROVED"  # min(2 groups, min_approvals 1) = 1
        statuses = {g["group"]: g["status"] for g in first["review_groups_data"]}
        assert statuses == {"dba-owners": "PENDING", "sre": "APPROVED"}
        assert (
            sre.put(f"/reviews/{all_of_two.review_id}", json={"status": "APPROVED"}).json()["status"]
            == "PENDING"
        )
    with as_key(hoop, DBA_KEY) as dba:
        assert (
            dba.put(f"/reviews/{all_of_two.review_id}", json={"status": "APPROVED"}).json()["status"]
            == "APPROVED"
        )


def test_one_rejection_ends_a_review_and_admin_decides_for_every_group(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    review = hoop.create_pending_review("alice@corp.example", "pg-staging", groups=["dba-owners", "sre"])
    with as_key(hoop, SRE_KEY) as sre:
        assert (
            sre.put(f"/reviews/{review.review_id}", json={"status": "REJECTED"}).json()["status"]
            == "REJECTED"
        )
    assert api.put(f"/reviews/{review.review_id}", json={"status": "APPROVED"}).status_code == 400

    other = hoop.create_pending_review("alice@corp.example", "pg-staging", groups=["dba-owners", "sre"])
    body = api.put(f"/reviews/{other.review_id}", json={"status": "APPROVED"}).json()
    assert body["status"] == "APPROVED"
    assert {g["status"] for g in body["review_groups_data"]} == {"APPROVED"}


def test_onetime_reviews_cannot_be_revoked(api: httpx.Client, hoop: HoopStandIn) -> None:
    review = hoop.create_pending_review("alice@corp.example", "pg-prod", type="onetime", command="SELECT 1")
    session = hoop.session(review.session_id)
    assert session["verb"] == "exec" and session["script"] == {"data": "SELECT 1"}
    assert session["review"]["access_duration"] == 0
    assert api.put(f"/reviews/{review.review_id}", json={"status": "APPROVED"}).json()["status"] == "APPROVED"
    assert api.put(f"/reviews/{review.review_id}", json={"status": "REVOKED"}).status_code == 400
    listed = api.get("/reviews").json()
    assert [r["id"] for r in listed] == [review.review_id]


# ---------------------------------------------------------------------- users, connections, rules


def test_put_user_replaces_the_whole_user(api: httpx.Client) -> None:
    bob = api.get("/users/bob@corp.example").json()
    assert bob["slack_id"] == "U0BOB" and bob["name"] == "Bob"
    replaced = api.put(f"/users/{bob['id']}", json={"email": "bob@corp.example", "groups": ["dba"]})
    assert replaced.status_code == 200
    assert replaced.json() == {
        "id": bob["id"],
        "email": "bob@corp.example",
        "name": "",
        "status": "active",
        "role": "standard",
        "slack_id": "",
        "groups": ["dba"],
    }
    # read, modify, write back keeps everything else
    user = api.get(f"/users/{bob['id']}").json()
    user.update(name="Bob", slack_id="U0BOB", status="inactive")
    user.pop("id"), user.pop("role")
    assert api.put("/users/bob@corp.example", json=user).json()["status"] == "inactive"
    assert api.put("/users/bob@corp.example", json={"name": "no email"}).status_code == 422
    assert (
        api.put("/users/bob@corp.example", json={"email": "bob@corp.example", "status": "gone"}).status_code
        == 422
    )
    assert api.put("/users/nobody@corp.example", json={"email": "nobody@corp.example"}).status_code == 404
    assert api.get("/users/groups").json() == ["dba", "eng", "sre"]
    assert [u["email"] for u in api.get("/users").json()] == [
        "alice@corp.example",
        "bob@corp.example",
        "carol@corp.example",
    ]


def test_connections_plugins_and_rules(api: httpx.Client, hoop: HoopStandIn) -> None:
    for n in range(7):
        hoop.add_connection(f"extra-{n}", tags={"env": "dev" if n % 2 else "prod"})
    everything = api.get("/connections").json()
    assert isinstance(everything, list) and len(everything) == 10
    assert api.get("/connections", params={"type": "custom"}).json()[0]["name"] == "shell"
    assert len(api.get("/connections", params={"tag_selector": "env=prod"}).json()) == 4
    assert len(api.get("/connections", params={"tag_selector": "env!=prod"}).json()) == 6
    page = api.get("/connections", params={"page": 2, "page_size": 4}).json()
    assert page["pages"] == {"page": 2, "size": 4, "total": 10}
    assert [c["name"] for c in page["data"]] == ["extra-4", "extra-5", "extra-6", "pg-prod"]
    assert api.get("/connections", params={"page_size": 101}).status_code == 422

    plugin = api.get("/plugins/access_control").json()
    assert {c["name"]: c["config"] for c in plugin["connections"]} == {
        "pg-prod": ["dba"],
        "pg-staging": ["eng"],
    }
    assert api.get("/plugins/slack").status_code == 404

    hoop.add_access_rule(
        "prod-jit", connection_names=["pg-prod"], reviewers_groups=["dba-owners"], min_approvals=1
    )
    hoop.add_access_rule("staging", connection_names=["pg-staging"], reviewers_groups=["sre"])
    rules = api.get("/access-requests/rules").json()
    assert rules["pages"] == {"page": 1, "size": 0, "total": 2}
    assert [r["name"] for r in rules["data"]] == ["prod-jit", "staging"]
    assert rules["data"][0]["access_type"] == "jit" and rules["data"][0]["min_approvals"] == 1
    second = api.get("/access-requests/rules", params={"page": 2, "page_size": 1}).json()
    assert [r["name"] for r in second["data"]] == ["staging"]


# ---------------------------------------------------------------------- listing


def test_session_listing_pages_newest_first_with_filters(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    made = []
    for n in range(25):
        made.append(hoop.connect("carol@corp.example" if n % 5 else "alice@corp.example", "pg-staging"))
        clock.advance(minutes=1)
    newest_first = list(reversed(made))
    first = api.get("/sessions", params={"limit": 10}).json()
    assert [s["id"] for s in first["data"]] == newest_first[:10]
    assert first["has_next_page"] is True and first["total"] == 25 and first["total_is_capped"] is False
    last = api.get("/sessions", params={"limit": 10, "offset": 20}).json()
    assert [s["id"] for s in last["data"]] == newest_first[20:]
    assert last["has_next_page"] is False
    assert api.get("/sessions", params={"limit": 10, "count": "none"}).json()["total"] is None

    alice = hoop.user("alice@corp.example")["id"]
    mine = api.get("/sessions", params={"user": alice}).json()
    assert mine["total"] == 5 and {s["user"] for s in mine["data"]} == {"alice@corp.example"}
    assert (
        api.get("/sessions", params={"user": "alice@corp.example"}).json()["total"] == 0
    )  # subject, not email
    window = api.get(
        "/sessions",
        params={"start_date": iso(T0 + timedelta(minutes=3)), "end_date": iso(T0 + timedelta(minutes=5))},
    ).json()
    assert [s["id"] for s in window["data"]] == [made[5], made[4], made[3]]
    # hoop has no status filter: the parameter is ignored, callers filter rows themselves
    assert api.get("/sessions", params={"status": "done"}).json()["total"] == 25

    assert api.get("/sessions", params={"limit": 101}).status_code == 422
    assert api.get("/sessions", params={"offset": 10001}).status_code == 422
    assert api.get("/sessions", params={"limit": "many"}).status_code == 422
    assert api.get("/sessions", params={"start_date": "yesterday"}).status_code == 422


def test_a_person_sees_only_their_own_sessions(hoop: HoopStandIn) -> None:
    hoop.connect("bob@corp.example", "pg-prod")
    alice = hoop.connect("alice@corp.example", "pg-staging")
    token = hoop.issue_user_token("alice@corp.example")
    with as_key(hoop, token) as person:
        assert [s["id"] for s in person.get("/sessions").json()["data"]] == [alice]
        bobs = hoop.sessions(user_email="bob@corp.example")[0]["id"]
        assert person.get(f"/sessions/{bobs}").status_code == 403


# ---------------------------------------------------------------------- faults, calls, persistence


def test_fault_injection_before_and_after_the_write(api: httpx.Client, hoop: HoopStandIn) -> None:
    hoop.fail_next("/sessions/provision", status=503, retry_after=7)
    before = api.post(
        "/sessions/provision", json={"user_email": "alice@corp.example", "connection": "pg-prod"}
    )
    assert before.status_code == 503 and before.headers["Retry-After"] == "7"
    assert hoop.sessions() == []

    hoop.fail_next("/api/sessions/provision", status=500, after_write=True)
    after = api.post(
        "/sessions/provision", json={"user_email": "alice@corp.example", "connection": "pg-prod"}
    )
    assert after.status_code == 500
    assert len(hoop.sessions()) == 1  # the write happened

    hoop.fail_next(
        "/sessions", status=429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT", count=2, method="GET"
    )
    assert api.get("/sessions").status_code == 429
    assert api.get("/sessions").headers["Retry-After"] == "Wed, 21 Oct 2026 07:28:00 GMT"
    assert api.get("/sessions").status_code == 200

    statuses = [(c.method, c.path, c.status, c.injected) for c in hoop.calls]
    assert statuses == [
        ("POST", "/api/sessions/provision", 503, True),
        ("POST", "/api/sessions/provision", 500, True),
        ("GET", "/api/sessions", 429, True),
        ("GET", "/api/sessions", 429, True),
        ("GET", "/api/sessions", 200, False),
    ]
    assert hoop.calls[0].json == {"user_email": "alice@corp.example", "connection": "pg-prod"}


def test_calls_are_recorded(api: httpx.Client, hoop: HoopStandIn) -> None:
    api.get("/sessions", params={"limit": 5})
    api.get("/nothing-here")
    call = hoop.calls[0]
    assert (call.method, call.path, call.query, call.json, call.status) == (
        "GET",
        "/api/sessions",
        {"limit": "5"},
        None,
        200,
    )
    assert call.response["data"] == []
    assert hoop.calls[1].status == 404


def test_state_survives_a_restart(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock, state_file: Path
) -> None:
    grant = provision(api, correlation_id="wf-9:grant")
    live = hoop.connect("alice@corp.example", "pg-prod")
    pending = hoop.create_pending_review("carol@corp.example", "pg-staging")
    hoop.stop()
    saved = json.loads(state_file.read_text())
    assert grant in saved["sessions"] and not list(state_file.parent.glob("*.tmp"))

    again = HoopStandIn(state_file=state_file, clock=clock, api_keys={ADMIN_KEY: ["admin"]})
    again.start()
    try:
        with as_key(again, ADMIN_KEY) as client:
            rows = client.get("/sessions", params={"correlation_id": "wf-9:grant"}).json()["data"]
            assert [r["id"] for r in rows] == [grant]
            assert client.get(f"/sessions/{live}").json()["status"] == "open"
            assert client.get(f"/reviews/{pending.review_id}").json()["status"] == "PENDING"
        again.connect("alice@corp.example", "pg-prod")  # the grant still allows new sessions
    finally:
        again.stop()


def test_bad_clock_and_unknown_state_version_are_refused(tmp_path: Path) -> None:
    naive = HoopStandIn(clock=lambda: datetime(2026, 1, 1))  # deliberately naive
    with pytest.raises(ValueError, match="timezone-aware"):
        naive.now()
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="unknown state version"):
        HoopStandIn(state_file=state)
