"""Commands signalled to a workflow and answered by its queries — how the edge acts on access requests
(``web/service/decisions.py``) and on campaigns (``web/campaign_service.py``).

A command is a signal with a fresh id: in the workflow's history as soon as the server has it, worker or no
worker, replayed in the order it was written (an Update accepted while a timed-out workflow task waits for
a worker can be ordered differently on replay: ``tests/histories/sdk_defects``). Before sending, the edge
asks the workflow's ``refusal`` query so a refused attempt stays out of the history; after, it asks the
``answer`` query until the workflow has carried the command out or refused it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import WorkflowHandle, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger("grantflow.web.commands")

ANSWER_WAIT = 30.0
"""How long (seconds) a command waits for the workflow's answer before the caller is told it was delivered
but not yet carried out (no worker is running, or the worker is far behind)."""
REFUSAL_CHECK_TIMEOUT = timedelta(seconds=5)
"""How long the question "would you refuse this?" may take; with no answer the command is sent anyway and
the workflow decides."""
STORE_POLL = 0.1
"""The pause (seconds) between two reads of the store for a command's recorded outcome: an indexed read of
one subject's newest ledger entries, no work for the worker."""
QUERY_FALLBACK_AFTER = (2.0, 4.0, 8.0, 16.0)
"""When (seconds after sending) the workflow is asked for an answer the store has not shown: a worker of an
older release records outcomes without the command's id, and a query is the only way to learn them."""
FIRST_ANSWER_POLL = 0.05
MAX_ANSWER_POLL = 1.0
"""The pauses (seconds) between two questions for the answer: 50 ms at first, doubling up to 1 s — a
command is usually answered within the first few, and a slow one costs about a query a second."""

Answer = TypeVar("Answer")


async def refusal_of(
    handle: WorkflowHandle[Any, Any],
    query: Callable[..., str | None],
    command: Any,
    *,
    timeout: timedelta = REFUSAL_CHECK_TIMEOUT,
) -> str | None:
    """The workflow's refusal of ``command`` as things stand (its ``query``); None when it would carry it
    out, or cannot say in time (then it decides when the command arrives). NOT_FOUND — the workflow has
    completed — propagates, so the caller can say how it ended."""
    try:
        refusal: str | None = await handle.query(query, command, rpc_timeout=timeout)
        return refusal
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise
        log.info("%s: no answer to the refusal check (%s); sending anyway", handle.id, err)
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
        log.warning("%s: the refusal check failed (%s); sending anyway", handle.id, err)
    return None


async def answer_to(
    handle: WorkflowHandle[Any, Any],
    query: Callable[..., Answer | None],
    command_id: str,
    *,
    wait: float = ANSWER_WAIT,
) -> Answer | None:
    """Ask the workflow's answer ``query`` about ``command_id`` until it answers or ``wait`` seconds pass
    (None: not carried out yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    pause = FIRST_ANSWER_POLL
    while True:
        remaining = deadline - loop.time()
        try:
            answer: Answer | None = await handle.query(
                query, command_id, rpc_timeout=timedelta(seconds=max(1.0, remaining))
            )
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
            log.debug("%s: no answer yet to %s (%s)", handle.id, command_id, err)
        else:
            if answer is not None:
                return answer
        if loop.time() + pause >= deadline:
            return None
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_ANSWER_POLL)


async def recorded_answer(
    recorded: Callable[[], Awaitable[Answer | None]],
    asked: Callable[[], Awaitable[Answer | None]],
    *,
    wait: float = ANSWER_WAIT,
) -> Answer | None:
    """Wait for a command's outcome as the workflow recorded it (``recorded``, a store read), asking the
    workflow itself (``asked``, its answer query) only at ``QUERY_FALLBACK_AFTER``; None when neither has an
    answer within ``wait`` seconds.

    A query is a task for the worker, queued behind the workflow tasks it is already running: with a
    thousand open requests and approvals arriving every second, a query every 50 ms per approval doubled the
    worker's load and the approvals' latency. The store is written by the same activity that records the
    outcome, so it answers as soon as the workflow does."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + wait
    ask_at = [started + after for after in QUERY_FALLBACK_AFTER if after < wait]
    while True:
        answer = await recorded()
        if answer is None and ask_at and loop.time() >= ask_at[0]:
            del ask_at[0]
            try:
                answer = await asked()
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
                log.debug("no answer yet from the workflow (%s)", err)
        if answer is not None:
            return answer
        if loop.time() + STORE_POLL >= deadline:
            return None
        await asyncio.sleep(STORE_POLL)
