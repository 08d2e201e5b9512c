"""Decisions and actions on existing requests: approve, deny, extend, relinquish, cancel, revoke.

Each is a Temporal Update whose validator decides. A refusal — from the validator, or because the workflow
has already completed — is written to the evidence ledger as a refused attempt (``decision.refused``,
``extend.refused``, ``relinquish.refused``, ``cancel.refused``, ``revoke.refused``) and raised as
:class:`~web.service.errors.Refused` carrying the sentence a person reads. A vote that decides the request
(quorum or deny) answers once the workflow has moved on (at most ``setup_wait`` seconds), so the caller
sees ACTIVE / DENIED rather than a stale PENDING. Who may decide is the workflow's to say, never this
module's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.approval import Stage, decision_refusal, end_refusal, extension_refusal, quorum_reached
from domain.durations import DurationError, format_duration, parse_duration
from domain.identity import Actor
from domain.requests import DecisionInput, EndInput, ExtendInput, RequestStatus, RequestView, Verdict
from web.service.core import ServiceCore, clean_reason
from web.service.errors import BadInput, Refused, ServiceError, Unavailable, short
from workflows.access_request import AccessRequestWorkflow

log = logging.getLogger("grantflow.web.service")

END_ACTIONS = ("relinquish", "cancel", "revoke")


class DecisionsAndActions(ServiceCore):
    """Decisions and actions as the workflow's Updates, refusals recorded in the ledger."""

    async def decide(
        self,
        request_id: str,
        actor: Actor,
        verdict: Verdict | str,
        reason: str = "",
        *,
        stage: str | None = None,
    ) -> RequestView:
        """Approve or deny as ``actor``; eligibility is the workflow's to decide. ``stage`` is the stage the
        person saw (a review page, a Slack button): a decision for another stage is refused."""
        try:
            verdict = Verdict(verdict)
        except ValueError:
            raise BadInput(f"verdict {verdict!r} is not understood; use approve or deny") from None
        if actor.admin is not None and actor.admin.id == actor.person.id:
            # An administrator deciding as themselves decides as a person: no admin power in a vote.
            actor = actor.model_copy(update={"admin": None})
        inp = DecisionInput(actor=actor, verdict=verdict, reason=clean_reason(reason), stage=stage)

        def closed(view: RequestView) -> str:
            return decision_refusal(view, None, actor, verdict) or closed_sentence(view)

        view = await self._update(
            request_id,
            actor,
            kind="decision.refused",
            data={"verdict": verdict.value, "reason_given": inp.reason},
            call=lambda h: h.execute_update(AccessRequestWorkflow.decide, inp),
            closed=closed,
        )
        if view.status is RequestStatus.PENDING and (view.denials or quorum_reached(view, Stage.REQUEST)):
            # This vote decided the request; answer with what it led to (DENIED, ACTIVE, FAILED).
            view = await self._settle(
                self._handle(request_id), view, lambda v: v.status is not RequestStatus.PENDING
            )
        return view

    async def extend(self, request_id: str, actor: Actor, by: str, reason: str = "") -> RequestView:
        """Ask for more time; applied at once under ``self_extension``, else it needs approvals."""
        try:
            delta = parse_duration(by)
        except DurationError as exc:
            raise BadInput(str(exc).replace("duration", "extension", 1)) from None
        inp = ExtendInput(actor=actor, by=delta, reason=clean_reason(reason))

        def closed(view: RequestView) -> str:
            return extension_refusal(view, actor, delta) or closed_sentence(view)

        return await self._update(
            request_id,
            actor,
            kind="extend.refused",
            data={"action": "extend", "by": format_duration(delta), "reason_given": inp.reason},
            call=lambda h: h.execute_update(AccessRequestWorkflow.extend, inp),
            closed=closed,
        )

    async def relinquish(self, request_id: str, actor: Actor, reason: str = "") -> RequestView:
        """Give ACTIVE access back early (the requester, or an administrator)."""
        return await self._end("relinquish", request_id, actor, reason)

    async def cancel(self, request_id: str, actor: Actor, reason: str = "") -> RequestView:
        """Withdraw a PENDING request (the requester, or an administrator)."""
        return await self._end("cancel", request_id, actor, reason)

    async def revoke(self, request_id: str, actor: Actor, reason: str = "") -> RequestView:
        """Take ACTIVE access away (an administrator, or one of the request's approvers)."""
        return await self._end("revoke", request_id, actor, reason)

    async def _end(self, action: str, request_id: str, actor: Actor, reason: str) -> RequestView:
        assert action in END_ACTIONS
        inp = EndInput(actor=actor, reason=clean_reason(reason))
        update = {
            "relinquish": AccessRequestWorkflow.relinquish,
            "cancel": AccessRequestWorkflow.cancel,
            "revoke": AccessRequestWorkflow.revoke,
        }[action]

        def closed(view: RequestView) -> str:
            return end_refusal(view, actor, action, None) or closed_sentence(view)

        return await self._update(
            request_id,
            actor,
            kind=f"{action}.refused",
            data={"action": action, "reason_given": inp.reason},
            call=lambda h: h.execute_update(update, inp),
            closed=closed,
        )

    async def _update(
        self,
        request_id: str,
        actor: Actor,
        *,
        kind: str,
        data: dict[str, Any],
        call: Callable[[WorkflowHandle[Any, Any]], Awaitable[RequestView]],
        closed: Callable[[RequestView], str],
    ) -> RequestView:
        stored = await self._stored(request_id)
        handle = self._handle(request_id)
        try:
            return await call(handle)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "Refused":
                sentence = cause.message
            else:
                raise ServiceError(f"request {request_id}: the update failed: {short(cause or err)}") from err
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            raise Unavailable(
                f"request {request_id}: Temporal did not confirm the change in time; check with show"
            ) from err
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise Unavailable(f"Temporal could not be reached: {short(err)}") from err
            # The workflow has completed (or is gone after retention): the request is closed.
            view = await self._latest(handle, stored)
            sentence = closed(view)
        await self._record_refusal(request_id, actor, kind, {**data, "refusal": sentence})
        raise Refused(sentence)

    async def _record_refusal(self, request_id: str, actor: Actor, kind: str, data: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                self._store.append_ledger,
                kind=kind,
                subject=request_id,
                actor=actor.describe(),
                channel=actor.channel,
                data={**data, **actor.ledger_data()},
            )
        except Exception as exc:
            log.exception("request %s: a refused attempt could not be recorded", request_id)
            raise Unavailable(
                f"the attempt was refused ({data.get('refusal')}), but the refusal could not be recorded: "
                f"{short(exc)}"
            ) from exc

    async def record_forbidden(self, subject: str, who: str, channel: str, refusal: str) -> None:
        """A caller tried something their credentials never allow (e.g. a requester token acting for
        someone else): the attempt is evidence too, recorded under ``subject`` (the request it aimed at, or
        the token when there is none) before the refusal is answered."""
        try:
            await asyncio.to_thread(
                self._store.append_ledger,
                kind="access.forbidden",
                subject=subject,
                actor=who,
                channel=channel,
                data={"refusal": refusal},
            )
        except Exception as exc:
            log.exception("a forbidden attempt on %s could not be recorded", subject)
            raise Unavailable(
                f"the attempt was refused ({refusal}), but the refusal could not be recorded: {short(exc)}"
            ) from exc


def closed_sentence(view: RequestView) -> str:
    return f"request {view.id} is already {view.status.value}; nothing can change it now"
