"""``sandbox.scim.ScimDirectoryServer``: seeding from the example organisation, persistence across restarts
with ids and meta preserved, and bearer-token auth — checked over HTTP with ``ScimDirectory``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from domain.identity import Organisation, load_organisation
from integrations.scim import ScimAuthError, ScimDirectory
from sandbox.scim import ScimDirectoryServer

TOKEN = "dev-scim-token"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "organisation.toml"


@pytest.fixture(scope="module")
def org() -> Organisation:
    return load_organisation(EXAMPLE)


@pytest.fixture
def seeded(org: Organisation) -> Iterator[ScimDirectoryServer]:
    server = ScimDirectoryServer(bearer_token=TOKEN)
    server.seed_organisation(org)
    server.start()
    yield server
    server.stop()


def _meta(server: ScimDirectoryServer) -> dict[str, tuple[object, object, object]]:
    """id → (created, lastModified, version) of every resource."""
    return {
        str(r.id): (r.meta.created, r.meta.last_modified, r.meta.version)
        for r in [*server.users(), *server.groups()]
        if r.meta is not None
    }


async def test_seeds_the_example_organisation(seeded: ScimDirectoryServer, org: Organisation) -> None:
    assert len(org.people) == 43
    ids = seeded.id_map()
    async with ScimDirectory(seeded.base_url, TOKEN) as directory:
        users = await directory.list_users(page_size=10)
        groups = await directory.list_groups(page_size=5)

    assert len(users) == 43
    by_external = {u.external_id: u for u in users}
    assert set(by_external) == {p.id for p in org.people}
    for person in org.people:
        user = by_external[person.id]
        assert user.id == ids[person.id] == seeded.user_id(person.email)
        assert (user.user_name, user.primary_email, user.emails) == (
            person.email,
            person.email,
            [person.email],
        )
        assert user.display_name == person.display_name
        assert user.active is person.active
        assert user.manager_id == (ids[person.manager_id] if person.manager_id else None)

    names = {g for p in org.people for g in p.groups}
    assert {g.display_name for g in groups} == names
    for group in groups:
        expected = {ids[p.id] for p in org.people if group.display_name in p.groups}
        assert set(group.member_ids) == expected
        assert group.id == seeded.group_id(group.display_name)


async def test_state_survives_a_restart_with_ids_and_meta_preserved(
    tmp_path: Path, org: Organisation
) -> None:
    state = tmp_path / "dev" / "scim.json"
    first = ScimDirectoryServer(state_file=state, bearer_token=TOKEN)
    ids = first.seed_organisation(org)
    first.start()
    async with ScimDirectory(first.base_url, TOKEN) as directory:
        await directory.remove_group_member(first.group_id("db-owners"), ids["u-012"])  # over HTTP
        await directory.set_active(ids["u-013"], False)
        # the snapshot is written before the answer: it is already on disk
        on_disk = json.loads(state.read_text())
        alice = next(r for r in on_disk["resources"] if r.get("externalId") == "u-013")
        assert alice["active"] is False
        before_users = await directory.list_users()
        before_groups = await directory.list_groups()
    first.set_manager("carol@example.com", "grace@example.com")  # helpers persist too
    before_meta = _meta(first)
    first.stop()
    assert not [p for p in state.parent.iterdir() if p.name != state.name]  # no temporary files left

    second = ScimDirectoryServer(state_file=state, bearer_token=TOKEN)
    assert second.seed_organisation(org) == ids  # seeding again changes nothing
    assert _meta(second) == before_meta  # ids, created, lastModified and versions as they were
    second.start()
    try:
        async with ScimDirectory(second.base_url, TOKEN) as directory:
            after_users = {u.id: u for u in await directory.list_users()}
            after_groups = {g.id: g for g in await directory.list_groups()}
            assert set(after_users) == {u.id for u in before_users}
            for user in before_users:
                if user.external_id != "u-011":
                    assert after_users[user.id] == user
            assert after_users[ids["u-011"]].manager_id == ids["u-001"]
            assert after_users[ids["u-013"]].active is False
            assert {g.id: g for g in before_groups} == after_groups
            assert ids["u-012"] not in after_groups[second.group_id("db-owners")].member_ids

            # writes after the restart get fresh, larger versions (ETags keep increasing)
            await directory.set_active(ids["u-013"], True)
        newest = max(int(str(v).strip('W/"')) for _, _, v in before_meta.values())
        alice_version = next(r.meta.version for r in second.users() if r.external_id == "u-013" and r.meta)
        assert int(str(alice_version).strip('W/"')) > newest
    finally:
        second.stop()


def test_restarting_the_same_server_keeps_serving_its_resources(seeded: ScimDirectoryServer) -> None:
    before = _meta(seeded)
    seeded.stop()
    url = seeded.start()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v2")
    response = httpx2.get(f"{url}/Users", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.json()["totalResults"] == 43
    assert _meta(seeded) == before


def test_an_unreadable_state_file_refuses_to_start_empty(tmp_path: Path) -> None:
    state = tmp_path / "scim.json"
    state.write_text("{not json")
    with pytest.raises(RuntimeError, match="cannot load the SCIM directory state"):
        ScimDirectoryServer(state_file=state, bearer_token=TOKEN)


async def test_the_bearer_token_is_required(seeded: ScimDirectoryServer) -> None:
    url = seeded.base_url
    with httpx2.Client(base_url=url) as client:
        anonymous = client.get("/Users")
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/Groups", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.patch(f"/Users/{seeded.user_id('bob@example.com')}", json={}).status_code == 401
        # RFC 7643 §5: the configuration is readable without credentials, and announces the scheme
        config = client.get("/ServiceProviderConfig")
        assert config.status_code == 200
        assert config.json()["authenticationSchemes"][0]["type"] == "oauthbearertoken"
        assert client.get("/Users", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    async with ScimDirectory.connect(url, "nope") as stranger:
        with pytest.raises(ScimAuthError):
            await stranger.list_users()
    with pytest.raises(ValueError, match="bearer_token"):
        ScimDirectoryServer(bearer_token="")
