"""The secrets scan the dev server's session ends with (tests/conftest.py) finds a secret wherever it
reached a history, and only there."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.rigs.secrets_scan import scan_histories


async def test_the_scan_finds_a_secret_in_a_workflow_input_and_nothing_else(
    dev_env: WorkflowEnvironment,
) -> None:
    leaked, kept = f"hpk_leaked_{uuid.uuid4().hex}", f"hpk_kept_{uuid.uuid4().hex}"
    workflow_id = f"leaky-{uuid.uuid4().hex[:8]}"
    # No worker polls this queue: the started event alone holds the input.
    handle = await dev_env.client.start_workflow(
        "NobodyRunsThis", {"api_key": leaked}, id=workflow_id, task_queue=f"nobody-{uuid.uuid4().hex}"
    )
    try:
        for _ in range(100):  # the server's list (its visibility store) catches up within moments
            scan = await scan_histories(dev_env.client, {"leaked key": leaked, "kept key": kept})
            if scan.found:
                break
            await asyncio.sleep(0.05)
        assert (workflow_id, "leaked key") in scan.found
        assert all(name != "kept key" for _, name in scan.found)
        assert scan.workflows >= 1 and scan.events >= 1
    finally:
        await handle.terminate("scan checked")
    with pytest.raises(ValueError, match="too short"):
        await scan_histories(dev_env.client, {"pin": "1234"})
