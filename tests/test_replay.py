"""Replay tests: saved histories of long-lived workflows must replay on the current code.

A grant workflow lives as long as its grant (hours to weeks), so a deploy meets histories written by
the previous release. A change that alters the order of commands without ``workflow.patched`` fails
here. The saved histories under ``tests/histories/`` are real runs; to add one after a deliberate,
patched change, run this module with ``RECORD_HISTORIES=1`` and commit the new file.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from domain.requests import DecisionInput, EndInput, RequestStatus, Verdict
from tests.stack import HOOP_KEY, LEDGER_KEY, LINK_SECRET, Stack
from workflows.access_request import AccessRequestWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
SAVED = sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
async def test_saved_history_replays_on_current_code(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def test_histories_are_saved() -> None:
    assert {p.stem for p in SAVED} >= {"approved_then_relinquished", "denied"}


def _payload_text(node: object) -> str:
    """Every payload in a history, decoded (the JSON form carries them base64-encoded)."""
    if isinstance(node, dict):
        if "metadata" in node and "data" in node and isinstance(node["data"], str):
            return base64.b64decode(node["data"]).decode("utf-8", "replace")
        return "\n".join(_payload_text(v) for v in node.values())
    if isinstance(node, list):
        return "\n".join(_payload_text(v) for v in node)
    return ""


async def _record(stack: Stack, name: str, history: WorkflowHistory) -> None:
    if os.environ.get("RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(
            json.dumps(
                {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}, indent=1
            )
        )


async def test_current_code_replays_its_own_history_and_keeps_secrets_out(time_stack: Stack) -> None:
    """Runs the main paths, replays them, and checks no secret reached Temporal's history."""
    stack = time_stack
    approved = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await stack.wait_for(approved, lambda v: v.approvers_resolved)
    for email in ("bob@example.com", "carol@example.com"):
        await approved.execute_update(
            AccessRequestWorkflow.decide, DecisionInput(actor=stack.actor(email), verdict=Verdict.APPROVE)
        )
    await stack.wait_for(approved, lambda v: v.status is RequestStatus.ACTIVE)
    await approved.execute_update(
        AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("alice@example.com"))
    )
    await approved.result()

    denied = await stack.start_request("erin@example.com", "pg-prod", "read", timedelta(hours=1))
    await stack.wait_for(denied, lambda v: v.approvers_resolved)
    await denied.execute_update(
        AccessRequestWorkflow.decide,
        DecisionInput(actor=stack.actor("dan@example.com"), verdict=Verdict.DENY),
    )
    await denied.result()

    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    for name, handle in (("approved_then_relinquished", approved), ("denied", denied)):
        history = await handle.fetch_history()
        await replayer.replay_workflow(history)
        raw = _payload_text(json.loads(history.to_json()))
        assert "alice@example.com" in raw or "erin@example.com" in raw  # the decoding works
        for secret in (HOOP_KEY, LEDGER_KEY.decode(), LINK_SECRET):
            assert secret not in raw, f"a secret reached the history of {name}"
        assert "/review/" not in raw, "review links are credentials: they belong in activities only"
        await _record(stack, name, history)
