"""Every workflow history a server holds replays on the current code: a crash that makes a worker rebuild
a workflow from its history must meet the same commands in the same order, or the workflow is stuck on a
nondeterminism error that no retry clears. The reliability scenarios run this after their crashes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS


@dataclass
class ReplayCheck:
    workflows: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    """workflow id (and run) → why its history did not replay"""


async def replay_every_history(client: Client, keep_failures_in: Path | None = None) -> ReplayCheck:
    """Replay every history on ``client``'s server; one that fails is written to ``keep_failures_in`` (as
    ``<workflow id>.history.json``, readable by ``WorkflowHistory.from_json``), for the run that found
    it cannot be repeated at will."""
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    check = ReplayCheck()
    async for execution in client.list_workflows():
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        check.workflows += 1
        if result.replay_failure is not None:
            check.failures[f"{execution.id} ({execution.run_id})"] = str(result.replay_failure)
            if keep_failures_in is not None:
                keep_failures_in.mkdir(parents=True, exist_ok=True)
                (keep_failures_in / f"{execution.id}.history.json").write_text(history.to_json())
    return check
