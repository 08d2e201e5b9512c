"""``HoopGateway`` against the hoop stand-in over real HTTP: idempotent grants, error mapping, revoke, kill,
paging (``integrations/hoop/``)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from integrations.gateway import (
    Gateway,
    GatewayAuthError,
    GatewayNotFoundError,
    GatewayPermanentError,
    GatewayRefusedError,
    GatewayTransientError,
    GatewayUser,
)
from integrations.hoop import HoopGateway
from integrations.retry_after import parse_retry_after
from sandbox.hoop import DEFAULT_API_KEY, HoopAccessDenied, HoopStandIn, ManualClock

ADMIN_KEY = DEFAULT_API_KEY
SRE_KEY = "hpk_sre_only"
FORCE_GROUP = "grantflow"  # grantflow's key decides reviews as this force-approval group (sandbox/seed.py)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_TLS = ssl.create_default_context()  # shared: building one per client is slower than the requests


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def hoop(clock: ManualClock) -> Iterator[HoopStandIn]:
    stand_in = HoopStandIn(clock=clock, api_keys={ADMIN_KEY: ["admin", FORCE_GROUP], SRE_KEY: ["sre"]})
    stand_in.add_user("alice@corp.example", "Alice", groups=["eng"], slack_id="U0ALICE")
    stand_in.add_user("bob@corp.example", "Bob", groups=["dba"])
    stand_in.add_user("newbie@corp.example", signed_in=False)
    stand_in.add_connection(
        "pg-prod",
        access_groups=["dba", "eng"],
        reviewers=["dba-owners"],
        access_max_duration=7200,
        force_approve_groups=[FORCE_GROUP],
    )
    stand_in.add_connection(
        "pg-staging",
        access_groups=["eng"],
        reviewers=["sre", "dba-owners"],
        force_approve_groups=[FORCE_GROUP],
    )
    stand_in.start()
    yield stand_in
    stand_in.stop()


def make_gateway(hoop: HoopStandIn, key: str = ADMIN_KEY, **kwargs: object) -> HoopGateway:
    transport = kwargs.pop("transport", None) or httpx.AsyncHTTPTransport(verify=_TLS)
    return HoopGateway(hoop.url, key, transport=transport, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(hoop: HoopStandIn) -> AsyncIterator[HoopGateway]:
    gw = make_gateway(hoop)
    typed: Gateway = gw  # HoopGateway satisfies the protocol (checked by mypy)
    yield gw
    await typed.aclose()


def posts(hoop: HoopStandIn, path: str = "/api/sessions/provision") -> int:
    return sum(1 for c in hoop.calls if c.method == "POST" and c.path == path)


class DropReplyTransport(httpx.AsyncBaseTransport):
    """Delivers the request, then loses the reply, like a connection dropped after hoop wrote the grant."""

    def __init__(self, inner: httpx.AsyncBaseTransport, path: str) -> None:
        self.inner, self.path, self.dropped = inner, path, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == self.path and not self.dropped:
            await response.aclose()
            self.dropped += 1
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending a response", request=request
            )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


# ---------------------------------------------------------------------- provision


async def test_provision_returns_the_grant_as_hoop_reports_it(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    grant = await gateway.provision_grant(
        user_email="alice@corp.example",
        connection="pg-prod",
        duration_seconds=3600,
        correlation_id="wf-1:grant",
    )
    session = hoop.session(grant.session_id)
    assert grant.review_id == session["review"]["id"]
    assert grant.status == "APPROVED"
    assert grant.revoke_at == T0 + timedelta(hours=1)  # hoop's clock, read back
    assert (grant.user_email, grant.connection, grant.correlation_id) == (
        "alice@corp.example",
        "pg-prod",
        "wf-1:grant",
    )
    hoop.connect("alice@corp.example", "pg-prod")  # the grant works
    assert [(c.method, c.path) for c in hoop.calls] == [
        ("GET", "/api/sessions"),
        ("POST", "/api/sessions/provision"),
        ("GET", f"/api/sessions/{grant.session_id}"),
    ]
    assert hoop.calls[1].json == {
        "user_email": "alice@corp.example",
        "connection": "pg-prod",
        "access_duration_sec": 3600,
        "correlation_id": "wf-1:grant",
        "metadata": {"grantflow_correlation_id": "wf-1:grant"},
    }


async def test_provision_again_returns_the_same_grant(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    args = {"user_email": "alice@corp.example", "connection": "pg-prod", "duration_seconds": 600}
    first = await gateway.provision_grant(**args, correlation_id="wf-2:grant")  # type: ignore[arg-type]
    second = await gateway.provision_grant(**args, correlation_id="wf-2:grant")  # type: ignore[arg-type]
    assert second == first
    assert posts(hoop) == 1


async def test_retry_after_a_500_after_the_write_finds_the_first_grant(
    gateway: HoopGateway, hoop: HoopStandIn
) -> None:
    hoop.fail_next("/sessions/provision", status=500, after_write=True)
    with pytest.raises(GatewayTransientError) as failed:
        await gateway.provision_grant(
            user_email="alice@corp.example",
            connection="pg-prod",
            duration_seconds=900,
            correlation_id="wf-3:grant",
        )
    assert failed.value.status == 500
    grant = await gateway.provision_grant(
        user_email="alice@corp.example",
        connection="pg-prod",
        duration_seconds=900,
        correlation_id="wf-3:grant",
    )
    assert len(hoop.sessions(correlation_id="wf-3:grant")) == 1
    assert posts(hoop) == 1
    assert grant.session_id == hoop.sessions(correlation_id="wf-3:grant")[0]["id"]


async def test_retry_after_a_dropped_reply_finds_the_first_grant(hoop: HoopStandIn) -> None:
    transport = DropReplyTransport(httpx.AsyncHTTPTransport(verify=_TLS), "/api/sessions/provision")
    async with make_gateway(hoop, transport=transport) as gw:
        with pytest.raises(GatewayTransientError, match="RemoteProtocolError"):
            await gw.provision_grant(
                user_email="bob@corp.example",
                connection="pg-prod",
                duration_seconds=900,
                correlation_id="wf-4",
            )
        assert transport.dropped == 1 and len(hoop.sessions(correlation_id="wf-4")) == 1
        grant = await gw.provision_grant(
            user_email="bob@corp.example", connection="pg-prod", duration_seconds=900, correlation_id="wf-4"
        )
    assert len(hoop.sessions(correlation_id="wf-4")) == 1
    assert posts(hoop) == 1
    assert grant.status == "APPROVED"


async def test_a_revoked_grant_is_not_reused(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    first = await gateway.provision_grant(
        user_email="alice@corp.example", connection="pg-prod", duration_seconds=600, correlation_id="wf-5"
    )
    await gateway.revoke_grant(first.review_id)
    second = await gateway.provision_grant(
        user_email="alice@corp.example", connection="pg-prod", duration_seconds=600, correlation_id="wf-5"
    )
    assert second.review_id != first.review_id
    found = await gateway.find_grants(correlation_id="wf-5")
    assert [(g.review_id, g.status) for g in found] == [
        (second.review_id, "APPROVED"),
        (first.review_id, "REVOKED"),
    ]


async def test_more_than_48_hours_is_refused_before_any_call(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    with pytest.raises(ValueError, match="at most 48 h"):
        await gateway.provision_grant(
            user_email="alice@corp.example",
            connection="pg-prod",
            duration_seconds=48 * 3600 + 1,
            correlation_id="x",
        )
    with pytest.raises(ValueError, match="positive"):
        await gateway.provision_grant(
            user_email="alice@corp.example", connection="pg-prod", duration_seconds=0, correlation_id="x"
        )
    assert hoop.calls == []


async def test_someone_who_never_signed_in_gets_an_actionable_refusal(
    gateway: HoopGateway, hoop: HoopStandIn
) -> None:
    with pytest.raises(GatewayRefusedError) as refused:
        await gateway.provision_grant(
            user_email="newbie@corp.example",
            connection="pg-prod",
            duration_seconds=600,
            correlation_id="wf-6",
        )
    assert refused.value.message == (
        "newbie@corp.example has never signed in to hoop; ask them to sign in once, then request again"
    )
    assert refused.value.status == 400
    assert not isinstance(refused.value, GatewayTransientError)


async def test_unknown_connection_is_refused(gateway: HoopGateway) -> None:
    # api/session/session.go Provision answers 400 "connection X not found": permanent, never retried
    with pytest.raises(GatewayRefusedError, match="connection pg-nope not found"):
        await gateway.provision_grant(
            user_email="alice@corp.example", connection="pg-nope", duration_seconds=600, correlation_id="wf-7"
        )


# ---------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, 7, 7.0), (503, None, None), (502, "1.5", 1.5), (504, "soon", None)],
)
async def test_throttling_and_server_errors_are_transient(
    gateway: HoopGateway,
    hoop: HoopStandIn,
    status: int,
    retry_after: int | str | None,
    expected: float | None,
) -> None:
    hoop.fail_next("/connections", status=status, retry_after=retry_after)
    with pytest.raises(GatewayTransientError) as caught:
        await gateway.list_connections()
    assert caught.value.status == status
    assert caught.value.retry_after == expected
    assert len(await gateway.list_connections()) == 2  # the next attempt works


async def test_retry_after_as_an_http_date(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)
    hoop.fail_next("/users", status=429, retry_after=format_datetime(later, usegmt=True))
    with pytest.raises(GatewayTransientError) as caught:
        await gateway.list_users()
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


def test_parse_retry_after() -> None:
    now = datetime(2026, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:29:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("tomorrow") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


async def test_bad_key_and_missing_groups_are_auth_errors(hoop: HoopStandIn) -> None:
    async with make_gateway(hoop, "hpk_wrong") as wrong:
        with pytest.raises(GatewayAuthError) as caught:
            await wrong.list_connections()
        assert caught.value.status == 401
    async with make_gateway(hoop, SRE_KEY) as not_admin:
        with pytest.raises(GatewayAuthError) as caught:
            await not_admin.list_users()
        assert caught.value.status == 403
    async with make_gateway(hoop, ADMIN_KEY, auth_header="api-key") as legacy:
        assert [u.email for u in await legacy.list_users()] == ["alice@corp.example", "bob@corp.example"]


async def test_unreachable_gateway_and_timeouts_are_transient(hoop: HoopStandIn) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HoopGateway(f"http://127.0.0.1:{port}", ADMIN_KEY, timeout=2) as gw:
        with pytest.raises(GatewayTransientError, match="ConnectError"):
            await gw.list_users()

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with HoopGateway("http://hoop.invalid", ADMIN_KEY, transport=httpx.MockTransport(slow)) as gw:
        with pytest.raises(GatewayTransientError, match="timed out"):
            await gw.list_users()


async def test_other_client_errors_are_permanent() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"message": "invalid limit"})

    async with HoopGateway(
        "http://hoop.invalid/api/", ADMIN_KEY, transport=httpx.MockTransport(answer)
    ) as gw:
        with pytest.raises(GatewayPermanentError, match="invalid limit") as caught:
            await gw.list_users()
    assert type(caught.value) is GatewayPermanentError and caught.value.status == 422


# ---------------------------------------------------------------------- revoke, kill, decide


async def test_revoke_reads_back_and_is_idempotent(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    grant = await gateway.provision_grant(
        user_email="alice@corp.example", connection="pg-prod", duration_seconds=3600, correlation_id="wf-8"
    )
    live = hoop.connect("alice@corp.example", "pg-prod")
    clock.advance(minutes=10)
    revoked = await gateway.revoke_grant(grant.review_id)
    assert revoked.status == "REVOKED"
    # review.go sets revoke_at only on approval: a revoked review keeps it, and stops counting as a grant
    assert revoked.revoke_at == grant.revoke_at
    assert (revoked.session_id, revoked.correlation_id) == (grant.session_id, "wf-8")
    with pytest.raises(HoopAccessDenied):
        hoop.connect("alice@corp.example", "pg-prod")
    assert hoop.session(live)["status"] == "open"  # revoke blocks new sessions only
    again = await gateway.revoke_grant(grant.review_id)
    assert again == revoked
    with pytest.raises(GatewayNotFoundError):
        await gateway.revoke_grant("00000000-0000-4000-8000-000000000000")


async def test_revoking_a_pending_review_is_refused(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    pending = hoop.create_pending_review("alice@corp.example", "pg-prod")
    with pytest.raises(GatewayRefusedError, match="it is PENDING"):
        await gateway.revoke_grant(pending.review_id)


async def test_kill_open_sessions_of_a_grant(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    await gateway.provision_grant(
        user_email="alice@corp.example", connection="pg-staging", duration_seconds=3600, correlation_id="wf-9"
    )
    live = hoop.connect("alice@corp.example", "pg-staging")
    hoop.add_connection("app-db", access_groups=["dba"])
    hoop.connect("bob@corp.example", "app-db")  # someone else's, through standing access
    open_sessions = await gateway.list_sessions(
        user="alice@corp.example", connection="pg-staging", status="open"
    )
    assert [s.id for s in open_sessions] == [live]
    assert open_sessions[0].review_id is None  # hoop links no session to the grant that let it through
    assert open_sessions[0].user_subject == hoop.user("alice@corp.example")["id"]
    assert await gateway.get_session(live) == open_sessions[0]
    await gateway.kill_session(live)
    assert hoop.session(live)["status"] == "done"
    await gateway.kill_session(live)  # already done: fine
    left = await gateway.list_sessions(user="alice@corp.example", connection="pg-staging", status="open")
    assert left == []
    assert len(await gateway.list_sessions(status="open")) == 1
    assert await gateway.list_sessions(user="nobody@corp.example") == []
    with pytest.raises(GatewayNotFoundError):
        await gateway.kill_session("00000000-0000-4000-8000-000000000000")
    with pytest.raises(GatewayNotFoundError):
        await gateway.get_session("00000000-0000-4000-8000-000000000000")


async def test_a_kill_answered_204_is_not_a_session_ended(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    hoop.add_connection("app-db", access_groups=["eng"])
    elsewhere = hoop.connect("alice@corp.example", "app-db")
    hoop.detach(elsewhere)  # lives on another gateway process
    await gateway.kill_session(elsewhere)  # hoop answers 204...
    assert (await gateway.get_session(elsewhere)).status == "open"  # ...and only a read-back tells


def give_subject(hoop: HoopStandIn, email: str, subject: str) -> None:
    """Give a person an IdP-style subject (an OIDC ``sub`` such as Azure's base64url one may hold ``_``);
    the stand-in mints UUIDs, which no LIKE pattern can confuse. Before the person has any session."""
    with hoop._lock:
        users = hoop._state["users"]
        user = users.pop(hoop.user(email)["id"])
        user["id"] = subject
        users[subject] = user


async def test_list_sessions_filters_user_and_connection_exactly_where_hoop_matches_like(
    gateway: HoopGateway, hoop: HoopStandIn
) -> None:
    hoop.add_user("mallet@corp.example", "Mallet", groups=["eng"])
    give_subject(hoop, "alice@corp.example", "a_ice")
    give_subject(hoop, "mallet@corp.example", "alice")  # LIKE 'a_ice' matches it
    for name in ("pg_prod", "pg-prod-eng"):
        hoop.add_connection(name, access_groups=["eng"])
    hoop.add_connection("pgXprod", access_groups=["eng"])  # LIKE 'pg_prod' matches it
    mine = hoop.connect("alice@corp.example", "pg_prod")
    hoop.connect("alice@corp.example", "pgXprod")
    hoop.connect("mallet@corp.example", "pg_prod")
    hoop.connect("mallet@corp.example", "pgXprod")

    # hoop itself lists all four for alice's subject and the connection: both filters are LIKE patterns
    async with httpx.AsyncClient(
        base_url=hoop.api_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, verify=_TLS
    ) as raw:
        rows = (await raw.get("/sessions", params={"user": "a_ice", "connection": "pg_prod"})).json()["data"]
    assert len(rows) == 4

    assert [s.id for s in await gateway.list_sessions(user="alice@corp.example", connection="pg_prod")] == [
        mine
    ]
    assert [s.id for s in await gateway.list_sessions(user="a_ice", connection="pg_prod")] == [mine]
    theirs = await gateway.list_sessions(user="alice", connection="pg_prod")
    assert [s.user_email for s in theirs] == ["mallet@corp.example"]
    assert {s.connection for s in await gateway.list_sessions(connection="pg_prod")} == {"pg_prod"}


async def test_list_sessions_since_asks_hoop_and_keeps_exactly_the_later_ones(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    hoop.add_connection("app-db", access_groups=["eng"])
    early = hoop.connect("alice@corp.example", "app-db")  # 09:00:00
    clock.advance(minutes=10)
    at_bound = hoop.connect("alice@corp.example", "app-db")  # 09:10:00
    clock.advance(seconds=1)
    later = hoop.connect("alice@corp.example", "app-db")  # 09:10:01
    hoop.clear_calls()
    since = T0 + timedelta(minutes=10, microseconds=500_000)
    found = await gateway.list_sessions(user="alice@corp.example", connection="app-db", since=since)
    assert [s.id for s in found] == [later]  # 09:10:00 is half a second too early
    query = next(c.query for c in hoop.calls if c.path == "/api/sessions")
    assert query["start_date"] == "2026-03-02T09:10:00Z"  # whole seconds, rounded down
    exact = await gateway.list_sessions(user="alice@corp.example", since=T0 + timedelta(minutes=10))
    assert [s.id for s in exact] == [later, at_bound]
    assert early not in [s.id for s in await gateway.list_sessions(since=T0 + timedelta(seconds=1))]


def review_puts(hoop: HoopStandIn, review_id: str) -> list[Any]:
    return [c.json for c in hoop.calls if c.method == "PUT" and c.path == f"/api/reviews/{review_id}"]


async def test_decide_hoop_reviews(gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock) -> None:
    approve = hoop.create_pending_review("alice@corp.example", "pg-staging", duration_sec=600)
    await gateway.decide_review(approve.review_id, approve=True)
    approved = await gateway.get_review(approve.review_id)
    # one forced call decides it, whatever the reviewer groups (the key is in none of them)
    assert approved.status == "APPROVED" and approved.revoke_at == T0 + timedelta(minutes=10)
    assert review_puts(hoop, approve.review_id) == [{"status": "APPROVED", "force_review": True}]
    clock.advance(minutes=5)
    await gateway.decide_review(approve.review_id, approve=True)  # again: read first, nothing sent
    assert review_puts(hoop, approve.review_id) == [{"status": "APPROVED", "force_review": True}]
    assert (await gateway.get_review(approve.review_id)).revoke_at == T0 + timedelta(minutes=10)  # not reset

    reject = hoop.create_pending_review("alice@corp.example", "pg-prod")
    await gateway.decide_review(reject.review_id, approve=False, reason="not during the freeze")
    assert hoop.review(reject.review_id)["rejection_reason"] == "not during the freeze"
    await gateway.decide_review(reject.review_id, approve=False)  # again: fine
    with pytest.raises(GatewayRefusedError, match="is REJECTED and can no longer be approved"):
        await gateway.decide_review(reject.review_id, approve=True)
    assert review_puts(hoop, reject.review_id) == [
        {"status": "REJECTED", "rejection_reason": "not during the freeze"}
    ]
    with pytest.raises(GatewayNotFoundError):
        await gateway.decide_review("00000000-0000-4000-8000-000000000000", approve=True)


async def test_a_5xx_on_a_decision_is_unknown_until_read_and_never_approved_twice(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    review = hoop.create_pending_review("alice@corp.example", "pg-prod", duration_sec=600)
    # the approval is written but the answer is a 500: the read-back says it is APPROVED, so it succeeded
    hoop.fail_next(f"/reviews/{review.review_id}", 500, after_write=True, method="PUT")
    await gateway.decide_review(review.review_id, approve=True)
    assert (await gateway.get_review(review.review_id)).revoke_at == T0 + timedelta(minutes=10)
    clock.advance(minutes=3)
    await gateway.decide_review(review.review_id, approve=True)  # a retry: no second approval
    assert review_puts(hoop, review.review_id) == [{"status": "APPROVED", "force_review": True}]
    assert (await gateway.get_review(review.review_id)).revoke_at == T0 + timedelta(minutes=10)

    # a 5xx before the write: the read-back shows it PENDING, so the error stands (retried later)
    other = hoop.create_pending_review("alice@corp.example", "pg-prod")
    hoop.fail_next(f"/reviews/{other.review_id}", 503, method="PUT")
    with pytest.raises(GatewayTransientError):
        await gateway.decide_review(other.review_id, approve=True)
    assert hoop.review(other.review_id)["status"] == "PENDING"
    await gateway.decide_review(other.review_id, approve=True)
    assert hoop.review(other.review_id)["status"] == "APPROVED"


async def test_decide_needs_the_force_approval_groups(hoop: HoopStandIn) -> None:
    hoop.add_connection("pg-unforced", access_groups=["eng"], reviewers=["sre", "dba-owners"])
    unforced = hoop.create_pending_review("alice@corp.example", "pg-unforced")
    async with make_gateway(hoop) as grantflow:
        # admin, but not in the connection's force-approval groups (it has none): hoop says not eligible
        with pytest.raises(GatewayRefusedError, match="force-approval groups"):
            await grantflow.decide_review(unforced.review_id, approve=True)
    async with make_gateway(hoop, SRE_KEY) as sre:
        with pytest.raises(GatewayRefusedError, match="force-approval groups"):
            await sre.decide_review(unforced.review_id, approve=True)
    assert hoop.review(unforced.review_id)["status"] == "PENDING"


async def test_pending_reviews_read_the_onetime_command_from_the_session_detail(
    gateway: HoopGateway, hoop: HoopStandIn
) -> None:
    review = hoop.create_pending_review("alice@corp.example", "pg-prod", type="onetime", command="VACUUM t")
    [listed] = await gateway.list_pending_reviews()
    assert listed.review_id == review.review_id and listed.command is None  # the list blanks the script
    assert await gateway.session_command(review.session_id) == "VACUUM t"


# ---------------------------------------------------------------------- listing and directory


async def test_list_sessions_pages_through_everything(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    hoop.add_connection("dba-console", access_groups=["dba"])  # standing access: no rule, no review
    made = []
    for _ in range(230):
        made.append(hoop.connect("bob@corp.example", "dba-console"))
        clock.advance(seconds=1)
    sessions = await gateway.list_sessions(connection="dba-console")
    assert [s.id for s in sessions] == list(reversed(made))
    pages = [c.query for c in hoop.calls if c.path == "/api/sessions"]
    assert [p["offset"] for p in pages] == ["0", "100", "200"]
    assert {p["limit"] for p in pages} == {"100"}
    assert sessions[0].start_date == T0 + timedelta(seconds=229)
    assert sessions[0].end_date is None


async def test_list_connections_pages(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    for n in range(120):
        hoop.add_connection(f"db-{n:03d}", reviewers=["dba-owners"])
    connections = await gateway.list_connections()
    assert len(connections) == 122
    prod = next(c for c in connections if c.name == "pg-prod")
    assert (prod.type, prod.subtype, prod.reviewers, prod.access_max_duration) == (
        "database",
        "postgres",
        ["dba-owners"],
        7200,
    )
    assert [c.query for c in hoop.calls] == [
        {"page": "1", "page_size": "100"},
        {"page": "2", "page_size": "100"},
    ]


async def test_users_groups_and_access_control(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    alice = await gateway.get_user("alice@corp.example")
    assert (alice.name, alice.slack_id, alice.groups, alice.role) == ("Alice", "U0ALICE", ["eng"], "standard")
    assert await gateway.get_user(alice.id) == alice
    updated = await gateway.put_user(alice.model_copy(update={"groups": ["eng", "analysts"]}))
    assert updated.groups == ["analysts", "eng"]
    assert (updated.name, updated.slack_id) == ("Alice", "U0ALICE")  # sent in full, so nothing was cleared
    assert await gateway.list_user_groups() == ["analysts", "dba", "eng"]
    assert await gateway.access_control_groups() == {"pg-prod": ["dba", "eng"], "pg-staging": ["eng"]}
    with pytest.raises(GatewayNotFoundError):
        await gateway.get_user("newbie@corp.example")
    stripped = await gateway.put_user(GatewayUser(id=alice.id, email=alice.email))
    assert (stripped.name, stripped.slack_id, stripped.groups) == ("", "", [])  # hoop replaces the whole user


async def test_connection_access_rules_read_every_gate(gateway: HoopGateway, hoop: HoopStandIn) -> None:
    """What ``domain.access`` decides by, read through hoop's API: access control, attributes, the jit rule
    (by attribute before by name), the review plugin; plugin off and unknown connections."""
    hoop.add_access_rule("prod-by-name", connection_names=["pg-prod"], reviewers_groups=["dba-owners"])
    hoop.add_access_rule("cmd-only", access_type="command", connection_names=["pg-staging"])
    rules = await gateway.connection_access_rules("pg-prod")
    assert rules.access_control_enabled and rules.access_groups == ["dba", "eng"]
    assert rules.review_rule is not None and rules.review_rule.name == "prod-by-name"
    assert rules.review_plugin_groups == ["dba-owners"]
    staging = await gateway.connection_access_rules("pg-staging")
    assert staging.review_rule is None  # a command rule does not review connects

    hoop.add_access_rule(
        "prod-by-attribute",
        reviewers_groups=["sre"],
        skip_review_groups=["dba"],
        force_approval_groups=["gf"],
    )
    hoop.add_attribute(
        "tier-1",
        connection_names=["pg-prod"],
        access_control_group_names=["data"],
        access_request_rule_names=["prod-by-attribute"],
    )
    rules = await gateway.connection_access_rules("pg-prod")
    assert rules.attribute_groups == {"tier-1": ["data"]}
    assert rules.review_rule is not None and rules.review_rule.name == "prod-by-attribute"
    assert rules.review_rule.skip_review_groups == ["dba"]
    assert rules.review_rule.force_approval_groups == ["gf"]
    assert rules.allowing_groups() == ["data", "dba", "eng"]

    hoop.set_access_control(False)
    assert not (await gateway.connection_access_rules("pg-prod")).access_control_enabled
    with pytest.raises(GatewayNotFoundError):
        await gateway.connection_access_rules("pg-nope")
    assert await gateway.find_user("newbie@corp.example") is None
    alice = await gateway.find_user("alice@corp.example")
    assert alice is not None and alice.groups == ["eng"]
