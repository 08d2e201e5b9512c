"""The worker polls afresh when the Temporal server answers again after an outage.

The end-to-end proof is the reliability suite's server-restart scenario (a real server stopped and started
under active grants); these tests pin down the lifecycle itself with a scripted health check: the old
worker is retired (its activities finish), a new one polls on a new connection, a worker that fails on its
own stops the process, and stopping stops every worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from worker import ServerWatch, poll_until_stopped


class ScriptedHealth:
    """A client whose health check answers from a script (True, False, or an exception), then True."""

    def __init__(self, name: str, answers: list[bool | Exception]) -> None:
        self.name = name
        self._answers = list(answers)
        self.service_client = self
        self.checks = 0

    async def check_health(self, *, timeout: Any = None) -> bool:
        self.checks += 1
        answer = self._answers.pop(0) if self._answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeWorker:
    """Runs until shut down, or fails when told to."""

    def __init__(self, client: ScriptedHealth) -> None:
        self.client = client
        self.shut_down = asyncio.Event()
        self.failure: Exception | None = None
        self._failed = asyncio.Event()

    async def run(self) -> None:
        done = asyncio.create_task(self.shut_down.wait())
        failed = asyncio.create_task(self._failed.wait())
        await asyncio.wait({done, failed}, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        failed.cancel()
        if self.failure is not None:
            raise self.failure

    async def shutdown(self) -> None:
        self.shut_down.set()

    def fail(self, failure: Exception) -> None:
        self.failure = failure
        self._failed.set()


class Workers(list[FakeWorker]):
    """The workers ``poll_until_stopped`` made, in order; pass ``on`` as its ``worker_on``."""

    def on(self, client: ScriptedHealth) -> FakeWorker:
        self.append(FakeWorker(client))
        return self[-1]


async def _until(check: Any, limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_server_back_after_an_outage_gets_fresh_pollers_on_a_new_connection() -> None:
    first = ScriptedHealth("first", [True, True, RuntimeError("connection refused"), False, True])
    second = ScriptedHealth("second", [])
    workers = Workers()
    reconnects: list[str] = []

    async def reconnect() -> ScriptedHealth:
        reconnects.append("second")
        return second

    stop = asyncio.Event()
    polling = asyncio.create_task(
        poll_until_stopped(first, reconnect, workers.on, stop, watch_interval=0.01)  # type: ignore[arg-type]
    )
    await _until(lambda: len(workers) == 2)
    assert reconnects == ["second"]
    assert [w.client.name for w in workers] == ["first", "second"]
    await _until(workers[0].shut_down.is_set)  # the old worker is retired …
    assert not workers[1].shut_down.is_set()  # … the new one polls
    await _until(lambda: second.checks >= 3)  # and the new connection is watched in turn
    assert len(workers) == 2  # a healthy server starts nothing more
    stop.set()
    await asyncio.wait_for(polling, 5)
    assert workers[1].shut_down.is_set()


async def test_a_server_that_never_went_away_keeps_its_one_worker() -> None:
    client = ScriptedHealth("only", [])
    workers = Workers()

    async def reconnect() -> ScriptedHealth:
        raise AssertionError("no reconnection without an outage")

    stop = asyncio.Event()
    polling = asyncio.create_task(
        poll_until_stopped(
            client,  # type: ignore[arg-type]
            reconnect,  # type: ignore[arg-type]
            workers.on,  # type: ignore[arg-type]
            stop,
            watch_interval=0.01,
        )
    )
    await _until(lambda: client.checks >= 5)
    stop.set()
    await asyncio.wait_for(polling, 5)
    assert len(workers) == 1 and workers[0].shut_down.is_set()


async def test_a_reconnection_that_fails_keeps_the_old_worker_until_the_next_outage_ends() -> None:
    first = ScriptedHealth("first", [False, True, False, True])
    second = ScriptedHealth("second", [])
    workers = Workers()
    attempts = 0

    async def reconnect() -> ScriptedHealth:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("the server went away again")
        return second

    stop = asyncio.Event()
    polling = asyncio.create_task(
        poll_until_stopped(first, reconnect, workers.on, stop, watch_interval=0.01)  # type: ignore[arg-type]
    )
    await _until(lambda: len(workers) == 2)
    assert attempts == 2
    stop.set()
    await asyncio.wait_for(polling, 5)
    assert all(w.shut_down.is_set() for w in workers)


async def test_a_worker_that_fails_on_its_own_stops_the_process_with_its_error() -> None:
    client = ScriptedHealth("only", [])
    workers = Workers()

    async def reconnect() -> ScriptedHealth:
        raise AssertionError("not reached")

    polling = asyncio.create_task(
        poll_until_stopped(client, reconnect, workers.on, asyncio.Event(), watch_interval=0.01)  # type: ignore[arg-type]
    )
    await _until(lambda: bool(workers))
    workers[0].fail(ValueError("workflow sandbox refused a module"))
    with pytest.raises(ValueError, match="sandbox refused"):
        await asyncio.wait_for(polling, 5)


async def test_the_watch_reports_how_long_the_server_was_down() -> None:
    client = ScriptedHealth("only", [True, False, False, RuntimeError("refused"), True])
    outage = await asyncio.wait_for(ServerWatch(client, interval=0.02).back_after_outage(), 5)  # type: ignore[arg-type]
    assert client.checks == 5
    assert outage >= 3 * 0.02
