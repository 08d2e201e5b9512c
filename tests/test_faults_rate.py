"""The stand-ins' random faults (``sandbox.faults.RandomFaults``): a seeded share of the calls fails, each
stand-in shapes the failure as its vendor does, and the plan records what it injected and how long a client
waited after a 429."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from sandbox.faults import RANDOM_KINDS, FaultPlan, RandomFaults
from sandbox.hoop import HoopStandIn
from sandbox.hoop.routing import DEFAULT_API_KEY
from sandbox.jira import JiraStandIn
from sandbox.scim import ScimDirectoryServer
from sandbox.slack import SlackStandIn

JIRA_USER, JIRA_TOKEN = "bot@example.com", "jira-token"
SLACK_TOKEN, SCIM_TOKEN = "xoxb-faults", "scim-faults"


def fates(spec: RandomFaults, calls: list[str]) -> list[str | None]:
    plan = FaultPlan()
    plan.fail_randomly(spec)
    return [getattr(plan.take("/api/x", "GET", call=call), "kind", None) for call in calls]


def test_a_seeded_share_of_the_calls_fails_with_every_kind() -> None:
    plan = FaultPlan()
    plan.fail_randomly(RandomFaults(seed=7, rate=0.2))
    taken = [plan.take(f"/api/things/{n}", "GET") for n in range(2000)]
    failed = [f for f in taken if f is not None]
    assert 340 <= len(failed) <= 460, len(failed)  # 20 % of 2,000, give or take three deviations
    assert set(plan.injected) == set(RANDOM_KINDS)
    assert sum(plan.injected.values()) == len(failed)
    assert len(plan.rate_limited) == plan.injected["429"]
    assert all(f.retry_after == 1 for f in failed if f.kind == "429")
    assert all(f.after_write and f.delay == 12.0 for f in failed if f.kind == "timeout")
    drops = [f for f in failed if f.kind == "drop"]
    assert {f.after_write for f in drops} == {True, False} and all(f.drop for f in drops)
    plan.stop_failing_randomly()
    assert plan.take("/api/things/0", "GET") is None
    assert sum(plan.injected.values()) == len(failed)  # the records stay


def test_the_fate_of_the_nth_call_depends_on_the_seed_not_on_other_calls() -> None:
    calls = [f"GET /api/r/{n % 7}" for n in range(300)]
    spec = RandomFaults(seed=11, rate=0.3)
    assert fates(spec, calls) == fates(spec, calls)
    assert fates(spec, calls) != fates(RandomFaults(seed=12, rate=0.3), calls)
    # another endpoint's calls in between change nothing for these
    mixed = [c for pair in zip(calls, [f"GET /api/other/{n}" for n in range(300)], strict=True) for c in pair]
    assert fates(spec, mixed)[::2] == fates(spec, calls)


def test_only_the_prefix_the_methods_and_the_first_calls_are_failed() -> None:
    plan = FaultPlan()
    plan.fail_randomly(RandomFaults(seed=1, rate=1.0, prefix="/api/reviews", methods=["PUT"], calls=3))
    assert plan.take("/api/sessions", "PUT") is None
    assert plan.take("/api/reviews/1", "GET") is None
    assert [plan.take("/api/reviews/1", "put") is not None for _ in range(5)] == [True] * 3 + [False] * 2


def test_faults_asked_for_come_before_random_ones_and_bad_specs_are_refused() -> None:
    from sandbox.faults import Fault

    plan = FaultPlan()
    plan.fail_randomly(RandomFaults(seed=1, rate=1.0, kinds=("503",)))
    plan.add(Fault("/api/x", status=418))
    asked = plan.take("/api/x/1", "GET")
    assert asked is not None and asked.status == 418 and asked.kind == ""
    assert plan.take("/api/x/1", "GET") is not None and plan.injected == {"503": 1}
    for bad in ({"rate": 1.5}, {"rate": -0.1}, {"kinds": ("500",)}, {"kinds": ()}, {"calls": -1}):
        with pytest.raises(ValueError):
            RandomFaults(seed=1, **{"rate": 0.2, **bad})  # type: ignore[arg-type]


def test_the_gap_after_a_429_is_measured_per_call() -> None:
    plan = FaultPlan()
    plan.fail_randomly(RandomFaults(seed=1, rate=1.0, kinds=("429",), retry_after=3))
    plan.take("/api/a", "POST", call="POST /api/a x")
    plan.take("/api/a", "POST", call="POST /api/a y")  # another call: not the retry of the first
    time.sleep(0.05)
    plan.take("/api/a", "POST", call="POST /api/a x")
    first, other, retried = plan.rate_limit_gaps()
    assert first.call == "POST /api/a x" and first.retry_after == 3.0
    assert first.gap is not None and 0.05 <= first.gap < 1
    assert other.gap is None and retried.gap is None  # never called again


# ---------------------------------------------------------------------------------------------- stand-ins


@dataclass
class Vendor:
    """A running stand-in, one call to it, and what it answered when the call had a fault."""

    name: str
    plan: Callable[[RandomFaults], FaultPlan]
    call: Callable[[float], httpx.Response]  # (client timeout) -> answer
    calls_seen: Callable[[], int]  # how many calls the stand-in carried out or recorded


@contextmanager
def vendor(name: str) -> Iterator[Vendor]:
    if name == "hoop":
        hoop = HoopStandIn()
        url = hoop.start()
        try:
            yield Vendor(
                name,
                hoop.fail_randomly,
                lambda timeout: httpx.get(
                    f"{url}/api/connections",
                    headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"},
                    timeout=timeout,
                ),
                lambda: len(hoop.calls),
            )
        finally:
            hoop.stop()
    elif name == "jira":
        jira = JiraStandIn(users={JIRA_USER: JIRA_TOKEN})
        url = jira.start()
        try:
            yield Vendor(
                name,
                jira.fail_randomly,
                lambda timeout: httpx.get(
                    f"{url}/rest/api/2/myself", auth=(JIRA_USER, JIRA_TOKEN), timeout=timeout
                ),
                lambda: len(jira.calls),
            )
        finally:
            jira.stop()
    elif name == "slack":
        slack = SlackStandIn(bot_token=SLACK_TOKEN)
        url = slack.start()
        try:
            yield Vendor(
                name,
                slack.fail_randomly,
                lambda timeout: httpx.post(
                    f"{url}/api/auth.test",
                    headers={"Authorization": f"Bearer {SLACK_TOKEN}"},
                    timeout=timeout,
                ),
                lambda: len(slack.calls),
            )
        finally:
            slack.stop()
    else:
        scim = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
        url = scim.start()
        try:
            yield Vendor(
                name,
                scim.fail_randomly,
                lambda timeout: httpx.get(
                    f"{url}/Users", headers={"Authorization": f"Bearer {SCIM_TOKEN}"}, timeout=timeout
                ),
                lambda: len(scim.requests),
            )
        finally:
            scim.stop()


VENDORS = ["hoop", "jira", "slack", "scim"]


@pytest.mark.parametrize("name", VENDORS)
def test_each_stand_in_shapes_a_random_fault_as_its_vendor(name: str) -> None:
    with vendor(name) as v:
        plan = v.plan(RandomFaults(seed=3, rate=1.0, kinds=("429",), retry_after=2))
        limited = v.call(5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        if name == "slack":
            assert limited.json() == {"ok": False, "error": "ratelimited"}
        elif name == "jira":
            assert limited.json()["errorMessages"] == ["Rate limit exceeded."]
        elif name == "scim":
            assert limited.json()["status"] == "429"
        else:
            assert limited.json() == {"message": "injected failure"}

        v.plan(RandomFaults(seed=3, rate=1.0, kinds=("503",)))
        unavailable = v.call(5)
        assert unavailable.status_code == 503
        if name == "slack":  # Slack's edge answers 5xx with an HTML page
            assert unavailable.headers["content-type"].startswith("text/html")

        v.plan(RandomFaults(seed=3, rate=1.0, kinds=("drop",)))
        with pytest.raises(httpx.TransportError):
            v.call(5)

        seen = v.calls_seen()
        v.plan(RandomFaults(seed=3, rate=1.0, kinds=("timeout",), delay=0.6))
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            v.call(0.2)
        assert time.monotonic() - started < 0.5
        # … yet the stand-in carried the call out: the client cannot know whether it happened
        deadline = time.monotonic() + 5
        while v.calls_seen() == seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert v.calls_seen() == seen + 1
        assert dict(plan.injected) == {"timeout": 1}  # the records restart with each plan
        time.sleep(0.5)  # let the held answer go before the server stops


@pytest.mark.parametrize("name", VENDORS)
def test_a_client_calling_again_too_soon_shows_in_the_gaps(name: str) -> None:
    with vendor(name) as v:
        plan = v.plan(RandomFaults(seed=5, rate=1.0, kinds=("429",), retry_after=1))
        assert v.call(5).status_code == 429
        assert v.call(5).status_code == 429  # at once: too soon
        time.sleep(1.05)
        assert v.call(5).status_code == 429  # after Retry-After
        first, second, last = plan.rate_limit_gaps()
        assert first.gap is not None and first.gap < first.retry_after
        assert second.gap is not None and second.gap >= second.retry_after
        assert last.gap is None
