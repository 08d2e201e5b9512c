"""The test watchdog: a hung test is reported with its stacks and the run is interrupted."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from pathlib import Path

import pytest

from tests.rigs.watchdog import DEFAULT_LIMIT_S, LONG_LIMIT_S, Watchdog, limit_for


def _blocked_in_a_named_function(release: threading.Event) -> None:
    release.wait(5)


async def test_a_test_past_its_limit_is_reported_with_stacks_and_interrupted(tmp_path: Path) -> None:
    out = (tmp_path / "report.txt").open("w+")  # the thread stacks need a real file, as stdout is
    interrupted = threading.Event()
    exits: list[int] = []
    watchdog = Watchdog(out, interrupt=interrupted.set, exit_process=exits.append, grace=0.2)
    watchdog.loop = asyncio.get_running_loop()
    pending = asyncio.create_task(asyncio.sleep(30), name="a-task-left-waiting")
    sdk_log = logging.getLogger("temporalio.worker._workflow")
    sdk_log.addHandler(watchdog.sdk_errors)
    sdk_log.error("Failed running eviction job for run ID r-1, continually retrying eviction")
    sdk_log.warning("a warning is not kept")
    sdk_log.removeHandler(watchdog.sdk_errors)
    release = threading.Event()
    try:
        with watchdog.watching("tests/test_x.py::test_hangs", 0.05):
            blocked = threading.Thread(target=_blocked_in_a_named_function, args=(release,))
            blocked.start()
            assert await asyncio.to_thread(interrupted.wait, 5), "the run was not interrupted"
            release.set()
            blocked.join()
        await asyncio.to_thread(time.sleep, 0.4)  # past the grace: the process would be exited
    finally:
        pending.cancel()
    out.seek(0)
    report = out.read()
    out.close()
    assert watchdog.fired
    assert "tests/test_x.py::test_hangs has run for more than 0 s" in report
    assert "_blocked_in_a_named_function" in report, "the hung thread's stack is printed"
    assert "a-task-left-waiting" in report, "the session loop's tasks are printed"
    assert "continually retrying eviction" in report, "the SDK's last errors are printed"
    assert "a warning is not kept" not in report
    assert exits == [3]
    assert "did not stop within" in report


async def test_a_test_within_its_limit_is_left_alone() -> None:
    out = io.StringIO()
    interrupted = threading.Event()
    watchdog = Watchdog(out, interrupt=interrupted.set, exit_process=lambda code: None, grace=0.1)
    with watchdog.watching("tests/test_x.py::test_quick", 0.5):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.7)
    assert not watchdog.fired and not interrupted.is_set() and out.getvalue() == ""


@pytest.mark.parametrize(
    ("markers", "limit"),
    [((), DEFAULT_LIMIT_S), (("long",), LONG_LIMIT_S), (("long", "on_demand"), None)],
)
def test_each_kind_of_test_has_its_limit(
    pytester_item: pytest.Item, markers: tuple[str, ...], limit: float | None
) -> None:
    for name in markers:
        pytester_item.add_marker(name)
    assert limit_for(pytester_item) == limit


@pytest.fixture
def pytester_item(request: pytest.FixtureRequest) -> pytest.Item:
    """A copy of this test's own item, to mark freely."""
    item = request.node
    return pytest.Function.from_parent(item.parent, name=item.name, callobj=item.obj)
