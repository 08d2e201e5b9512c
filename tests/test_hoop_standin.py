"""The hoop stand-in over real HTTP: the behaviours of hoop that grantflow relies on (``sandbox/hoop/``)."""

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
BOTH_KEY = "hpk_dba_owners_and_sre"  # in both reviewer groups of pg-staging, which needs one approval
FORCE_GROUP = (
    "grantflow"  # the force-approval group grantflow's key is given (sandbox/seed.py GRANTFLOW_GROUP)
)
FORCE_KEY = "hpk_grantflow"  # grantflow's key: admin and the force-approval group, no reviewer group
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def seed(hoop: HoopStandIn) -> None:
    hoop.add_user("alice@corp.example", "Alice", groups=["eng"])
    hoop.add_user("bob@corp.example", "Bob", groups=["dba", "dba-owners"], slack_id="U0BOB")
    hoop.add_user("carol@corp.example", "Carol", groups=["sre", "eng"])
    hoop.add_user("newbie@corp.example", "Newbie", groups=["eng"], signed_in=False)
    # models/connections.go: access control decides who reaches a connection at all; the review plugin
    # (``reviewers``) then reviews everyone on it, standing members included (review.go).
    hoop.add_connection("pg-prod", access_groups=["dba", "eng"], reviewers=["dba-owners"])
    hoop.add_connection(
        "pg-staging", access_groups=["eng"], reviewers=["dba-owners", "sre"], min_review_approvals=1
    )
    hoop.add_connection("shell", type="custom", subtype="", access_groups=[], reviewers=[])  # admins only
    # standing access: reachable by a group, no rule and no review plugin, so no review
    hoop.add_connection("dba-console", access_groups=["dba"])
    hoop.add_connection("eng-shell", type="custom", subtype="", access_groups=["eng"])


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
        api_keys={
            ADMIN_KEY: ["admin"],
            DBA_KEY: ["dba-owners"],
            SRE_KEY: ["sre"],
            BOTH_KEY: ["dba-owners", "sre"],
            FORCE_KEY: ["admin", FORCE_GROUP],
        },
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
    # session.go Provision names the *caller* (ctx.UserEmail), not the missing user: clients must not parse it
    assert response.json() == {"message": "user api-key-1 not found for exec"}
    assert api.get("/users/newbie@corp.example").status_code == 404
    hoop.sign_in("newbie@corp.example")
    assert provision(api, user="newbie@corp.example")
    assert api.get("/users/newbie@corp.example").json()["groups"] == ["eng"]


def test_provision_unknown_connection_and_bad_bodies(api: httpx.Client, hoop: HoopStandIn) -> None:
    unknown = api.post("/sessions/provision", json={"user_email": "alice@corp.example", "connection": "nope"})
    assert unknown.status_code == 400  # session.go Provision: a connection it cannot see is a 400
    assert unknown.json()["message"] == "connection nope not found"
    assert api.post("/sessions/provision", json={"connection": "pg-prod"}).status_code == 422
    assert api.post("/sessions/provision", content=b"{not json").status_code == 422
    assert hoop.sessions() == []
    # the admin key sees every connection (access control is the caller's), whoever the grant is for
    shell = api.post("/sessions/provision", json={"user_email": "bob@corp.example", "connection": "shell"})
    assert shell.status_code == 202


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
    # session.go createApprovedReview sets a jit review's revoke_at at creation, even when left PENDING
    assert review["status"] == "PENDING" and review["revoke_at"] == iso(T0 + timedelta(minutes=30))


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
    provision(api, access_duration_sec=8 * 3600)
    clock.advance(minutes=1)
    short = provision(api, access_duration_sec=600)
    hoop.connect("alice@corp.example", "pg-prod")
    clock.advance(minutes=20)  # the short (newest) grant is over: it wins, so no access despite the long one
    with pytest.raises(HoopAccessDenied, match="last jit access ended"):
        hoop.connect("alice@corp.example", "pg-prod")
    # revoking the newest re-enables the older grant that has not expired
    short_review = hoop.session(short)["review"]["id"]
    assert api.put(f"/reviews/{short_review}", json={"status": "REVOKED"}).status_code == 200
    sid = hoop.connect("alice@corp.example", "pg-prod")
    # the session is not linked to the grant that let it through; it lasts that grant's duration (8 h)
    assert hoop.session(sid)["review"] is None
    clock.advance(hours=8, seconds=-1)
    assert hoop.session(sid)["status"] == "open"
    clock.advance(seconds=1)
    assert hoop.session(sid)["status"] == "done"


