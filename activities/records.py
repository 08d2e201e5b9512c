"""Writing a request's transitions to the SQL store and the evidence ledger, and anchoring the ledger.

Every transition of a request is one call: the latest ``RequestView`` is saved and one ledger entry
appended. The idempotency key is derived from the workflow id, the run id and a step number held in
workflow state, so an activity retried after a lost reply neither duplicates the entry nor regresses the
row, while a run started by a Temporal reset (same workflow id, steps counted again) writes new entries
instead of colliding with the old run's. The workflow also sends the hash of the event's content
(:func:`event_content_hash`): a key seen before with other content is an error, never a silent no-op.

:class:`LedgerAnchorActivities` are the side effects of ``workflows/ledger_anchor.py``: write the ledger
head to the shared anchor, and raise the alert when that keeps failing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.requests import RequestView
from store import Store
from store.anchors import AnchorWriteError, SharedAnchor
from store.ledger import IdempotencyConflict, content_hash

log = logging.getLogger(__name__)

LEDGER_CONFLICT = "LedgerIdempotencyConflict"
"""Error type of a record whose idempotency key is already held by an entry with other content."""


class LedgerEvent(BaseModel):
    kind: str
    actor: str
    channel: str
    data: dict[str, Any] = Field(default_factory=dict)


def event_content_hash(subject: str, event: LedgerEvent) -> str:
    """The hash of what ``event`` says about ``subject``, as the store will hold it (JSON types), without
    any time taken in the activity. Deterministic: computed in the workflow."""
    plain = event.model_dump(mode="json")
    return content_hash(
        kind=plain["kind"],
        subject=subject,
        actor=plain["actor"],
        channel=plain["channel"],
        data=plain["data"],
    )


class RecordInput(BaseModel):
    view: RequestView
    event: LedgerEvent
    idempotency_key: str
    content_hash: str | None = None
    """:func:`event_content_hash` of ``event`` (None in histories written before it existed)."""


class RecordActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="record_request_event")
    async def record(self, inp: RecordInput) -> int:
        """Save the view and append the ledger entry; returns the entry's sequence number."""
        return await asyncio.to_thread(self._record, inp)

    def _record(self, inp: RecordInput) -> int:
        self._store.save_request(inp.view)
        try:
            entry = self._store.append_ledger(
                kind=inp.event.kind,
                subject=inp.view.id,
                actor=inp.event.actor,
                channel=inp.event.channel,
                data=inp.event.data,
                idempotency_key=inp.idempotency_key,
                content_hash=inp.content_hash,
            )
        except IdempotencyConflict as exc:
            # Permanent: retrying cannot make the stored entry say something else. The workflow fails
            # loudly rather than carry on with evidence missing.
            log.error("%s", exc)
            raise ApplicationError(str(exc), type=LEDGER_CONFLICT, non_retryable=True) from exc
        return entry.seq


# --- the ledger anchor -------------------------------------------------------------------------------

LEDGER_ANCHOR_SUBJECT = "ledger-anchor"


class AnchorHeadInput(BaseModel):
    last_seq: int = 0
    last_hash: str = ""


class AnchorHeadResult(BaseModel):
    seq: int
    hash: str
    written: bool
    """False when the head had not moved since the last anchor (nothing written)."""
    written_at: AwareDatetime | None = None


class AnchorAlertInput(BaseModel):
    kind: str  # ledger.anchor_failed | ledger.anchor_restored
    problem: str = ""
    since: AwareDatetime
    idempotency_key: str


class LedgerAnchorActivities:
    def __init__(self, store: Store, anchor: SharedAnchor | None) -> None:
        self._store = store
        self._anchor = anchor

    @activity.defn(name="anchor_ledger_head")
    async def anchor_head(self, inp: AnchorHeadInput) -> AnchorHeadResult:
        """Write the ledger head to the shared anchor unless it is the one anchored last."""
        return await asyncio.to_thread(self._anchor_head, inp)

    def _anchor_head(self, inp: AnchorHeadInput) -> AnchorHeadResult:
        if self._anchor is None:
            raise ApplicationError(
                "this worker has no shared ledger anchor configured (GRANTFLOW_LEDGER_ANCHOR); "
                "every worker must have the same anchor settings",
                type="AnchorNotConfigured",
            )
        head = self._store.ledger_head()
        if head.seq == 0 or (head.seq == inp.last_seq and head.hash == inp.last_hash):
            return AnchorHeadResult(seq=head.seq, hash=head.hash, written=False)
        try:
            record = self._anchor.write(head)
        except AnchorWriteError as exc:
            log.error("ledger head #%s not anchored (retried): %s", head.seq, exc)
            raise
        return AnchorHeadResult(seq=record.seq, hash=record.hash, written=True, written_at=record.written_at)

    @activity.defn(name="record_ledger_anchor_alert")
    async def alert(self, inp: AnchorAlertInput) -> None:
        """Log the anchor's failure (or recovery) and record it in the ledger itself."""
        await asyncio.to_thread(self._alert, inp)

    def _alert(self, inp: AnchorAlertInput) -> None:
        location = self._anchor.location if self._anchor is not None else "(no shared anchor configured)"
        if inp.kind == "ledger.anchor_failed":
            log.error(
                "ALERT: the ledger head cannot be anchored to %s since %s: %s (retrying)",
                location,
                inp.since.isoformat(),
                inp.problem,
            )
        else:
            log.warning("the ledger head is anchored to %s again (failing since %s)", location, inp.since)
        self._store.append_ledger(
            kind=inp.kind,
            subject=LEDGER_ANCHOR_SUBJECT,
            actor="grantflow",
            channel="system",
            data={"anchor": location, "problem": inp.problem, "since": inp.since.isoformat()},
            idempotency_key=inp.idempotency_key,
        )
