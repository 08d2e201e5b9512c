"""Secrets never enter workflow inputs, results or history: list every workflow a Temporal server holds,
fetch each history, and look for the configured secrets in the raw bytes of every event.

Payloads are JSON inside the history's protobuf, stored as they were sent (grantflow uses no payload codec),
so a secret that reached any input, result, signal, update, memo or failure message appears verbatim in
the serialised events. The time-skipping server cannot list workflows: run this against a dev server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from temporalio.client import Client


@dataclass
class ScanResult:
    workflows: int = 0
    events: int = 0
    found: list[tuple[str, str]] = field(default_factory=list)
    """(workflow id, name of the secret found in its history)"""


async def scan_histories(client: Client, secrets: Mapping[str, str | bytes]) -> ScanResult:
    needles = {name: s.encode() if isinstance(s, str) else s for name, s in secrets.items() if s}
    too_short = [name for name, needle in needles.items() if len(needle) < 8]
    if too_short:  # a short value would match by chance and prove nothing
        raise ValueError(f"secrets too short to scan for: {', '.join(too_short)}")
    result = ScanResult()
    async for execution in client.list_workflows():
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        result.workflows += 1
        result.events += len(history.events)
        raw = b"".join(event.SerializeToString() for event in history.events)
        result.found += [(execution.id, name) for name, needle in needles.items() if needle in raw]
    return result
