"""Contract test: every call ``HoopGateway`` makes, and every answer the hoop stand-in gives it, checked
against hoop's OpenAPI spec (``../shared/specs/hoop-openapiv3.json``, as frozen in
``tests/contracts/hoop.json`` so that this runs in a fresh clone too).

The stand-in follows the *running* gateway where it departs from its spec. Those departures are listed in
``KNOWN_DIFFERENCES`` below, each with its reason; the validator forgives exactly those and nothing else, so
any other drift — a renamed field, an undeclared query parameter, a new status code, a wrong type — fails
``test_every_exchange_matches_the_spec``. ``test_every_known_difference_still_happens`` fails when a listed
difference is no longer seen (fix the list, or the stand-in), and the negative tests prove the validator
does reject wrong bodies.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from integrations.gateway import (
    GatewayError,
    GatewayMachineIdentity,
    GatewayNotFoundError,
    GatewayRefusedError,
)
from integrations.hoop import HoopGateway
from sandbox.hoop import HoopStandIn, ManualClock
from tests.contracts import NOT_FROZEN_HINT
from tests.hoop_spec import Exchange, KnownDifference, RecordingTransport, SpecValidator, load_spec

SPEC = load_spec()

ADMIN_KEY = "hpk_contract_admin"
SRE_KEY = "hpk_contract_sre"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_TLS = ssl.create_default_context()

# Where the running gateway (hoophq/hoop e939597, and so the stand-in) differs from its spec. Each entry is
# forgiven exactly where it names; keep the reason with it. hoop.md and specs/README.md are the sources.
KNOWN_DIFFERENCES: list[KnownDifference] = [
    # The provision handler answers 202 Accepted; the spec documents 200.
    KnownDifference(
        "provision-202",
        "status",
        "POST /sessions/provision answers 202 in the code, 200 in the spec",
        operation="POST /sessions/provision",
        status=202,
        spec_status=200,
    ),
    # Omitting or nulling approved_reviewers auto-approves every group; the spec types it as a plain array.
    KnownDifference(
        "provision-approved-reviewers-null",
        "nullable",
        "approved_reviewers: null means approve every group",
        field="openapi.ProvisionSession.approved_reviewers",
    ),
    # API keys (Authorization: Bearer hpk_… or Api-Key) are how grantflow authenticates, and the only auth
    # /sessions/provision accepts; the spec's securitySchemes declare OAuth2 only.
    KnownDifference("api-key-auth", "auth", "API-key auth is not in the spec's security schemes"),
    # review.go approves once min(len(groups), min_approvals) groups approved; the PUT /reviews prose says
    # "All groups must be approved". Checked by test_known_behaviour.
    KnownDifference("approval-count", "behaviour", "approval needs min(len(groups), min_approvals) groups"),
    # The spec calls Review.revoke_at "the time when this review was revoked"; on a jit review it is when
    # access ends (approval + access_duration), set at approval. Checked by test_known_behaviour.
    KnownDifference("revoke-at-is-the-expiry", "behaviour", "revoke_at is the end of jit access"),
    # Go pointers without omitempty: these arrive as null though the spec types them as non-null.
    KnownDifference(
        "session-end-date-null", "nullable", "null while running", field="openapi.Session.end_date"
    ),
    KnownDifference(
        "session-review-null", "nullable", "null without a review", field="openapi.Session.review"
    ),
    KnownDifference(
        "session-review-revoke-at-null",
        "nullable",
        "null until a jit review is approved",
        field="openapi.SessionReview.revoke_at",
    ),
    KnownDifference(
        "review-revoke-at-null",
        "nullable",
        "null until a jit review is approved",
        field="openapi.Review.revoke_at",
    ),
    KnownDifference(
        "session-review-rule-name-null",
        "nullable",
        "the spec's own prose: null when the review plugin made it",
        field="openapi.SessionReview.access_request_rule_name",
    ),
    KnownDifference(
        "review-rule-name-null",
        "nullable",
        "the spec's own prose: null when the review plugin made it",
        field="openapi.Review.access_request_rule_name",
    ),
    KnownDifference(
        "review-group-reviewed-by-null",
        "nullable",
        "the spec's own example shows null while the group is pending",
        field="openapi.ReviewGroup.reviewed_by",
    ),
    KnownDifference(
        "review-group-review-date-null",
        "nullable",
        "the spec's own example shows null while the group is pending",
        field="openapi.ReviewGroup.review_date",
    ),
    # Review groups start PENDING (the spec's own example), but their status enum is the request enum
    # APPROVED/REJECTED/REVOKED.
    KnownDifference(
        "review-group-pending",
        "enum",
        "a group not yet reviewed is PENDING",
        field="openapi.ReviewGroup.status",
        values=("PENDING",),
    ),
    # "Deliberately not omitempty ... It is null on the list endpoint" (the spec's prose), typed non-null.
    KnownDifference(
        "connection-effective-features-null",
        "nullable",
        "null on the list endpoint",
        field="openapi.Connection.effective_features",
    ),
    # With page/page_size the list is paginated ({pages, data}, the spec's own but unreferenced
    # PaginatedResponse-openapi_Connection); the spec declares only the bare array.
    KnownDifference(
        "connections-paginated",
        "response_schema",
        "paging changes the shape of GET /connections",
        operation="GET /connections",
        schema="openapi.PaginatedResponse-openapi_Connection",
        when_query=("page", "page_size"),
    ),
    # machineidentity.go Update answers toCredentialResponses of nothing new: a nil slice, null.
    KnownDifference(
        "machine-identity-new-credentials-null",
        "nullable",
        "null when the update provisioned no credential",
        field="openapi.MachineIdentityUpdateResponse.new_credentials",
    ),
    # serviceaccount.go List appends to a nil slice: with no service account the answer is null, not [].
    KnownDifference("serviceaccounts-null", "behaviour", "GET /serviceaccounts answers null when empty"),
    # services.UpdateMachineIdentity wraps ErrNotFound, so the handler's 404 case never matches: 400.
    KnownDifference("machine-identity-unknown-400", "behaviour", "PUT of an unknown machine identity is 400"),
    # machineidentity.go Delete answers {"message": "machine identity deleted"}; the spec's 200 has no body.
    KnownDifference("machine-identity-delete-body", "behaviour", "DELETE answers a message body"),
    # Not listed because grantflow never calls it: the router serves /connection-tags, the spec says
    # /connections-tags. PUT /users/{emailOrID} names its path parameter "id" (a spec typo, no effect here).
]

# The operations HoopGateway uses; the scenario below must exercise each of them.
ADAPTER_OPERATIONS = {
    "GET /sessions",
    "POST /sessions/provision",
    "GET /sessions/{session_id}",
    "POST /sessions/{session_id}/kill",
    "GET /reviews/{id}",
    "PUT /reviews/{id}",
    "GET /connections",
    "GET /connections/{nameOrID}",
    "GET /attributes",
    "GET /access-requests/rules",
    "GET /plugins/{name}",
    "GET /users",
    "GET /users/{emailOrID}",
    "PUT /users/{emailOrID}",
    "GET /users/groups",
    "GET /api-keys",
    "GET /api-keys/{nameOrID}",
    "PUT /api-keys/{nameOrID}",
    "DELETE /api-keys/{nameOrID}",
    "GET /ai-agents",
    "GET /ai-agents/{nameOrID}",
    "PUT /ai-agents/{nameOrID}",
    "DELETE /ai-agents/{nameOrID}",
    "GET /serviceaccounts",
    "PUT /serviceaccounts/{subject}",
    "GET /machineidentities",
    "GET /machineidentities/{name}",
    "PUT /machineidentities/{name}",
}


@dataclass
class Recorded:
    exchanges: list[Exchange]
    adapter_exchanges: list[Exchange]


def seed(hoop: HoopStandIn) -> None:
    hoop.add_user("alice@corp.example", "Alice", groups=["eng"], slack_id="U0ALICE")
    hoop.add_user("bob@corp.example", "Bob", groups=["dba"])
    hoop.add_user("newbie@corp.example", signed_in=False)
    hoop.add_connection(
        "pg-prod", access_groups=["dba", "eng"], reviewers=["dba-owners"], access_max_duration=7200
    )
    hoop.add_connection("dba-console", access_groups=["dba"])  # standing access: no rule, no review
    hoop.add_attribute("tier-1", connection_names=["pg-prod"], access_control_group_names=["data"])
    hoop.add_connection("pg-staging", access_groups=["eng"], reviewers=["sre", "dba-owners"])
    hoop.add_access_rule(
        "prod-jit", connection_names=["pg-prod"], reviewers_groups=["dba-owners"], min_approvals=1
    )


async def expect_failure(call: Awaitable[Any]) -> None:
    with pytest.raises(GatewayError):
        await call


@pytest.fixture(scope="module")
async def recorded() -> AsyncIterator[Recorded]:
    """Run every adapter call against a fresh stand-in, recording each exchange."""
    clock = ManualClock(T0)
    hoop = HoopStandIn(clock=clock, api_keys={ADMIN_KEY: ["admin"], SRE_KEY: ["sre"]})
    seed(hoop)
    hoop.start()
    adapter_exchanges: list[Exchange] = []
    admin = HoopGateway(
        hoop.url,
        ADMIN_KEY,
        transport=RecordingTransport(httpx.AsyncHTTPTransport(verify=_TLS), adapter_exchanges),
    )
    sre = HoopGateway(
        hoop.url,
        SRE_KEY,
        transport=RecordingTransport(httpx.AsyncHTTPTransport(verify=_TLS), adapter_exchanges),
        auth_header="api-key",
    )
    raw_exchanges: list[Exchange] = []
    raw = httpx.AsyncClient(
        base_url=hoop.api_url,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        transport=RecordingTransport(httpx.AsyncHTTPTransport(verify=_TLS), raw_exchanges),
    )
    try:
        grant = await admin.provision_grant(
            user_email="alice@corp.example", connection="pg-prod", duration_seconds=3600, correlation_id="c-1"
        )
        await admin.provision_grant(
            user_email="alice@corp.example", connection="pg-prod", duration_seconds=3600, correlation_id="c-1"
        )
        live = hoop.connect("alice@corp.example", "pg-prod")
        hoop.connect("bob@corp.example", "dba-console")  # standing access: no review
        clock.advance(minutes=5)
        await admin.list_sessions(user="alice@corp.example", connection="pg-prod", status="open")
        await admin.kill_session(live)
        await admin.kill_session(live)  # already done: 204 all the same
        await admin.revoke_grant(grant.review_id)
        await admin.revoke_grant(grant.review_id)  # 400, then read back
        await admin.find_grants(correlation_id="c-1")

        pending = hoop.create_pending_review("alice@corp.example", "pg-staging")
        # grantflow forces its approvals; a key outside the force-approval groups gets 400 "not eligible"
        await expect_failure(sre.decide_review(pending.review_id, approve=True))
        rejected = hoop.create_pending_review("bob@corp.example", "pg-prod")
        await admin.decide_review(rejected.review_id, approve=False, reason="change freeze")
        await expect_failure(admin.decide_review(rejected.review_id, approve=True))
        await admin.list_sessions()

        await admin.list_connections()
        await admin.access_control_groups()
        await admin.connection_access_rules("pg-prod")
        await expect_failure(admin.connection_access_rules("pg-nope"))
        await admin.find_user("newbie@corp.example")
        users = await admin.list_users()
        alice = await admin.get_user("alice@corp.example")
        await admin.put_user(alice.model_copy(update={"groups": ["eng", "analysts"]}))
        await admin.list_user_groups()
        assert users
        for kind in ("api_keys", "ai_agents"):
            hoop.add_identity_key(kind, "ci-deploy", ["eng", "analysts"], created_by="alice@corp.example")
            assert [k.name for k in await admin.list_identity_keys(kind) if k.name == "ci-deploy"]
            narrowed = await admin.set_identity_key_groups(kind, "ci-deploy", ["eng"])
            assert narrowed.groups == ["eng"]
            revoked = await admin.revoke_identity_key(kind, "ci-deploy")
            assert revoked.status == "revoked"
        hoop.add_service_account("etl-client", "etl", ["eng", "analysts"])
        etl = next(a for a in await admin.list_service_accounts() if a.subject == "etl-client")
        narrowed_account = await admin.put_service_account(etl.model_copy(update={"groups": ["eng"]}))
        assert (narrowed_account.groups, narrowed_account.status) == (["eng"], "active")
        hoop.add_machine_identity("backend", ["pg-prod", "dba-console"], attributes=["tier-1"])
        assert [m.name for m in await admin.list_machine_identities()] == ["backend"]
        backend = await admin.get_machine_identity("backend")
        assert backend.attribute_connections == ["pg-prod"]
        unbound = await admin.put_machine_identity(
            backend.model_copy(update={"connection_names": ["pg-prod"]})
        )
        assert unbound.connection_names == ["pg-prod"] and unbound.attributes == ["tier-1"]
        with pytest.raises(GatewayNotFoundError):  # a 400 from hoop, read back as the 404 it is
            await admin.put_machine_identity(GatewayMachineIdentity(name="nope"))

        await expect_failure(
            admin.provision_grant(
                user_email="newbie@corp.example",
                connection="pg-prod",
                duration_seconds=60,
                correlation_id="c-2",
            )
        )
        await expect_failure(
            admin.provision_grant(
                user_email="alice@corp.example",
                connection="pg-nope",
                duration_seconds=60,
                correlation_id="c-3",
            )
        )

        # Beyond the adapter: the rest of what the stand-in serves, checked the same way.
        provisioned = await raw.post(
            "/sessions/provision",
            json={"user_email": "bob@corp.example", "connection": "pg-staging", "approved_reviewers": None},
        )
        assert provisioned.status_code == 202
        await raw.get("/access-requests/rules")
        await raw.get("/reviews")
        await raw.get("/sessions", params={"review.status": "PENDING", "count": "exact", "limit": 10})
        await raw.get("/connections")
        created = await raw.post(
            "/serviceaccounts",
            json={"subject": "ci-client", "name": "ci", "status": "active", "groups": ["eng"]},
        )
        assert created.status_code == 201
        made = await raw.post(
            "/machineidentities",
            json={"name": "worker", "connection_names": ["pg-staging"], "attributes": []},
        )
        assert made.status_code == 201 and made.json()["credentials"][0]["connection_name"] == "pg-staging"
        assert (await raw.get("/machineidentities/worker/credentials")).status_code == 200
        assert (await raw.post("/machineidentities/worker/credentials/pg-staging/rotate")).status_code == 201
        yield Recorded(exchanges=adapter_exchanges + raw_exchanges, adapter_exchanges=adapter_exchanges)
    finally:
        await admin.aclose()
        await sre.aclose()
        await raw.aclose()
        hoop.stop()


@pytest.fixture(scope="module")
def validated(recorded: Recorded) -> tuple[list[str], set[str]]:
    validator = SpecValidator(SPEC, KNOWN_DIFFERENCES)
    problems: list[str] = []
    for exchange in recorded.exchanges:
        assert not exchange.injected
        problems += validator.check(exchange)
        problems += validator.check_auth(exchange, [ADMIN_KEY, SRE_KEY])
    return problems, validator.used


def test_every_exchange_matches_the_spec(validated: tuple[list[str], set[str]]) -> None:
    problems, _ = validated
    assert problems == [], "drift from hoop's spec:\n" + "\n".join(problems)


def test_every_known_difference_still_happens(validated: tuple[list[str], set[str]]) -> None:
    _, used = validated
    expected = {d.key for d in KNOWN_DIFFERENCES if d.kind != "behaviour"}
    assert expected - used == set(), "listed differences no longer seen: remove them, or fix the stand-in"


def test_the_scenario_covers_every_adapter_operation(recorded: Recorded) -> None:
    validator = SpecValidator(SPEC, [])
    seen = set()
    for exchange in recorded.adapter_exchanges:
        found = validator.operation(exchange.method, exchange.path)
        assert found is not None, str(exchange)
        seen.add(f"{exchange.method} {found[0]}")
    assert seen == ADAPTER_OPERATIONS


def test_without_the_list_the_gateway_fails_its_spec(recorded: Recorded) -> None:
    strict = SpecValidator(SPEC, [])
    problems = [p for exchange in recorded.exchanges for p in strict.check(exchange)]
    assert any("status 202 is not among" in p for p in problems)
    assert any("None is not of type 'string'" in p for p in problems)


# ---------------------------------------------------------------------- the validator rejects drift


@pytest.fixture
def validator() -> SpecValidator:
    return SpecValidator(SPEC, KNOWN_DIFFERENCES)


def exchange(
    method: str,
    path: str,
    status: int,
    response: Any,
    request: Any = None,
    query: list[tuple[str, str]] | None = None,
) -> Exchange:
    return Exchange(method, path, query or [], {}, request, status, response)


GOOD_SESSION = {
    "id": "5701046a-7b7a-4a78-abb0-a24c95e6fe54",
    "user": "alice@corp.example",
    "user_id": "c1bb2718-dcae-4e92-9ec5-ba4e0aac1888",
    "connection": "pg-prod",
    "status": "open",
    "start_date": "2026-03-02T09:00:00Z",
    "end_date": None,
    "review": None,
}


def test_a_good_body_passes(validator: SpecValidator) -> None:
    assert validator.check(exchange("GET", "/api/sessions/x", 200, GOOD_SESSION)) == []


@pytest.mark.parametrize(
    ("wrong", "complaint"),
    [
        ({"status": "running"}, "'running' is not one of"),
        ({"user_name": None}, "None is not of type 'string'"),  # nullable only where listed
        ({"start_date": 1709370000}, "is not of type 'string'"),
        ({"id": "not-a-uuid"}, "is not a 'uuid'"),
        ({"surprise": True}, "Additional properties are not allowed"),
        ({"review": {"type": "forever"}}, "'forever' is not one of"),
        ({"review": {"status": "PENDING", "access_duration": "30m"}}, "is not of type 'integer'"),
    ],
)
def test_a_drifting_session_fails(validator: SpecValidator, wrong: dict[str, Any], complaint: str) -> None:
    problems = validator.check(exchange("GET", "/api/sessions/x", 200, {**GOOD_SESSION, **wrong}))
    assert any(complaint in p for p in problems), problems


def test_other_drift_fails(validator: SpecValidator) -> None:
    provision = {"user_email": "a@corp.example", "connection": "pg-prod"}
    answer = {
        "session_id": "5701046a-7b7a-4a78-abb0-a24c95e6fe54",
        "user_email": "a@corp.example",
        "has_review": False,
    }
    assert validator.check(exchange("POST", "/api/sessions/provision", 202, answer, provision)) == []
    assert validator.check(exchange("POST", "/api/sessions/provision", 201, answer, provision))  # status
    assert validator.check(
        exchange("POST", "/api/sessions/provision", 202, {**answer, "has_review": "no"}, provision)
    )
    assert validator.check(
        exchange("POST", "/api/sessions/provision", 202, answer, {**provision, "duration": 60})
    )
    assert validator.check(
        exchange("POST", "/api/sessions/provision", 202, answer, {"connection": "pg-prod"})
    )
    assert validator.check(exchange("GET", "/api/sessions", 200, {"data": []}, query=[("status", "open")]))
    assert validator.check(exchange("GET", "/api/sessions", 200, {"data": []}, query=[("limit", "ten")]))
    assert validator.check(exchange("GET", "/api/sessions", 200, {"data": [], "total": "3"}))
    assert validator.check(exchange("GET", "/api/nowhere", 200, {})) == [
        "GET /api/nowhere → 200: no such operation in the spec"
    ]
    # in the spec, but not among the operations frozen for the stand-in
    assert validator.check(exchange("GET", "/api/agents", 200, [])) == [
        f"GET /api/agents → 200: GET /agents {NOT_FROZEN_HINT}"
    ]
    assert validator.check(exchange("POST", "/api/sessions/x/kill", 204, {"killed": True}))  # 204 has no body
    assert validator.check(exchange("GET", "/api/users/groups", 200, [{"name": "eng"}]))
    assert validator.check(
        exchange("GET", "/api/connections", 200, {"pages": {}, "data": []})
    )  # unpaged query
    # a listed difference applies only where it is listed
    pending_group = {"id": "5701046a-7b7a-4a78-abb0-a24c95e6fe54", "group": "sre", "status": "PENDING"}
    assert validator.validate_component("openapi.ReviewGroup", pending_group) == []
    assert validator.validate_component("openapi.ReviewGroup", {**pending_group, "status": "WAITING"})
    assert validator.validate_component("openapi.Review", {"type": "jit", "session": None})


# ---------------------------------------------------------------------- behaviour the prose states otherwise


async def check_approval_count(hoop: HoopStandIn, spec: dict[str, Any]) -> None:
    assert "All groups must be approved" in spec["paths"]["/reviews/{id}"]["put"]["description"]
    review = hoop.create_pending_review(
        "alice@corp.example", "pg-staging", groups=["sre", "dba-owners"], min_approvals=1
    )
    # a plain (unforced) PUT, as a reviewer group member sends it: grantflow itself approves with force_review
    async with httpx.AsyncClient(
        base_url=hoop.api_url, headers={"Authorization": f"Bearer {SRE_KEY}"}, verify=_TLS
    ) as sre:
        answer = await sre.put(f"/reviews/{review.review_id}", json={"status": "APPROVED"})
        assert answer.status_code == 200, answer.text
    decided = hoop.review(review.review_id)
    assert decided["status"] == "APPROVED"  # the prose would still wait for dba-owners
    assert {g["group"]: g["status"] for g in decided["review_groups_data"]} == {
        "sre": "APPROVED",
        "dba-owners": "PENDING",
    }


async def check_revoke_at(hoop: HoopStandIn, spec: dict[str, Any]) -> None:
    described = spec["components"]["schemas"]["openapi.Review"]["properties"]["revoke_at"]["description"]
    assert described == "The time when this review was revoked"
    async with HoopGateway(hoop.url, ADMIN_KEY, transport=httpx.AsyncHTTPTransport(verify=_TLS)) as gw:
        grant = await gw.provision_grant(
            user_email="alice@corp.example", connection="pg-prod", duration_seconds=600, correlation_id="b-1"
        )
        assert grant.status == "APPROVED" and grant.revoke_at == T0 + timedelta(
            seconds=600
        )  # not revoked: expiry
        with pytest.raises(GatewayRefusedError):  # pending reviews have no revoke_at and cannot be revoked
            await gw.revoke_grant(hoop.create_pending_review("alice@corp.example", "pg-prod").review_id)


def admin_client(hoop: HoopStandIn) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=hoop.api_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, verify=_TLS
    )


async def check_serviceaccounts_null(hoop: HoopStandIn, spec: dict[str, Any]) -> None:
    declared = spec["paths"]["/serviceaccounts"]["get"]["responses"]["200"]["content"]["application/json"]
    assert declared["schema"]["type"] == "array"
    async with admin_client(hoop) as http:
        answer = await http.get("/serviceaccounts")
    assert answer.status_code == 200 and answer.json() is None


async def check_machine_identity_unknown_400(hoop: HoopStandIn, spec: dict[str, Any]) -> None:
    assert "404" in spec["paths"]["/machineidentities/{name}"]["put"]["responses"]
    async with admin_client(hoop) as http:
        answer = await http.put("/machineidentities/nope", json={"name": "nope", "connection_names": []})
        assert answer.status_code == 400 and "resource not found" in answer.json()["message"]
        assert (await http.get("/machineidentities/nope")).status_code == 404  # a read says 404


async def check_machine_identity_delete_body(hoop: HoopStandIn, spec: dict[str, Any]) -> None:
    assert "content" not in spec["paths"]["/machineidentities/{name}"]["delete"]["responses"]["200"]
    hoop.add_machine_identity("gone-soon", ["pg-prod"])
    async with admin_client(hoop) as http:
        answer = await http.delete("/machineidentities/gone-soon")
        assert (answer.status_code, answer.json()) == (200, {"message": "machine identity deleted"})
        assert (await http.delete("/machineidentities/gone-soon")).status_code == 404


BEHAVIOUR_CHECKS: dict[str, Callable[[HoopStandIn, dict[str, Any]], Awaitable[None]]] = {
    "approval-count": check_approval_count,
    "revoke-at-is-the-expiry": check_revoke_at,
    "serviceaccounts-null": check_serviceaccounts_null,
    "machine-identity-unknown-400": check_machine_identity_unknown_400,
    "machine-identity-delete-body": check_machine_identity_delete_body,
}


@pytest.mark.parametrize("key", [d.key for d in KNOWN_DIFFERENCES if d.kind == "behaviour"])
async def test_known_behaviour(key: str) -> None:
    assert key in BEHAVIOUR_CHECKS, f"behaviour difference {key!r} has no check"
    hoop = HoopStandIn(clock=ManualClock(T0), api_keys={ADMIN_KEY: ["admin"], SRE_KEY: ["sre"]})
    seed(hoop)
    hoop.start()
    try:
        await BEHAVIOUR_CHECKS[key](hoop, SPEC)
    finally:
        hoop.stop()