def test_revoke_blocks_new_sessions_but_open_ones_stay_until_killed(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    grant = provision(api)
    review_id = hoop.session(grant)["review"]["id"]
    live = hoop.connect("alice@corp.example", "pg-prod")
    assert hoop.session(live)["status"] == "open"
    assert hoop.session(live)["review"] is None  # review.go: a session under a jit grant is not linked to it

    clock.advance(minutes=5)
    revoked = api.put(f"/reviews/{review_id}", json={"status": "REVOKED"})
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "REVOKED"
    # review.go doReview sets revoke_at only on approval: a revoked review keeps it and stops counting
    assert revoked.json()["revoke_at"] == iso(T0 + timedelta(hours=1))
    assert hoop.session(grant)["status"] == "done"  # reviews.go UpdateReview: REVOKED → session done
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
    assert again.status_code == 204  # session.go Kill: nothing live to close is not an error
    assert api.get(f"/sessions/{live}").json()["end_date"] == after["end_date"]
    assert api.post("/sessions/00000000-0000-4000-8000-000000000000/kill").status_code == 404
    assert api.put(f"/reviews/{review_id}", json={"status": "REVOKED"}).json() == {
        "message": "review is in wrong state"
    }


def test_a_session_under_a_jit_grant_is_unlinked_and_ends_at_its_own_deadline(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    # pg-staging: alice's group may reach it; its reviewers mean she connects through a grant
    grant = provision(api, conn="pg-staging", access_duration_sec=3600)  # revoke_at T0 + 1 h
    review = hoop.session(grant)["review"]
    clock.advance(minutes=20)
    live = hoop.connect("alice@corp.example", "pg-staging")
    # review.go: a new session, not linked to the review that let it through
    row = api.get(f"/sessions/{live}").json()
    assert row["review"] is None and row["status"] == "open" and row["verb"] == "connect"
    alice = hoop.user("alice@corp.example")["id"]
    listed = api.get("/sessions", params={"user": alice, "connection": "pg-staging"}).json()["data"]
    assert [(s["id"], s["review"]) for s in listed if s["status"] == "open"] == [(live, None)]
    assert api.get(f"/reviews/{live}").status_code == 404  # no review reachable through the session either

    # its deadline is its own: connect time + the review's duration, not the review's revoke_at
    clock.set(T0 + timedelta(hours=1))
    assert api.get(f"/sessions/{live}").json()["status"] == "open"  # the grant is over, the session is not
    clock.set(T0 + timedelta(hours=1, minutes=20) - timedelta(seconds=1))
    assert api.get(f"/sessions/{live}").json()["status"] == "open"
    clock.set(T0 + timedelta(hours=1, minutes=20))
    listed = api.get("/sessions", params={"user": alice}).json()["data"]  # read lazily, by any read
    ended = next(s for s in listed if s["id"] == live)
    assert ended["status"] == "done" and ended["end_date"] == iso(T0 + timedelta(hours=1, minutes=20))
    assert hoop.review(review["id"])["status"] == "APPROVED"  # nothing changes on the review


def test_a_session_through_standing_access_has_no_deadline(hoop: HoopStandIn, clock: ManualClock) -> None:
    hoop.add_connection("app-db", access_groups=["eng"], reviewers=[])
    standing = hoop.connect("alice@corp.example", "app-db")
    clock.advance(days=30)
    assert hoop.session(standing)["status"] == "open" and hoop.session(standing)["review"] is None


def test_kill_answers_204_for_live_done_and_detached_sessions_but_only_a_live_one_ends(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    hoop.add_connection("app-db", access_groups=["eng"], reviewers=[])
    live = hoop.connect("alice@corp.example", "app-db")
    elsewhere = hoop.connect("alice@corp.example", "app-db")
    hoop.detach(elsewhere)  # the stream lives on another gateway process
    clock.advance(minutes=1)

    assert api.post(f"/sessions/{live}/kill").status_code == 204
    assert api.get(f"/sessions/{live}").json()["status"] == "done"
    killed = api.post(f"/sessions/{elsewhere}/kill")
    assert killed.status_code == 204 and killed.content == b""  # session.go Kill: 204 all the same
    row = api.get(f"/sessions/{elsewhere}").json()
    assert row["status"] == "open" and row["end_date"] is None  # ...and it lives on
    assert api.post(f"/sessions/{elsewhere}/kill").status_code == 204  # as often as asked
    assert hoop.session(elsewhere)["status"] == "open"
    hoop.disconnect(elsewhere)  # it ends only where it lives
    assert hoop.session(elsewhere)["status"] == "done"

    # session.go Kill: 404 for an unknown session and for another person's (not an admin)
    assert api.post("/sessions/00000000-0000-4000-8000-000000000000/kill").json() == {
        "message": "session not found"
    }
    carols = hoop.connect("carol@corp.example", "app-db")
    with as_key(hoop, hoop.issue_user_token("alice@corp.example")) as alice:
        refused = alice.post(f"/sessions/{carols}/kill")
        assert refused.status_code == 404 and refused.json() == {"message": "session not found"}
    assert hoop.session(carols)["status"] == "open"


def test_user_and_connection_filters_are_sql_like_patterns(api: httpx.Client, hoop: HoopStandIn) -> None:
    for name in ("app-db", "app_db", "APP-DB", "app-db-replica"):
        hoop.add_connection(name, access_groups=["eng"], reviewers=[])
    made = {name: hoop.connect("alice@corp.example", name) for name in ("app-db", "app_db", "APP-DB")}
    made["app-db-replica"] = hoop.connect("carol@corp.example", "app-db-replica")

    def listed(**params: str) -> set[str]:
        return {s["connection"] for s in api.get("/sessions", params=params).json()["data"]}

    # models/session.go: connection LIKE @connection, case-sensitive like PostgreSQL
    assert listed(connection="app-db") == {"app-db"}
    assert listed(connection="app_db") == {"app-db", "app_db"}  # "_" is any one character
    assert listed(connection="app\\_db") == {"app_db"}  # unless escaped
    assert listed(connection="app%") == {"app-db", "app_db", "app-db-replica"}
    assert listed(connection="APP%") == {"APP-DB"}
    # user LIKE @filter_user_id, on the subject
    alice, carol = hoop.user("alice@corp.example")["id"], hoop.user("carol@corp.example")["id"]
    assert listed(user=alice) == {"app-db", "app_db", "APP-DB"}
    assert listed(user="_" + alice[1:]) == {"app-db", "app_db", "APP-DB"}
    assert listed(user="%") == set(made)
    assert listed(user=carol[:6] + "%") == {"app-db-replica"}
    assert listed(user="") == set()  # an empty pattern matches only an empty subject


def test_connect_through_standing_access_and_the_sandbox_endpoint(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    sid = hoop.connect("bob@corp.example", "dba-console")  # group dba is in its access list, no review
    assert hoop.session(sid)["review"] is None
    ok = api.post("/_sandbox/connect", json={"user_email": "bob@corp.example", "connection": "dba-console"})
    assert ok.status_code == 201 and set(ok.json()) == {"session_id"}
    # outside the access list: the connection does not exist for alice, whatever she is granted
    provision(api, conn="dba-console")
    outside = api.post(
        "/_sandbox/connect", json={"user_email": "alice@corp.example", "connection": "dba-console"}
    )
    assert outside.status_code == 403 and outside.json()["message"] == "connection not found"
    # inside the access list but reviewed (the review plugin reviews everyone on pg-prod), no grant
    refused = api.post("/_sandbox/connect", json={"user_email": "bob@corp.example", "connection": "pg-prod"})
    assert refused.status_code == 403
    assert "bob@corp.example needs an approved review to connect to pg-prod" in refused.json()["message"]
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
    with pytest.raises(HoopAccessDenied, match="ended at 2026-03-02T10:00:00Z"):
        hoop.connect("alice@corp.example", "pg-prod")
    assert hoop.session(grant)["review"]["status"] == "APPROVED"  # expiry changes nothing on the review


def test_sub_second_timestamps_sort_as_times(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    first = hoop.connect("bob@corp.example", "dba-console")  # 09:00:00Z
    clock.advance(milliseconds=500)
    second = hoop.connect("bob@corp.example", "dba-console")  # 09:00:00.500000Z sorts before "…00Z" as text
    assert [s["id"] for s in api.get("/sessions").json()["data"]] == [second, first]


# ---------------------------------------------------------------------- reviews
# Each rule below is gateway/api/review/review.go (DoReview, doIndividualReview, doForcedReview).

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def test_review_refusals_answer_as_hoop_does(api: httpx.Client, hoop: HoopStandIn) -> None:
    pending = hoop.create_pending_review("alice@corp.example", "pg-prod", duration_sec=900)
    url = f"/reviews/{pending.review_id}"
    assert (
        api.get("/sessions", params={"review.status": "PENDING"}).json()["data"][0]["id"]
        == pending.session_id
    )
    # REVOKED only on an APPROVED review: ErrWrongState, 400
    assert api.put(url, json={"status": "REVOKED"}).json() == {"message": "review is in wrong state"}
    # the owner (not an admin) cannot approve their own, even from one of its groups: ErrSelfApproval, 400
    hoop.add_user("alice@corp.example", "Alice", groups=["eng", "dba-owners"])
    with as_key(hoop, hoop.issue_user_token("alice@corp.example")) as alice:
        own = alice.put(url, json={"status": "APPROVED"})
    assert (own.status_code, own.json()) == (400, {"message": "unable to self approve review"})
    # a caller in none of the review's groups, neither owner nor admin: ErrNotEligible, 400
    with as_key(hoop, SRE_KEY) as sre:
        outsider = sre.put(url, json={"status": "APPROVED"})
        assert (outsider.status_code, outsider.json()) == (400, {"message": "not eligible for review"})
        assert sre.put(url, json={"status": "REJECTED"}).status_code == 400
    # the body: status is required (gin binding → 400); an unknown one is ErrUnknownStatus, unmapped → 500
    assert api.put(url, json={}).status_code == 400
    assert api.put(url, json={"status": "APPROVED", "force_review": "yes"}).status_code == 400
    assert api.put(url, json={"status": "MAYBE"}).json() == {
        "message": "failed updating review status: unknown status"
    }
    assert api.put(url, json={"status": "MAYBE"}).status_code == 500
    # an unknown review: ErrNotFound is not mapped by PUT (500), while GET answers 404
    unknown = api.put(f"/reviews/{UNKNOWN}", json={"status": "APPROVED"})
    assert (unknown.status_code, unknown.json()) == (
        500,
        {"message": "failed updating review status: review not found"},
    )
    assert api.get(f"/reviews/{UNKNOWN}").status_code == 404
    assert api.get(f"/reviews/{UNKNOWN}").json() == {"message": "resource not found"}
    # nothing above changed the review
    assert hoop.review(pending.review_id)["status"] == "PENDING"
    assert {g["status"] for g in hoop.review(pending.review_id)["review_groups_data"]} == {"PENDING"}


def test_a_review_group_member_approves_and_one_rejection_ends_it(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    pending = hoop.create_pending_review("alice@corp.example", "pg-prod", duration_sec=900)
    clock.advance(minutes=10)
    with as_key(hoop, DBA_KEY) as dba:
        approved = dba.put(f"/reviews/{pending.review_id}", json={"status": "approved"})  # upper-cased
    assert approved.status_code == 200
    body = approved.json()
    assert body["status"] == "APPROVED" and body["session"] == pending.session_id
    assert body["revoke_at"] == iso(clock() + timedelta(seconds=900))  # counted from the approval
    assert body["review_groups_data"][0]["reviewed_by"]["name"] == "api-key-2"
    assert body["review_groups_data"][0]["forced_review"] is False
    # an APPROVED review may still be rejected; then it is final
    rejected = api.put(f"/reviews/{pending.review_id}", json={"status": "REJECTED", "rejection_reason": "no"})
    assert rejected.json()["status"] == "REJECTED" and rejected.json()["rejection_reason"] == "no"
    # an admin outside the groups denies under the group "admin" (appended)
    assert [g["group"] for g in rejected.json()["review_groups_data"]] == ["dba-owners", "admin"]
    assert hoop.session(pending.session_id)["status"] == "done"  # reviews.go UpdateReview
    assert api.put(f"/reviews/{pending.review_id}", json={"status": "APPROVED"}).status_code == 400


def test_approval_count_must_equal_the_number_needed(api: httpx.Client, hoop: HoopStandIn) -> None:
    # pg-staging: reviewers dba-owners and sre, min_review_approvals 1 → needed = min(2, 1) = 1
    with as_key(hoop, SRE_KEY) as sre:
        one = hoop.create_pending_review("alice@corp.example", "pg-staging")
        first = sre.put(f"/reviews/{one.review_id}", json={"status": "APPROVED"}).json()
        assert first["status"] == "APPROVED"
        assert {g["group"]: g["status"] for g in first["review_groups_data"]} == {
            "dba-owners": "PENDING",
            "sre": "APPROVED",
        }
    # a caller in both groups marks both at once: 2 approved != 1 needed, PENDING — and for good
    stalled = hoop.create_pending_review("alice@corp.example", "pg-staging")
    with as_key(hoop, BOTH_KEY) as both:
        body = both.put(f"/reviews/{stalled.review_id}", json={"status": "APPROVED"}).json()
    assert body["status"] == "PENDING" and body["revoke_at"] is None
    assert {g["status"] for g in body["review_groups_data"]} == {"APPROVED"}
    for key in (SRE_KEY, DBA_KEY, BOTH_KEY):
        with as_key(hoop, key) as again:
            later = again.put(f"/reviews/{stalled.review_id}", json={"status": "APPROVED"})
            assert later.json()["status"] == "PENDING"
    # an admin outside the groups marks nothing: its approval leaves the review as it was
    other = hoop.create_pending_review("alice@corp.example", "pg-staging")
    by_admin = api.put(f"/reviews/{other.review_id}", json={"status": "APPROVED"})
    assert by_admin.status_code == 200 and by_admin.json()["status"] == "PENDING"
    assert {g["status"] for g in by_admin.json()["review_groups_data"]} == {"PENDING"}
    # pg-prod sets no min_review_approvals: every group must approve
    all_of_two = hoop.create_pending_review("alice@corp.example", "pg-prod", groups=["dba-owners", "sre"])
    with as_key(hoop, SRE_KEY) as sre:
        assert (
            sre.put(f"/reviews/{all_of_two.review_id}", json={"status": "APPROVED"}).json()["status"]
            == "PENDING"
        )
    with as_key(hoop, DBA_KEY) as dba:
        assert dba.put(f"/reviews/{all_of_two.review_id}", json={"status": "APPROVED"}).json()["status"] == (
            "APPROVED"
        )


def test_force_review_decides_in_one_call_with_the_connection_force_groups(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    hoop.add_connection(
        "pg-forced",
        access_groups=["eng"],
        reviewers=["dba-owners", "sre"],
        force_approve_groups=[FORCE_GROUP],
    )
    assert next(c for c in api.get("/connections").json() if c["name"] == "pg-forced")[
        "force_approve_groups"
    ] == [FORCE_GROUP]
    pending = hoop.create_pending_review("alice@corp.example", "pg-forced", duration_sec=1200)
    url = f"/reviews/{pending.review_id}"
    assert hoop.review(pending.review_id)["force_approval_groups"] == []  # a plugin review carries none
    with as_key(hoop, FORCE_KEY) as grantflow:
        # without force_review the key (admin, in no reviewer group) marks nothing
        assert grantflow.put(url, json={"status": "APPROVED"}).json()["status"] == "PENDING"
        clock.advance(minutes=3)
        forced = grantflow.put(url, json={"status": "APPROVED", "force_review": True})
    assert forced.status_code == 200
    body = forced.json()
    assert body["status"] == "APPROVED" and body["revoke_at"] == iso(clock() + timedelta(seconds=1200))
    groups = {g["group"]: (g["status"], g["forced_review"]) for g in body["review_groups_data"]}
    # the force group is appended (the review lacked it) and marked forced; the others stay pending
    assert groups == {
        "dba-owners": ("PENDING", False),
        "sre": ("PENDING", False),
        FORCE_GROUP: ("APPROVED", True),
    }
    # GET /reviews/{id} does not select forced_review; the session's review does
    assert {g["forced_review"] for g in api.get(url).json()["review_groups_data"]} == {False}
    detail = api.get(f"/sessions/{pending.session_id}").json()["review"]
    assert [g["group"] for g in detail["review_groups_data"] if g["forced_review"]] == [FORCE_GROUP]
    # a caller outside the force groups cannot force, admin or not
    again = hoop.create_pending_review("alice@corp.example", "pg-forced")
    for key in (ADMIN_KEY, DBA_KEY):
        with as_key(hoop, key) as other:
            refused = other.put(
                f"/reviews/{again.review_id}", json={"status": "APPROVED", "force_review": True}
            )
            assert (refused.status_code, refused.json()) == (400, {"message": "not eligible for review"})
    # forcing decides a rejection in one call too
    with as_key(hoop, FORCE_KEY) as grantflow:
        denied = grantflow.put(
            f"/reviews/{again.review_id}",
            json={"status": "REJECTED", "force_review": True, "rejection_reason": "x"},
        )
    assert denied.json()["status"] == "REJECTED" and denied.json()["rejection_reason"] == "x"


def test_force_review_of_a_rule_review_uses_the_rule_force_groups(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    hoop.add_connection(
        "pg-ruled", access_groups=["eng"], reviewers=["dba-owners"], force_approve_groups=[FORCE_GROUP]
    )
    hoop.add_access_rule(
        "ruled-jit",
        connection_names=["pg-ruled"],
        reviewers_groups=["dba-owners", "sre"],
        min_approvals=1,
        force_approval_groups=["sre"],
    )
    hoop.add_access_rule(
        "no-force", connection_names=["pg-ruled"], reviewers_groups=["dba-owners"], min_approvals=1
    )
    ruled = hoop.create_pending_review("alice@corp.example", "pg-ruled", rule_name="ruled-jit")
    shown = api.get(f"/reviews/{ruled.review_id}").json()
    assert shown["access_request_rule_name"] == "ruled-jit" and shown["force_approval_groups"] == ["sre"]
    assert [g["group"] for g in shown["review_groups_data"]] == ["dba-owners", "sre"]
    # the connection's force group does not count for a rule's review
    with as_key(hoop, FORCE_KEY) as grantflow:
        refused = grantflow.put(
            f"/reviews/{ruled.review_id}", json={"status": "APPROVED", "force_review": True}
        )
        assert (refused.status_code, refused.json()["message"]) == (400, "not eligible for review")
    # the rule's does: the existing group entry is marked forced
    with as_key(hoop, SRE_KEY) as sre:
        forced = sre.put(
            f"/reviews/{ruled.review_id}", json={"status": "APPROVED", "force_review": True}
        ).json()
    assert forced["status"] == "APPROVED"
    assert [(g["group"], g["forced_review"]) for g in forced["review_groups_data"]] == [
        ("dba-owners", False),
        ("sre", True),
    ]
    # a rule with no force groups (an empty list) does not fall back to the connection's
    bare = hoop.create_pending_review("alice@corp.example", "pg-ruled", rule_name="no-force")
    with as_key(hoop, FORCE_KEY) as grantflow:
        assert grantflow.put(
            f"/reviews/{bare.review_id}", json={"status": "APPROVED", "force_review": True}
        ).json() == {"message": "not eligible for review"}


def test_approving_an_approved_review_resets_revoke_at(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    hoop.add_connection("pg-forced", reviewers=["dba-owners"], force_approve_groups=[FORCE_GROUP])
    pending = hoop.create_pending_review("alice@corp.example", "pg-forced", duration_sec=3600)
    url = f"/reviews/{pending.review_id}"
    with as_key(hoop, FORCE_KEY) as grantflow:
        first = grantflow.put(url, json={"status": "APPROVED", "force_review": True}).json()
        assert first["revoke_at"] == iso(T0 + timedelta(hours=1))
        clock.advance(minutes=50)
        again = grantflow.put(url, json={"status": "APPROVED", "force_review": True}).json()
    assert again["status"] == "APPROVED"
    assert again["revoke_at"] == iso(T0 + timedelta(minutes=50, hours=1))  # the full duration again
    # an individual approval (even one that marks nothing) resets it as well: the review ends APPROVED
    clock.advance(minutes=5)
    assert api.put(url, json={"status": "APPROVED"}).json()["revoke_at"] == iso(clock() + timedelta(hours=1))
    # REVOKED leaves revoke_at as it was
    revoked = api.put(url, json={"status": "REVOKED"}).json()
    assert revoked["status"] == "REVOKED" and revoked["revoke_at"] == iso(clock() + timedelta(hours=1))


def test_onetime_reviews_cannot_be_revoked(api: httpx.Client, hoop: HoopStandIn, clock: ManualClock) -> None:
    review = hoop.create_pending_review("alice@corp.example", "pg-prod", type="onetime", command="SELECT 1")
    session = hoop.session(review.session_id)
    assert session["verb"] == "exec" and session["script"] == {"data": "SELECT 1"}
    assert session["review"]["access_duration"] == 0
    approved = api.put(f"/reviews/{review.review_id}", json={"status": "APPROVED"})
    # the admin outside dba-owners marks nothing: PENDING still
    assert approved.json()["status"] == "PENDING"
    with as_key(hoop, DBA_KEY) as dba:
        approved = dba.put(f"/reviews/{review.review_id}", json={"status": "APPROVED"})
    assert approved.json()["status"] == "APPROVED"
    assert approved.json()["revoke_at"] == iso(clock())  # now + 0: doReview sets it for every type
    # revoking a onetime review is ErrNotFound inside DoReview: unmapped, 500
    revoked = api.put(f"/reviews/{review.review_id}", json={"status": "REVOKED"})
    assert revoked.status_code == 500
    listed = api.get("/reviews").json()
    assert [r["id"] for r in listed] == [review.review_id]


def test_the_session_list_blanks_the_script_and_the_detail_keeps_it(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    onetime = hoop.create_pending_review(
        "alice@corp.example", "pg-prod", type="onetime", command="DELETE FROM t WHERE id = 7"
    )
    jit = hoop.create_pending_review("alice@corp.example", "pg-prod")
    rows = {r["id"]: r for r in api.get("/sessions", params={"review.status": "PENDING"}).json()["data"]}
    assert set(rows) == {onetime.session_id, jit.session_id}
    # api/session/parser.go toOpenApiSessionList: no script in any row
    assert all(not r.get("script") for r in rows.values())
    # api/session/session.go Get: the detail always carries it ({"data": ""} when there is none)
    assert api.get(f"/sessions/{onetime.session_id}").json()["script"] == {
        "data": "DELETE FROM t WHERE id = 7"
    }
    assert api.get(f"/sessions/{jit.session_id}").json()["script"] == {"data": ""}


# ---------------------------------------------------------------------- users, connections, rules


def test_put_user_replaces_the_whole_user(api: httpx.Client) -> None:
    bob = api.get("/users/bob@corp.example").json()
    assert bob["slack_id"] == "U0BOB" and bob["name"] == "Bob"
    replaced = api.put(
        f"/users/{bob['id']}", json={"email": "bob@corp.example", "status": "active", "groups": ["dba"]}
    )
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
    # user.go Update: the role follows the groups; the email in the body is ignored (never changed)
    promoted = api.put(
        "/users/bob@corp.example",
        json={**user, "email": "robert@corp.example", "groups": ["dba", "admin"], "status": "active"},
    ).json()
    assert promoted["role"] == "admin" and promoted["email"] == "bob@corp.example"
    assert api.put("/users/bob@corp.example", json={"name": "no email"}).status_code == 400
    # status is stored as sent: omitted or unknown fails in hoop's database (500) and writes nothing
    before = api.get("/users/bob@corp.example").json()
    for body in ({"email": "bob@corp.example"}, {"email": "bob@corp.example", "status": "gone"}):
        assert api.put("/users/bob@corp.example", json={**body, "groups": []}).status_code == 500
    assert api.get("/users/bob@corp.example").json() == before
    missing = api.put("/users/nobody@corp.example", json={"email": "nobody@corp.example"})
    assert missing.status_code == 404 and missing.json()["message"] == "user nobody@corp.example not found"
    api.put("/users/bob@corp.example", json={**user, "status": "active", "groups": ["dba"]})
    assert api.get("/users/groups").json() == ["dba", "eng", "sre"]
    assert [u["email"] for u in api.get("/users").json()] == [
        "alice@corp.example",
        "bob@corp.example",
        "carol@corp.example",
    ]


def test_an_inactive_user_cannot_connect_or_sign_in_and_login_syncs_the_groups_claim(
    api: httpx.Client, hoop: HoopStandIn
) -> None:
    hoop.add_connection("dba-shell", access_groups=["dba"], reviewers=[])  # standing access, no review
    open_before = hoop.connect("bob@corp.example", "dba-shell")
    bob = api.get("/users/bob@corp.example").json()
    bob.pop("id"), bob.pop("role")
    assert api.put("/users/bob@corp.example", json={**bob, "status": "inactive"}).status_code == 200
    # auth.go: refused before anything else, with hoop's message; an open session is not ended by it
    refused = api.post(
        "/_sandbox/connect", json={"user_email": "bob@corp.example", "connection": "dba-shell"}
    )
    assert refused.status_code == 403 and refused.json()["message"].startswith("user is not active")
    assert hoop.session(open_before)["status"] == "open"
    # login.go: an inactive user cannot sign in, and the login changes nothing
    login = api.post("/_sandbox/login", json={"user_email": "bob@corp.example", "idp_groups": ["eng"]})
    assert login.status_code == 403
    assert api.get("/users/bob@corp.example").json()["groups"] == ["dba", "dba-owners"]
    # set active again by an admin: the next login overwrites the groups with the claim
    assert api.put("/users/bob@corp.example", json={**bob, "status": "active"}).status_code == 200
    login = api.post("/_sandbox/login", json={"user_email": "bob@corp.example", "idp_groups": ["eng", "eng"]})
    assert login.status_code == 200 and login.json()["groups"] == ["eng"]
    with pytest.raises(HoopAccessDenied):  # dba is gone: dba-shell is out of reach
        hoop.connect("bob@corp.example", "dba-shell")
    # without a claim the groups are kept; an admin keeps admin over a claim; invited becomes active
    hoop.add_user("carol@corp.example", "Carol", groups=["sre", "admin"], status="invited")
    assert api.post("/_sandbox/login", json={"user_email": "carol@corp.example"}).json()["groups"] == [
        "admin",
        "sre",
    ]
    carol = api.post("/_sandbox/login", json={"user_email": "carol@corp.example", "idp_groups": ["eng"]})
    assert carol.json()["groups"] == ["admin", "eng"] and carol.json()["status"] == "active"
    # a first login creates the user, active, with the claim
    newbie = api.post("/_sandbox/login", json={"user_email": "newbie@corp.example", "idp_groups": ["sre"]})
    assert newbie.status_code == 200 and newbie.json()["groups"] == ["sre"]
    bad = api.post("/_sandbox/login", json={"user_email": "x@corp.example", "idp_groups": "sre"})
    assert bad.status_code == 422


def test_connections_plugins_and_rules(api: httpx.Client, hoop: HoopStandIn) -> None:
    for n in range(7):
        hoop.add_connection(f"extra-{n}", tags={"env": "dev" if n % 2 else "prod"})
    everything = api.get("/connections").json()
    assert isinstance(everything, list) and len(everything) == 12
    assert [c["name"] for c in api.get("/connections", params={"type": "custom"}).json()] == [
        "eng-shell",
        "shell",
    ]
    assert len(api.get("/connections", params={"tag_selector": "env=prod"}).json()) == 4
    assert len(api.get("/connections", params={"tag_selector": "env!=prod"}).json()) == 8
    page = api.get("/connections", params={"page": 2, "page_size": 4}).json()
    assert page["pages"] == {"page": 2, "size": 4, "total": 12}
    assert [c["name"] for c in page["data"]] == ["extra-2", "extra-3", "extra-4", "extra-5"]
    assert api.get("/connections", params={"page_size": 101}).status_code == 422

    plugin = api.get("/plugins/access_control").json()
    assert {c["name"]: c["config"] for c in plugin["connections"]} == {
        "pg-prod": ["dba", "eng"],
        "pg-staging": ["eng"],
        "dba-console": ["dba"],
        "eng-shell": ["eng"],
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


# ---------------------------------------------------------------------- the two gates
# Access control: models/connections.go getConnectionByNameOrID. Review: interceptors/accessrequest/
# accessrequest.go OnReceive, then transport/plugins/review/review.go.


def test_access_control_groups_attributes_bypass_and_plugin_off(api: httpx.Client, hoop: HoopStandIn) -> None:
    hoop.add_user("dave@corp.example", "Dave", groups=["data"])
    hoop.add_user("audra@corp.example", "Audra", groups=["auditor"])
    hoop.add_connection("warehouse", access_groups=["analysts"])
    with pytest.raises(HoopAccessDenied, match=r"^connection not found$"):
        hoop.connect("dave@corp.example", "warehouse")
    # a grant does not open the gate
    provision(api, user="dave@corp.example", conn="warehouse")
    with pytest.raises(HoopAccessDenied, match=r"^connection not found$"):
        hoop.connect("dave@corp.example", "warehouse")
    # an attribute links the group to the connection
    hoop.add_attribute("analytics", connection_names=["warehouse"], access_control_group_names=["data"])
    assert hoop.connect("dave@corp.example", "warehouse")
    listed = api.get("/attributes").json()
    assert listed["pages"] == {"page": 1, "size": 50, "total": 1}
    assert listed["data"][0]["connection_names"] == ["warehouse"]
    assert listed["data"][0]["access_control_group_names"] == ["data"]
    # admins and auditors bypass access control
    assert hoop.connect("audra@corp.example", "shell")
    with pytest.raises(HoopAccessDenied, match=r"^connection not found$"):
        hoop.connect("alice@corp.example", "shell")
    # GET /connections/{name} applies the caller's access control; "not found" either way
    with as_key(hoop, hoop.issue_user_token("alice@corp.example")) as alice:
        assert alice.get("/connections/eng-shell").status_code == 200
        assert alice.get("/connections/shell").json() == {"message": "not found"}
        assert alice.get("/connections/nope").status_code == 404
    # with the access_control plugin off, everyone reaches everything (and the plugin answers 404)
    hoop.set_access_control(False)
    assert hoop.connect("alice@corp.example", "shell")
    assert api.get("/plugins/access_control").json() == {"message": "plugin not found"}


def test_review_rules_decide_who_is_reviewed(api: httpx.Client, hoop: HoopStandIn) -> None:
    hoop.add_user("sam@corp.example", "Sam", groups=["eng", "sre-oncall"])
    hoop.add_connection("api-prod", access_groups=["eng"])
    assert hoop.connect("alice@corp.example", "api-prod")  # no rule, no review plugin: no review

    # a jit rule reviews everyone but skip_review_groups
    hoop.add_access_rule(
        "api-jit", connection_names=["api-prod"], reviewers_groups=["sre"], skip_review_groups=["sre-oncall"]
    )
    with pytest.raises(HoopAccessDenied, match=r"needs an approved review .*access request rule api-jit"):
        hoop.connect("alice@corp.example", "api-prod")
    assert hoop.connect("sam@corp.example", "api-prod")
    # approval_required_groups narrow the review to their members, and then skip groups no longer count
    hoop.add_access_rule(
        "api-jit",
        connection_names=["api-prod"],
        reviewers_groups=["sre"],
        approval_required_groups=["sre-oncall"],
        skip_review_groups=["sre-oncall"],
    )
    assert hoop.connect("alice@corp.example", "api-prod")
    with pytest.raises(HoopAccessDenied, match="access request rule api-jit"):
        hoop.connect("sam@corp.example", "api-prod")
    # a command-only rule does not review connects; a jit_command rule does
    hoop.add_access_rule("api-jit", access_type="command", connection_names=["api-prod"])
    assert hoop.connect("alice@corp.example", "api-prod")
    hoop.add_access_rule("api-jit", access_type="jit_command", connection_names=["api-prod"])
    with pytest.raises(HoopAccessDenied, match="access request rule api-jit"):
        hoop.connect("alice@corp.example", "api-prod")
    # services.GetRuleForConnection: a rule reached through an attribute wins over one naming the connection
    hoop.add_access_rule("by-attribute", skip_review_groups=["eng"])
    hoop.add_attribute("prod", connection_names=["api-prod"], access_request_rule_names=["by-attribute"])
    assert hoop.connect("alice@corp.example", "api-prod")
    # the review plugin still reviews everyone the rule let through
    hoop.add_connection("api-prod", access_groups=["eng"], reviewers=["sre"])
    with pytest.raises(HoopAccessDenied, match="the review plugin"):
        hoop.connect("alice@corp.example", "api-prod")
    # and an approved jit review lets the person in, whatever the rules say
    provision(api, conn="api-prod")
    assert hoop.connect("alice@corp.example", "api-prod")


# ---------------------------------------------------------------------- listing


def test_session_listing_pages_newest_first_with_filters(
    api: httpx.Client, hoop: HoopStandIn, clock: ManualClock
) -> None:
    made = []
    for n in range(25):
        made.append(hoop.connect("carol@corp.example" if n % 5 else "alice@corp.example", "eng-shell"))
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
    hoop.connect("bob@corp.example", "dba-console")
    alice = hoop.connect("alice@corp.example", "eng-shell")
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
        # the session opened before the restart still ends at its own deadline, read from the saved state
        clock.advance(hours=49)
        with as_key(again, ADMIN_KEY) as client:
            assert client.get(f"/sessions/{live}").json()["status"] == "done"
            alice = again.user("alice@corp.example")["id"]
            rows = client.get("/sessions", params={"user": alice, "connection": "pg-prod"}).json()["data"]
            opened = [r["status"] for r in rows if r["id"] != grant]  # the grant's own row stays "ready"
            assert opened == ["done", "done"]  # both sessions opened under the grant, before and after
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
