"""The hoop stand-in's API keys and AI agents over real HTTP, as hoop's apikeys.go / aiagents.go behave."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.hoop import HoopStandIn

ADMIN_KEY = "hpk_test_admin"


@pytest.fixture
def hoop() -> Iterator[HoopStandIn]:
    stand_in = HoopStandIn(
        api_keys={ADMIN_KEY: ["admin", "grantflow"]}, api_key_names={ADMIN_KEY: "grantflow"}
    )
    stand_in.start()
    yield stand_in
    stand_in.stop()


def client(hoop: HoopStandIn, key: str = ADMIN_KEY) -> httpx.Client:
    return httpx.Client(base_url=hoop.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


@pytest.mark.parametrize("kind", ["api-keys", "ai-agents"])
def test_keys_are_listed_updated_and_revoked_as_hoop_does(hoop: HoopStandIn, kind: str) -> None:
    with client(hoop) as http:
        listed = http.get(f"/{kind}").json()
        if kind == "ai-agents":
            assert listed is None  # a nil slice: hoop answers null, not []
        else:
            assert [k["name"] for k in listed] == ["grantflow"]  # the configured key is an API key too
        created = http.post(f"/{kind}", json={"name": "ci-deploy", "groups": ["platform", "analytics"]})
        assert created.status_code == 201
        raw = created.json()["key"]
        assert created.json()["created_by"] == "grantflow" and "key_hash" not in created.json()
        assert http.post(f"/{kind}", json={"name": "ci-deploy"}).status_code == 409
        # The new key authenticates, with its groups; its use is recorded.
        with client(hoop, raw) as as_key:
            assert as_key.get("/connections").status_code == 200
        assert http.get(f"/{kind}/ci-deploy").json()["last_used_at"] is not None
        # Groups left out are kept; [] removes them all.
        kept = http.put(f"/{kind}/ci-deploy", json={"name": "ci-deploy"})
        assert kept.json()["groups"] == ["platform", "analytics"]
        narrowed = http.put(f"/{kind}/ci-deploy", json={"groups": ["platform"]})
        assert narrowed.json()["groups"] == ["platform"]
        assert http.put(f"/{kind}/nope", json={"groups": []}).status_code == 404
        # Revoking is a soft delete; the key stops working; revoking again finds nothing active.
        assert http.delete(f"/{kind}/ci-deploy").status_code == 204
        revoked = http.get(f"/{kind}/ci-deploy").json()
        assert revoked["status"] == "revoked" and revoked["deactivated_by"] == "grantflow"
        assert http.delete(f"/{kind}/ci-deploy").status_code == 404
        with client(hoop, raw) as as_key:
            assert as_key.get("/connections").status_code == 401
        # Updating a revoked key still works (apikeys.go: "Works for both active and revoked keys").
        assert http.put(f"/{kind}/ci-deploy", json={"groups": []}).json()["groups"] == []


def test_only_admins_manage_keys(hoop: HoopStandIn) -> None:
    raw = hoop.add_identity_key("api_keys", "reader", ["engineering"], created_by="ken@example.com")
    with client(hoop, raw) as http:
        assert http.get("/api-keys").status_code == 403
    assert hoop.identity_key("api_keys", "reader")["created_by"] == "ken@example.com"
