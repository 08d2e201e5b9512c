"""Writing a request's transitions to the SQL store and the evidence ledger.

Every transition of a request is one call: the latest ``RequestView`` is saved and one ledger entry
appended. The idempotency key is derived from the workflow id and a step number held in workflow
state, so an activity retried after a lost reply neither duplicates the entry nor regresses the row.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from domain.requests import RequestView
from store import Store


class LedgerEvent(BaseModel):
    kind: str
    actor: str
    channel: str
    data: dict[str, Any] = Field(default_factory=dict)


class RecordInput(BaseModel):
    view: RequestView
    event: LedgerEvent
    idempotency_key: str


class RecordActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="record_request_event")
    async def record(self, inp: RecordInput) -> int:
        """Save the view and append the ledger entry; returns the entry's sequence number."""
        return await asyncio.to_thread(self._record, inp)

    def _record(self, inp: RecordInput) -> int:
        self._store.save_request(inp.view)
        entry = self._store.append_ledger(
            kind=inp.event.kind,
            subject=inp.view.id,
            actor=inp.event.actor,
            channel=inp.event.channel,
            data=inp.event.data,
            idempotency_key=inp.idempotency_key,
        )
        return entry.seq
