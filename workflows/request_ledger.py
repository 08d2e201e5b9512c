"""RequestLedger: how an access request says what happened — one store write and ledger entry per
transition, and notifications to people.

Every transition is saved with one ledger entry, serialised by a lock so the store sees them in order,
each with an idempotency key derived from the workflow id, the run id and a step number, and the hash of
its content (the same key with other content is an error). Each entry also brings the channels up to date
(``Presenter.present``), queued before the store is written so the presentation follows the entry.
Recording is critical (retried until it succeeds); notifying is best effort (a failure is logged).

It never changes the request's status or decides anything: callers change the view, then record it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notifications import NotificationActivities, NotifyInput
    from activities.records import LedgerEvent, RecordActivities, RecordInput, event_content_hash
    from domain.identity import Actor, PersonRef
    from domain.requests import RequestStatus, RequestView
    from workflows.presenter import Presenter
    from workflows.request_policies import BEST_EFFORT_RETRY, CRITICAL_RETRY


class RequestLedger:
    """Records and notifies for one request; ``step`` (carried across continue-as-new) numbers entries."""

    def __init__(self, view: RequestView, presenter: Presenter, step: int = 0) -> None:
        self._view = view  # the request's one view object, changed in place by the workflow
        self._presenter = presenter
        self._lock = asyncio.Lock()
        self.step = step

    async def record(
        self,
        kind: str,
        *,
        actor: Actor | str = "grantflow",
        channel: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        async with self._lock:
            self.step += 1
            self._view.updated_at = workflow.now()
            account: dict[str, str] = {}
            if isinstance(actor, Actor):
                actor_text, channel = actor.describe(), channel or actor.channel
                account = actor.ledger_data()
            else:
                actor_text = actor
            event = LedgerEvent(
                kind=kind,
                actor=actor_text,
                channel=channel or "system",
                data={"status": self._view.status.value, **(data or {}), **account},
            )
            self._presenter.present()
            info = workflow.info()
            await workflow.execute_activity_method(
                RecordActivities.record,
                RecordInput(
                    view=self._view,
                    event=event,
                    # The run id keeps a run started by a Temporal reset (steps counted again) from
                    # colliding with the entries of the run it replaced.
                    idempotency_key=f"{info.workflow_id}:{info.run_id}:{self.step}",
                    content_hash=event_content_hash(self._view.id, event),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=CRITICAL_RETRY,
            )

    async def fail(self, reason: str, *, notify: bool) -> None:
        """End the request FAILED with ``reason``: recorded, and told to the requester if ``notify``."""
        fail(self._view, reason)
        await self.record("request.failed", data={"failure_reason": self._view.failure_reason})
        if notify:
            await self.notify("closed", [self._view.requester])

    async def notify(
        self, event: str, recipients: list[PersonRef], *, with_review_link: bool = False, note: str = ""
    ) -> None:
        if not recipients:
            return
        try:
            await workflow.execute_activity_method(
                NotificationActivities.notify,
                NotifyInput(
                    event=event,
                    view=self._view,
                    recipients=recipients,
                    with_review_link=with_review_link,
                    note=note,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=BEST_EFFORT_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("notification %s for %s not sent: %s", event, self._view.id, err.cause)


def fail(view: RequestView, reason: str) -> None:
    """Mark the view FAILED with the sentence saying why (nothing recorded yet)."""
    view.status = RequestStatus.FAILED
    view.failure_reason = reason
    view.ended_at = workflow.now()


def approvers_who_decided(view: RequestView) -> list[PersonRef]:
    """Everyone who voted on the request, once each, in the order they first voted."""
    seen: dict[str, PersonRef] = {}
    for d in [*view.approvals, *view.denials]:
        seen.setdefault(d.approver.id, d.approver)
    return list(seen.values())
