"""hoop's service accounts and machine identities end to end: the stand-in over real HTTP (as hoop's
serviceaccount.go and machineidentity.go behave, with server.go's role gate), the adapter's read-modify-write
with read-back, the campaign snapshot that includes them, and a campaign's revocation applied to each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.campaigns import CampaignActivities
from domain.campaign_report import Revocation
from domain.campaign_spec import IdentityKind, Scope, load_campaign_spec
from domain.campaigns import AccessVia, CampaignItem, ItemAccess, Source, Subject, SubjectKind
from domain.identity import load_organisation
from domain.policy import load_policies
from domain.population import build_population
from examples import EXAMPLES_DIR, ORGANISATION_FILE, POLICIES_FILE
from integrations.campaign_sources import HoopScimSources
from integrations.gateway import GatewayMachineIdentity, GatewayNotFoundError, GatewayServiceAccount
from integrations.hoop import HoopGateway
from sandbox.hoop import HoopStandIn
from sandbox.hoop.service_identities import service_account_id
from sandbox.seed import seed_hoop
from store import Store
from store.campaigns import StoredItem
from tests.stack import LEDGER_KEY

ADMIN_KEY = "hpk_test_admin"


def make_hoop(state_file: Path | None = None) -> HoopStandIn:
    hoop = HoopStandIn(
        state_file=state_file,
        api_keys={ADMIN_KEY: ["admin", "grantflow"]},
        api_key_names={ADMIN_KEY: "grantflow"},
    )
    hoop.add_connection("pg-prod", access_groups=["analytics"])
    hoop.add_connection("pg-staging", access_groups=["engineering"])
    hoop.add_connection("grafana", type="application", subtype="grafana")  # httpproxy: takes credentials
    hoop.add_connection("mongo", subtype="mongodb")  # no machine-identity credentials for this type
    hoop.add_attribute("tier-1", connection_names=["pg-prod"])
    hoop.add_user("ken@example.com", groups=["engineering"])
    return hoop


@pytest.fixture
def hoop() -> Iterator[HoopStandIn]:
    stand_in = make_hoop()
    stand_in.start()
    yield stand_in
    stand_in.stop()


def client(hoop: HoopStandIn, token: str = ADMIN_KEY) -> httpx.Client:
    return httpx.Client(base_url=hoop.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


# ---------------------------------------------------------------------- the stand-in


def test_service_accounts_are_created_and_replaced_whole_as_hoop_does(hoop: HoopStandIn) -> None:
    with client(hoop) as http:
        assert http.get("/serviceaccounts").json() is None  # a nil slice: null, not []
        body = {"subject": "etl-client", "name": "etl", "status": "active", "groups": ["analytics", "eng"]}
        created = http.post("/serviceaccounts", json=body)
        assert created.status_code == 201
        assert created.json()["id"] == service_account_id("etl-client")  # derived from the subject
        assert created.json()["groups"] == ["analytics", "eng"]
        assert http.post("/serviceaccounts", json=body).status_code == 409
        # subject and status are required (gin binding: 400); an unknown status is 422
        assert http.post("/serviceaccounts", json={"status": "active"}).status_code == 400
        assert http.post("/serviceaccounts", json={"subject": "x"}).status_code == 400
        wrong = http.post("/serviceaccounts", json={"subject": "x", "status": "paused"})
        assert (wrong.status_code, wrong.json()["message"]) == (422, 'wrong status value "paused"')
        # PUT replaces every group: the ones left out are gone; an empty name keeps the stored one
        put = http.put("/serviceaccounts/etl-client", json={"subject": "etl-client", "status": "active"})
        assert put.status_code == 200
        assert put.json()["groups"] is None and put.json()["name"] == ""  # it echoes the request
        listed = http.get("/serviceaccounts").json()
        assert [(a["subject"], a["name"], a["groups"]) for a in listed] == [("etl-client", "etl", [])]
        inactive = {"subject": "etl-client", "status": "inactive", "groups": ["eng"]}
        assert http.put("/serviceaccounts/etl-client", json=inactive).status_code == 200
        assert hoop.service_account("etl-client") | {"id": ""} == {
            "id": "",
            "org_id": listed[0]["org_id"],
            "subject": "etl-client",
            "name": "etl",
            "status": "inactive",
            "groups": ["eng"],
        }
        # the subject is required in the body too; an unknown one is 404; there is no read of one
        assert http.put("/serviceaccounts/etl-client", json={"status": "active"}).status_code == 400
        unknown = http.put("/serviceaccounts/nobody", json={"subject": "nobody", "status": "active"})
        assert (unknown.status_code, unknown.json()["message"]) == (404, "resource not found")
        assert http.get("/serviceaccounts/etl-client").status_code == 404


def test_machine_identities_hold_a_credential_per_connection(hoop: HoopStandIn) -> None:
    with client(hoop) as http:
        assert http.get("/machineidentities").json() == []  # make(…, 0): [] rather than null
        refused = http.post("/machineidentities", json={"name": "w", "connection_names": ["nope"]})
        assert (refused.status_code, refused.json()["message"]) == (
            400,
            "failed creating machine identity: connection nope not found",
        )
        unsupported = http.post("/machineidentities", json={"name": "w", "connection_names": ["mongo"]})
        assert unsupported.status_code == 400 and "unsupported type mongodb" in unsupported.json()["message"]
        assert http.post("/machineidentities", json={"connection_names": []}).status_code == 400  # name
        created = http.post(
            "/machineidentities",
            json={"name": "worker", "connection_names": ["pg-staging", "grafana"], "attributes": ["tier-1"]},
        )
        assert created.status_code == 201
        # one credential per bound connection, and one for pg-prod, which its attribute links
        assert sorted(c["connection_name"] for c in created.json()["credentials"]) == [
            "grafana",
            "pg-prod",
            "pg-staging",
        ]
        assert http.post("/machineidentities", json={"name": "worker"}).status_code == 409
        assert http.get("/machineidentities/nope").json() == {"message": "machine identity not found"}
        # PUT replaces the whole identity: description and attributes left out are cleared
        unbound = http.put(
            "/machineidentities/worker", json={"name": "worker", "connection_names": ["pg-staging"]}
        )
        assert unbound.status_code == 200 and unbound.json()["new_credentials"] is None
        assert unbound.json()["created_at"] == "0001-01-01T00:00:00Z"  # built from a fresh struct
        shown = hoop.machine_identity("worker")
        assert (shown["connection_names"], shown["attributes"]) == (["pg-staging"], [])
        # grafana's credential is revoked; pg-prod's, made for the attribute, outlives the attribute: an
        # update revokes only connections dropped from connection_names (no reconcile)
        assert shown["credentials"] == ["pg-prod", "pg-staging"]
        # an unknown name is 400 (the not-found error is wrapped), a rename keeps the id
        unknown = http.put("/machineidentities/nope", json={"name": "nope", "connection_names": []})
        assert unknown.status_code == 400
        renamed = http.put(
            "/machineidentities/worker", json={"name": "w2", "connection_names": ["pg-staging"]}
        )
        assert renamed.json()["id"] == shown["id"]
        # a null connection_names revokes every credential, then fails (NOT NULL): the row is unchanged
        broken = http.put("/machineidentities/w2", json={"name": "w2"})
        assert broken.status_code == 400
        after = hoop.machine_identity("w2")
        assert (after["connection_names"], after["credentials"]) == (["pg-staging"], ["pg-prod"])
        assert http.delete("/machineidentities/w2").json() == {"message": "machine identity deleted"}
        assert http.delete("/machineidentities/w2").status_code == 404


def test_attribute_links_keep_a_credential_the_names_no_longer_give(hoop: HoopStandIn) -> None:
    hoop.add_machine_identity("reporter", ["pg-prod", "pg-staging"], attributes=["tier-1"])
    with client(hoop) as http:
        answer = http.put(
            "/machineidentities/reporter",
            json={"name": "reporter", "connection_names": ["pg-staging"], "attributes": ["tier-1"]},
        )
        assert answer.status_code == 200
        assert http.get("/machineidentities/reporter/credentials").status_code == 200
        rotated = http.post("/machineidentities/reporter/credentials/pg-prod/rotate")
        assert rotated.status_code == 201 and rotated.json()["connection_name"] == "pg-prod"
    assert hoop.machine_identity("reporter")["credentials"] == ["pg-prod", "pg-staging"]


def test_reads_are_open_to_every_caller_and_writes_to_admins_only(hoop: HoopStandIn) -> None:
    hoop.add_service_account("etl-client", "etl", ["analytics"])
    hoop.add_machine_identity("worker", ["pg-staging"])
    person = hoop.issue_user_token("ken@example.com")
    key = hoop.add_identity_key("api_keys", "reader", ["engineering"])
    for token in (person, key):  # server.go: ReadOnlyAccessRole for reads, AdminOnlyAccessRole for writes
        with client(hoop, token) as http:
            assert http.get("/serviceaccounts").status_code == 200
            assert http.get("/machineidentities").status_code == 200
            assert http.get("/machineidentities/worker").status_code == 200
            assert http.get("/machineidentities/nope").status_code == 404
            sa = {"subject": "etl-client", "status": "inactive", "groups": []}
            assert http.put("/serviceaccounts/etl-client", json=sa).status_code == 403
            assert http.post("/serviceaccounts", json={"subject": "x", "status": "active"}).status_code == 403
            mi = {"name": "worker", "connection_names": []}
            assert http.put("/machineidentities/worker", json=mi).status_code == 403
            assert (
                http.post("/machineidentities", json={"name": "x", "connection_names": []}).status_code == 403
            )
            assert http.delete("/machineidentities/worker").status_code == 403
            assert http.get("/machineidentities/worker/credentials").status_code == 403
    with httpx.Client(base_url=hoop.api_url) as anonymous:
        assert anonymous.get("/serviceaccounts").status_code == 401
    assert hoop.service_account("etl-client")["status"] == "active"
    assert hoop.machine_identity("worker")["credentials"] == ["pg-staging"]


def test_a_restart_forgets_neither(tmp_path: Path) -> None:
    state = tmp_path / "hoop.json"
    first = make_hoop(state)
    first.add_service_account("etl-client", "etl", ["analytics"])
    first.add_machine_identity("worker", ["pg-staging"], attributes=["tier-1"])
    again = make_hoop(state)
    assert again.service_account("etl-client")["groups"] == ["analytics"]
    assert again.machine_identity("worker")["credentials"] == ["pg-prod", "pg-staging"]


# ---------------------------------------------------------------------- adapter and snapshot


@pytest.fixture
async def gateway(hoop: HoopStandIn) -> AsyncIterator[HoopGateway]:
    async with HoopGateway(hoop.url, ADMIN_KEY) as gw:
        yield gw


async def test_the_adapter_writes_whole_and_reads_back(hoop: HoopStandIn, gateway: HoopGateway) -> None:
    assert await gateway.list_service_accounts() == []  # hoop's null
    hoop.add_service_account("etl-client", "etl", ["analytics", "eng"])
    [account] = await gateway.list_service_accounts()
    narrowed = await gateway.put_service_account(account.model_copy(update={"groups": ["eng"]}))
    assert (narrowed.name, narrowed.groups, narrowed.status) == ("etl", ["eng"], "active")
    with pytest.raises(GatewayNotFoundError):
        await gateway.put_service_account(GatewayServiceAccount(subject="nobody"))
    hoop.add_machine_identity("worker", ["pg-staging", "grafana"], attributes=["tier-1"], description="jobs")
    worker = await gateway.get_machine_identity("worker")
    assert (worker.connection_names, worker.attribute_connections) == (["pg-staging", "grafana"], ["pg-prod"])
    after = await gateway.put_machine_identity(worker.model_copy(update={"connection_names": ["grafana"]}))
    assert (after.connection_names, after.attributes, after.description) == (["grafana"], ["tier-1"], "jobs")
    assert hoop.machine_identity("worker")["credentials"] == ["grafana", "pg-prod"]
    with pytest.raises(GatewayNotFoundError):  # hoop's 400 for an unknown name, read back as 404
        await gateway.put_machine_identity(GatewayMachineIdentity(name="nope"))


async def test_the_snapshot_includes_both_with_their_groups_and_connections(
    hoop: HoopStandIn, gateway: HoopGateway
) -> None:
    hoop.add_service_account("etl-client", "etl", ["analytics", "engineering"])
    hoop.add_service_account("old-client", "old", ["analytics"], status="inactive")
    hoop.add_machine_identity("worker", ["pg-staging"], attributes=["tier-1"])
    facts, extracts = await HoopScimSources(gateway, None).read_facts(datetime.now(UTC))
    found = {(i.kind, i.name): (i.groups, i.connections, i.active) for i in facts.identities}
    assert found[(IdentityKind.SERVICE_ACCOUNT, "etl-client")] == (("analytics", "engineering"), (), True)
    assert found[(IdentityKind.SERVICE_ACCOUNT, "old-client")][2] is False
    assert found[(IdentityKind.MACHINE_IDENTITY, "worker")] == ((), ("pg-prod", "pg-staging"), True)
    assert {e.endpoint for e in extracts} >= {
        "GET /api/serviceaccounts",
        "GET /api/machineidentities, /api/attributes",
    }
    scope = Scope(
        connections=["pg-prod"], identities=[IdentityKind.SERVICE_ACCOUNT, IdentityKind.MACHINE_IDENTITY]
    )
    items = {
        (i.subject.kind, i.subject.name, i.access.via, i.access.group, i.access.connections)
        for i in build_population(scope, facts).items
        if not i.subject.is_person
    }
    assert items == {
        (SubjectKind.SERVICE_ACCOUNT, "etl-client", AccessVia.GROUP, "analytics", ("pg-prod",)),
        (SubjectKind.MACHINE_IDENTITY, "worker", AccessVia.BINDING, None, ("pg-prod",)),
    }  # the inactive account is not reviewed; pg-staging is out of scope


async def test_the_example_organisation_and_campaign_review_them(tmp_path: Path) -> None:
    hoop = HoopStandIn(api_keys={ADMIN_KEY: ["admin", "grantflow"]}, api_key_names={ADMIN_KEY: "grantflow"})
    seed_hoop(hoop, load_organisation(ORGANISATION_FILE), load_policies(POLICIES_FILE))
    hoop.start()
    try:
        async with HoopGateway(hoop.url, ADMIN_KEY) as gw:
            facts, _ = await HoopScimSources(gw, None, excluded_identities=("grantflow",)).read_facts(
                datetime.now(UTC)
            )
    finally:
        hoop.stop()
    spec = load_campaign_spec(EXAMPLES_DIR / "campaign.toml")
    items = build_population(spec.scope, facts).items
    reviewed = {(i.subject.kind, i.subject.name) for i in items if not i.subject.is_person}
    assert (SubjectKind.SERVICE_ACCOUNT, "etl-nightly-client") in reviewed
    assert (SubjectKind.MACHINE_IDENTITY, "billing-worker") in reviewed


# ---------------------------------------------------------------------- a campaign's revocation applied


def campaign_activities(tmp_path: Path, gateway: HoopGateway) -> CampaignActivities:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}", ledger_key=LEDGER_KEY, anchor_path=None)
    return CampaignActivities(store, None, None, None, None, gateway=gateway)  # type: ignore[arg-type]


def account_item(group: str) -> CampaignItem:
    return CampaignItem.of(
        Subject(kind=SubjectKind.SERVICE_ACCOUNT, id="etl-client", name="etl-client"),
        ItemAccess(via=AccessVia.GROUP, group=group, sources=(Source.HOOP,), connections=("pg-prod",)),
    )


def machine_item(*connections: str) -> CampaignItem:
    return CampaignItem.of(
        Subject(kind=SubjectKind.MACHINE_IDENTITY, id="worker", name="worker"),
        ItemAccess(via=AccessVia.BINDING, sources=(Source.HOOP,), connections=connections),
    )


async def revoke(work: CampaignActivities, item: CampaignItem) -> Revocation:
    stored = StoredItem.model_validate(
        item.model_dump()
        | {"stage": 1, "assignment": {"stage": 1, "reviewer": None, "via": "fallback"}, "outcome": "revoke"}
    )
    result: Revocation = await ActivityEnvironment().run(work._revoke, "cmp-1", stored)
    return result


async def test_a_service_account_loses_the_group_and_then_its_access(
    hoop: HoopStandIn, gateway: HoopGateway, tmp_path: Path
) -> None:
    hoop.add_service_account("etl-client", "etl", ["analytics", "engineering"])
    work = campaign_activities(tmp_path, gateway)
    first = await revoke(work, account_item("analytics"))
    assert first.status == "applied" and first.systems == ("hoop",)
    assert first.read_back == "hoop service account etl-client: groups engineering (active)"
    narrowed = hoop.service_account("etl-client")
    assert (narrowed["groups"], narrowed["status"]) == (["engineering"], "active")
    last = await revoke(work, account_item("engineering"))
    assert last.read_back == "hoop service account etl-client: inactive (no group left)"
    assert hoop.service_account("etl-client")["status"] == "inactive"
    assert hoop.service_account("etl-client")["name"] == "etl"  # the rest of the account is kept
    hoop.clear_calls()
    again = await revoke(work, account_item("engineering"))  # a retry finds it done and writes nothing
    assert again.status == "applied" and "not in engineering" in again.read_back
    assert not [c for c in hoop.calls if c.method == "PUT"]


async def test_a_machine_identity_is_unbound_and_what_an_attribute_links_is_remediated(
    hoop: HoopStandIn, gateway: HoopGateway, tmp_path: Path
) -> None:
    hoop.add_machine_identity("worker", ["pg-prod", "pg-staging", "grafana"], description="jobs")
    work = campaign_activities(tmp_path, gateway)
    unbound = await revoke(work, machine_item("pg-staging", "grafana"))
    assert unbound.status == "applied"
    assert unbound.read_back == "hoop machine identity worker: bound to pg-prod"
    shown = hoop.machine_identity("worker")
    assert (shown["credentials"], shown["description"]) == (["pg-prod"], "jobs")
    # pg-prod bound by name and through tier-1: the name goes, the attribute keeps the credential
    hoop.add_machine_identity("linked", ["pg-prod"], attributes=["tier-1"])
    linked = machine_item("pg-prod").model_copy(
        update={"subject": Subject(kind=SubjectKind.MACHINE_IDENTITY, id="linked", name="linked")}
    )
    remediated = await revoke(work, linked)
    assert (
        remediated.status == "remediation"
        and remediated.remediation == f"remediation record cmp-1:{linked.id}"
    )
    assert "through its attributes (tier-1)" in remediated.error
    assert hoop.machine_identity("linked")["connection_names"] == []
    assert hoop.machine_identity("linked")["credentials"] == ["pg-prod"]
    gone = await revoke(
        work,
        machine_item("pg-prod").model_copy(
            update={"subject": Subject(kind=SubjectKind.MACHINE_IDENTITY, id="nope", name="nope")}
        ),
    )
    assert (gone.status, gone.read_back) == ("applied", "gone")


async def test_a_transient_failure_is_retried_and_a_refusal_remediated(
    hoop: HoopStandIn, gateway: HoopGateway, tmp_path: Path
) -> None:
    hoop.add_service_account("etl-client", "etl", ["analytics"])
    work = campaign_activities(tmp_path, gateway)
    hoop.fail_next("/serviceaccounts/etl-client", 503, method="PUT")
    with pytest.raises(ApplicationError) as caught:
        await revoke(work, account_item("analytics"))
    assert not caught.value.non_retryable
    assert hoop.service_account("etl-client")["status"] == "active"
    hoop.fail_next("/serviceaccounts/etl-client", 403, method="PUT")
    refused = await revoke(work, account_item("analytics"))
    assert refused.status == "remediation" and "403" in refused.error
    assert (await revoke(work, account_item("analytics"))).status == "applied"
    assert hoop.service_account("etl-client")["status"] == "inactive"
