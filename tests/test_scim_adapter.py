"""``integrations.scim.ScimDirectory`` against scim2-server over real HTTP (``sandbox.scim``).

Paging through 2,500 users, groups, incremental listings, filters unsupported, leavers and movers, error
mapping, listings that fail or do not add up mid-way (never a partial result), and verified group writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2
import pytest
import pytest_asyncio

from integrations.scim import (
    DirectoryUser,
    ScimAuthError,
    ScimDirectory,
    ScimFilterUnsupported,
    ScimInconsistentPage,
    ScimNotFoundError,
    ScimPermanentError,
    ScimTransientError,
    ScimWriteNotVerified,
)
from sandbox.scim import ScimDirectoryServer

TOKEN = "test-scim-token"
MANAGERS = 25
REPORTS_PER_MANAGER = 99  # 25 + 25 * 99 = 2,500 users


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> Iterator[ScimDirectoryServer]:
    """2,500 users: 25 managers, each with 99 reports in a team group. Read-only: tests must not change it."""
    server = ScimDirectoryServer(bearer_token=TOKEN)
    server.add_users(MANAGERS, prefix="mgr")
    for m in range(MANAGERS):
        server.add_users(
            REPORTS_PER_MANAGER,
            prefix="user",
            first=m * REPORTS_PER_MANAGER,
            manager_email=f"mgr{m:05d}@example.com",
            group=f"team-{m:02d}",
        )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def small() -> Iterator[ScimDirectoryServer]:
    """30 users: boss, 2 leads reporting to boss, 27 engineers split between the leads; groups eng, leads."""
    server = ScimDirectoryServer(bearer_token=TOKEN)
    server.create_user("boss@example.com", "The Boss", external_id="u-boss")
    server.create_user("lead-a@example.com", "Lead A", manager_email="boss@example.com", external_id="u-la")
    server.create_user("lead-b@example.com", "Lead B", manager_email="boss@example.com", external_id="u-lb")
    server.add_users(14, prefix="eng", manager_email="lead-a@example.com", group="eng")
    server.add_users(13, prefix="eng", first=14, manager_email="lead-b@example.com", group="eng")
    server.add_to_group("leads", "lead-a@example.com")
    server.add_to_group("leads", "lead-b@example.com")
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def directory(small: ScimDirectoryServer) -> AsyncIterator[ScimDirectory]:
    async with ScimDirectory(small.base_url, TOKEN) as d:
        yield d


def _by_email(users: list[DirectoryUser]) -> dict[str, DirectoryUser]:
    return {u.primary_email: u for u in users}


# -- paging ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("page_size", "pages"), [(1000, 3), (300, 9)])
async def test_pages_through_2500_users_each_once_with_managers(
    big: ScimDirectoryServer, page_size: int, pages: int
) -> None:
    progress: list[tuple[int, int]] = []
    started = time.perf_counter()
    async with ScimDirectory(big.base_url, TOKEN) as directory:
        users = await directory.list_users(
            page_size=page_size, on_page=lambda n, total: progress.append((n, total))
        )
    elapsed = time.perf_counter() - started
    print(f"listed 2,500 users in pages of {page_size}: {elapsed:.2f}s")

    assert len(users) == 2500
    assert len({u.id for u in users}) == 2500
    assert len(progress) == pages
    assert progress[-1] == (2500, 2500)
    assert all(total == 2500 for _, total in progress)

    by_email = _by_email(users)
    for m in range(MANAGERS):
        manager = by_email[f"mgr{m:05d}@example.com"]
        assert manager.manager_id is None
        for r in range(m * REPORTS_PER_MANAGER, (m + 1) * REPORTS_PER_MANAGER):
            report = by_email[f"user{r:05d}@example.com"]
            assert report.manager_id == manager.id
            assert report.external_id == f"user-{r:05d}"
            assert report.active is True
            assert report.user_name == report.primary_email
    assert {u.id for u in users} == {str(u.id) for u in big.users()}


async def test_groups_with_members_paged(big: ScimDirectoryServer) -> None:
    async with ScimDirectory(big.base_url, TOKEN) as directory:
        groups = await directory.list_groups(page_size=10)
    ids = {str(u.user_name): str(u.id) for u in big.users()}
    assert sorted(g.display_name for g in groups) == [f"team-{m:02d}" for m in range(MANAGERS)]
    for group in groups:
        m = int(group.display_name.removeprefix("team-"))
        expected = {ids[f"user{r:05d}@example.com"] for r in range(m * 99, (m + 1) * 99)}
        assert set(group.member_ids) == expected
        assert len(group.member_ids) == 99
        assert group.last_modified is not None


async def test_page_size_is_bounded_by_the_announced_max_results() -> None:
    server = ScimDirectoryServer(bearer_token=TOKEN, max_results=7)
    server.add_users(20)
    server.start()
    try:
        async with ScimDirectory(server.base_url, TOKEN) as directory:
            assert (await directory.capabilities()).max_results == 7
            users = await directory.list_users(page_size=1000)
        assert len(users) == 20
        listings = [r for r in server.requests if r.path == "/Users"]
        assert len(listings) == 3
        assert all("count=7" in r.query for r in listings)
    finally:
        server.stop()


async def test_empty_directory_lists_nothing() -> None:
    with ScimDirectoryServer(bearer_token=TOKEN) as server:
        async with ScimDirectory(server.base_url, TOKEN) as directory:
            assert await directory.list_users() == []
            assert await directory.list_groups() == []


# -- incremental listings ----------------------------------------------------------------------------------


async def test_incremental_listing_returns_only_changed_users_and_groups(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    await asyncio.sleep(0.005)  # the seeding's last millisecond is behind us
    since = datetime.now(UTC)
    await asyncio.sleep(0.005)
    small.deactivate("eng00003@example.com")
    small.set_manager("eng00004@example.com", "lead-b@example.com")
    small.remove_from_group("leads", "lead-a@example.com")

    changed = await directory.list_users(modified_since=since, page_size=1)
    assert sorted(u.primary_email for u in changed) == ["eng00003@example.com", "eng00004@example.com"]
    assert _by_email(changed)["eng00003@example.com"].active is False
    assert _by_email(changed)["eng00004@example.com"].manager_id == small.user_id("lead-b@example.com")
    assert [g.display_name for g in await directory.list_groups(modified_since=since)] == ["leads"]
    filtered = [r for r in small.requests if r.path == "/Users" and "filter=" in r.query]
    assert filtered and all("meta.lastModified" in r.query for r in filtered)

    assert await directory.list_users(modified_since=datetime.now(UTC) + timedelta(seconds=1)) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        await directory.list_users(modified_since=datetime(2030, 1, 1))


async def test_incremental_listing_cannot_see_deletions_a_full_one_does(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    since = datetime.now(UTC)
    gone = small.user_id("eng00007@example.com")
    small.delete_user("eng00007@example.com")

    assert await directory.list_users(modified_since=since) == []  # the documented blind spot
    everyone = await directory.list_users()
    assert len(everyone) == 29
    assert gone not in {u.id for u in everyone}
    eng = next(g for g in await directory.list_groups() if g.display_name == "eng")
    assert gone not in eng.member_ids
    with pytest.raises(ScimNotFoundError):
        await directory.get_user(gone)


async def test_filters_unsupported_are_refused_before_asking() -> None:
    with ScimDirectoryServer(bearer_token=TOKEN, filter_supported=False) as server:
        server.add_users(3)
        async with ScimDirectory(server.base_url, TOKEN) as directory:
            capabilities = await directory.capabilities()
            assert capabilities.filter_supported is False
            assert capabilities.published is True
            with pytest.raises(ScimFilterUnsupported, match="full sync"):
                await directory.list_users(modified_since=datetime.now(UTC))
            assert not any("filter=" in r.query for r in server.requests)
            assert len(await directory.list_users()) == 3  # full listings still work


async def test_a_provider_answering_501_to_filters_raises_filter_unsupported() -> None:
    with ScimDirectoryServer(bearer_token=TOKEN, filter_supported=False) as server:
        server.fail_next("/ServiceProviderConfig", 404)  # it does not say, so the filter is tried
        async with ScimDirectory(server.base_url, TOKEN) as directory:
            assert (await directory.capabilities()).published is False
            with pytest.raises(ScimFilterUnsupported) as caught:
                await directory.list_users(modified_since=datetime.now(UTC))
            assert caught.value.status == 501
            assert isinstance(caught.value, ScimPermanentError)


# -- leavers and movers ------------------------------------------------------------------------------------


async def test_deactivation_deletion_and_manager_change_show_in_a_full_listing(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    before = _by_email(await directory.list_users())
    small.deactivate("eng00001@example.com")
    small.delete_user("eng00002@example.com")
    small.set_manager("eng00005@example.com", "lead-b@example.com")

    after = _by_email(await directory.list_users())
    assert after["eng00001@example.com"].active is False
    assert after["eng00001@example.com"].id == before["eng00001@example.com"].id
    assert "eng00002@example.com" not in after
    assert before["eng00005@example.com"].manager_id == small.user_id("lead-a@example.com")
    assert after["eng00005@example.com"].manager_id == small.user_id("lead-b@example.com")
    assert after["eng00005@example.com"].last_modified > before["eng00005@example.com"].last_modified  # type: ignore[operator]


async def test_set_active_writes_and_reads_back(small: ScimDirectoryServer, directory: ScimDirectory) -> None:
    user_id = small.user_id("eng00009@example.com")
    await directory.set_active(user_id, False)
    assert (await directory.get_user(user_id)).active is False
    await directory.set_active(user_id, True)
    assert (await directory.get_user(user_id)).active is True


# -- error mapping -----------------------------------------------------------------------------------------


async def test_503_and_429_are_transient_with_retry_after(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    small.fail_next("/Users", 503, retry_after=3)
    with pytest.raises(ScimTransientError) as caught:
        await directory.list_users()
    assert (caught.value.status, caught.value.retry_after) == (503, 3.0)

    later = datetime.now(UTC) + timedelta(seconds=120)
    small.fail_next("/Users", 429, retry_after=format_datetime(later, usegmt=True))
    with pytest.raises(ScimTransientError) as caught:
        await directory.get_user(small.user_id("boss@example.com"))
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120

    small.fail_next("/Groups", 502, scim_body=False)  # a proxy's HTML page
    with pytest.raises(ScimTransientError) as caught:
        await directory.list_groups()
    assert caught.value.status == 502 and caught.value.retry_after is None

    assert len(await directory.list_users()) == 30  # the faults were one-shot


async def test_auth_not_found_and_network_errors(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    async with ScimDirectory(small.base_url, "wrong-token") as stranger:
        with pytest.raises(ScimAuthError) as caught:
            await stranger.list_users()
        assert caught.value.status == 401
    with pytest.raises(ScimNotFoundError):
        await directory.get_group("no-such-group")

    closed = ScimDirectoryServer(bearer_token=TOKEN)
    url = closed.start()
    closed.stop()
    async with ScimDirectory(url, TOKEN) as unreachable:
        with pytest.raises(ScimTransientError, match="ConnectError"):
            await unreachable.get_user("x")

    def time_out(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("read timed out", request=request)

    async with ScimDirectory(small.base_url, TOKEN, transport=httpx2.MockTransport(time_out)) as slow:
        with pytest.raises(ScimTransientError, match="timed out"):
            await slow.list_users()


# -- listings that fail or do not add up mid-way -----------------------------------------------------------


async def test_a_page_failing_mid_listing_raises_and_a_retry_is_complete(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    small.fail_page(2, 500)
    progress: list[tuple[int, int]] = []
    with pytest.raises(ScimTransientError) as caught:
        await directory.list_users(page_size=10, on_page=lambda n, t: progress.append((n, t)))
    assert caught.value.status == 500
    assert progress == [(10, 30)]
    assert len(await directory.list_users(page_size=10)) == 30


@pytest.mark.parametrize("page", [1, 2])
async def test_a_page_losing_entries_raises(
    small: ScimDirectoryServer, directory: ScimDirectory, page: int
) -> None:
    if page == 1:
        small.drop_from_next_page(2)
    else:
        small.tamper_page(2, lambda body: {**body, "Resources": body["Resources"][2:]})
    with pytest.raises(ScimInconsistentPage):
        await directory.list_users(page_size=10)


async def test_a_user_deleted_or_created_between_pages_raises(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    small.before_page(2, lambda: small.delete_user("eng00020@example.com"))
    with pytest.raises(ScimInconsistentPage, match="totalResults changed"):
        await directory.list_users(page_size=10)

    small.before_page(3, lambda: small.create_user("joiner@example.com"))
    with pytest.raises(ScimInconsistentPage, match="totalResults changed"):
        await directory.list_users(page_size=10)

    assert len(await directory.list_users(page_size=10)) == 30  # settled: 30 - 1 + 1


async def test_a_duplicate_id_across_pages_raises(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    first_page: list[dict[str, Any]] = []

    def remember(body: dict[str, Any]) -> dict[str, Any]:
        first_page.extend(body["Resources"])
        return body

    def repeat(body: dict[str, Any]) -> dict[str, Any]:
        body["Resources"] = [first_page[-1], *body["Resources"][1:]]  # same length, same totalResults
        return body

    small.tamper_page(1, remember, path_prefix="/Groups")
    small.tamper_page(2, repeat, path_prefix="/Groups")
    small.add_users(3, prefix="extra", group="g3")
    with pytest.raises(ScimInconsistentPage, match="appears twice"):
        await directory.list_groups(page_size=1)


async def test_an_early_empty_page_or_a_missing_total_raises(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    small.tamper_page(2, lambda body: {**body, "Resources": []})
    with pytest.raises(ScimInconsistentPage, match="10 of totalResults 30"):
        await directory.list_users(page_size=10)

    small.tamper_page(1, lambda body: {k: v for k, v in body.items() if k != "totalResults"})
    with pytest.raises(ScimPermanentError, match="totalResults"):
        await directory.list_users(page_size=10)


# -- group writes with read-back ---------------------------------------------------------------------------


async def test_remove_and_add_group_member_are_verified_and_idempotent(
    small: ScimDirectoryServer, directory: ScimDirectory
) -> None:
    leads, lead_a = small.group_id("leads"), small.user_id("lead-a@example.com")
    await directory.remove_group_member(leads, lead_a)
    assert lead_a not in (await directory.get_group(leads)).member_ids
    patches = [r for r in small.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == [f"/Groups/{leads}"]

    await directory.remove_group_member(leads, lead_a)  # not a member any more: still a success
    await directory.add_group_member(leads, lead_a)
    await directory.add_group_member(leads, lead_a)  # already a member: no second copy
    members = (await directory.get_group(leads)).member_ids
    assert members.count(lead_a) == 1
    stored = next(g for g in small.groups() if g.display_name == "leads")
    assert [m.value for m in stored.members or []].count(lead_a) == 1


class _SwallowPatches(httpx2.AsyncBaseTransport):
    """A provider that answers 204 to PATCH and changes nothing."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "PATCH":
            return httpx2.Response(204)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_write_the_provider_accepts_but_does_not_apply_is_not_verified(
    small: ScimDirectoryServer,
) -> None:
    async with ScimDirectory(small.base_url, TOKEN, transport=_SwallowPatches()) as directory:
        with pytest.raises(ScimWriteNotVerified, match="still lists"):
            await directory.remove_group_member(small.group_id("leads"), small.user_id("lead-a@example.com"))
        with pytest.raises(ScimWriteNotVerified):
            await directory.add_group_member(small.group_id("leads"), small.user_id("boss@example.com"))
        with pytest.raises(ScimWriteNotVerified):
            await directory.set_active(small.user_id("boss@example.com"), False)
