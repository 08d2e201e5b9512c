"""Decisions and actions on existing requests: approve, deny, extend, relinquish, cancel, revoke.

Each is sent to the request's workflow as a signal carrying a ``RequestCommand`` with a fresh id (see
``AccessRequestWorkflow.submit`` for why signals and not Updates). Before sending, the request's stored
view is checked against the workflow's own rules, and a refusal found there is confirmed with the workflow
(``refusal`` query): a refusal here — or because the workflow has already completed — is written to the
evidence ledger as a refused attempt (``decision.refused``, ``extend.refused``, ``relinquish.refused``,
``cancel.refused``, ``revoke.refused``) and raised as :class:`~web.service.errors.Refused` carrying the
sentence a person reads; a refusal the workflow makes itself (its state moved in between) the workflow
records.

Once sent, a command is durable. A decision or extension is answered from the store, where the workflow
records its outcome under the command's id (``COMMAND_ID``), so waiting for it costs the worker nothing; an
end is answered by the workflow's ``answer`` query. If no worker answers within ``answer_wait`` seconds the
caller is told it was delivered and will be carried out or refused when a worker runs. A vote that decides
the request (quorum or deny) answers once the stored request has moved on (at most ``setup_wait``
seconds), so the caller sees ACTIVE / DENIED rather than a stale PENDING. Who may decide is the workflow's
to say, never this module's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from domain.approval import (
    Stage,
    command_refusal,
    decision_refusal,
    end_refusal,
    extension_refusal,
    quorum_reached,
)
from domain.durations import DurationError, format_duration, parse_duration
from domain.identity import Actor
from domain.requests import (
    COMMANDS_RECORDED,
    CommandAnswer,
    DecisionInput,
    EndInput,
    ExtendInput,
    RequestAction,
    RequestCommand,
    RequestStatus,
    RequestView,
    Verdict,
)
from web.service.core import ServiceCore, clean_reason
from web.service.errors import BadInput, NotYetCarriedOut, Refused, Unavailable, short
from web.workflow_commands import (
    ANSWER_WAIT,
    REFUSAL_CHECK_TIMEOUT,
    STORE_POLL,
    answer_to,
    recorded_answer,
    refusal_of,
)
from workflows.access_request import END_ACTIONS, AccessRequestWorkflow

log = logging.getLogger("grantflow.web.service")

ACTION_NOUNS = {
    RequestAction.DECIDE: "decision",
    RequestAction.EXTEND: "extension request",
    RequestAction.RELINQUISH: "relinquishment",
    RequestAction.CANCEL: "cancellation",
    RequestAction.REVOKE: "revocation",
}


class DecisionsAndActions(ServiceCore):
    """Decisions and actions as commands signalled to the workflow, refusals recorded in the ledger."""

    answer_wait: float = ANSWER_WAIT

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

        command = RequestCommand(
            id=_command_id(),
            action=RequestAction.DECIDE,
            decision=inp,
            refusal_kind="decision.refused",
            refusal_data={"verdict": verdict.value, "reason_given": inp.reason},
        )
        view = await self._command(request_id, command, closed)
        if view.status is RequestStatus.PENDING and (view.denials or quorum_reached(view, Stage.REQUEST)):
            # This vote decided the request; answer with what it led to (DENIED, ACTIVE, FAILED).
            view = await self._settle_stored(view, lambda v: v.status is not RequestStatus.PENDING)
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

        command = RequestCommand(
            id=_command_id(),
            action=RequestAction.EXTEND,
            extension=inp,
            refusal_kind="extend.refused",
            refusal_data={"action": "extend", "by": format_duration(delta), "reason_given": inp.reason},
        )
        return await self._command(request_id, command, closed)

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

        def closed(view: RequestView) -> str:
            return end_refusal(view, actor, action, None) or closed_sentence(view)

        command = RequestCommand(
            id=_command_id(),
            action=RequestAction(action),
            end=inp,
            refusal_kind=f"{action}.refused",
            refusal_data={"action": action, "reason_given": inp.reason},
        )
        return await self._command(request_id, command, closed)

    async def _command(
        self, request_id: str, command: RequestCommand, closed: Callable[[RequestView], str]
    ) -> RequestView:
        """Ask whether the workflow would refuse ``command``, send it, and wait for its answer."""
        stored = await self._stored(request_id)
        handle = self._handle(request_id)
        actor = command.actor
        # A recorded outcome comes after the ledger's present head (read before sending, so it is older);
        # ends are answered by query and need no head.
        since_seq = (
            (await self._store_call(self._store.ledger_head)).seq
            if command.action in COMMANDS_RECORDED
            else 0
        )
        try:
            # The stored view is enough to let most commands through without asking the workflow (a
            # query per command would load a busy worker); only a refusal is confirmed with it, since
            # the store can lag the workflow (approvers just resolved, a stage just opened).
            resolved = {p.id for p in stored.eligible_approvers} if stored.approvers_resolved else None
            sentence = command_refusal(stored, resolved, command)
            if sentence is not None:
                sentence = await self._refusal(handle, command)
            if sentence is None:
                await handle.signal(AccessRequestWorkflow.submit, command)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise Unavailable(f"Temporal could not be reached: {short(err)}") from err
            # The workflow has completed (or is gone after retention): the request is closed.
            sentence = closed(await self._latest(handle, stored))
        if sentence is not None:
            data = {**command.refusal_data, "refusal": sentence}
            await self._record_refusal(request_id, actor, command.refusal_kind, data)
            raise Refused(sentence)
        answer = await self._answer(handle, command, since_seq)
        if answer is None:
            raise NotYetCarriedOut(
                f"request {request_id}: the {ACTION_NOUNS[command.action]} was delivered but no worker has "
                "carried it out yet; it will be carried out or refused when one runs (check with show)"
            )
        if answer.refusal is not None:  # recorded in the ledger by the workflow
            raise Refused(answer.refusal)
        return answer.view

    async def _refusal(self, handle: WorkflowHandle[Any, Any], command: RequestCommand) -> str | None:
        return await refusal_of(handle, AccessRequestWorkflow.refusal, command, timeout=REFUSAL_CHECK_TIMEOUT)

    async def _answer(
        self, handle: WorkflowHandle[Any, Any], command: RequestCommand, since_seq: int
    ) -> CommandAnswer | None:
        if command.action not in COMMANDS_RECORDED:
            return await answer_to(handle, AccessRequestWorkflow.answer, command.id, wait=self.answer_wait)
        request_id = handle.id

        async def recorded() -> CommandAnswer | None:
            entry = await self._store_call(
                self._store.ledger_entry_of_command, request_id, command.id, after_seq=since_seq
            )
            if entry is None:
                return None
            # The entry and the request's view are saved in one transaction: the view is at least as new.
            view = await self._stored(request_id)
            refused = entry.kind == command.refusal_kind
            return CommandAnswer(refusal=str(entry.data["refusal"]) if refused else None, view=view)

        async def asked() -> CommandAnswer | None:
            answer: CommandAnswer | None = await handle.query(
                AccessRequestWorkflow.answer, command.id, rpc_timeout=REFUSAL_CHECK_TIMEOUT
            )
            return answer

        return await recorded_answer(recorded, asked, wait=self.answer_wait)

    async def _settle_stored(self, view: RequestView, done: Callable[[RequestView], bool]) -> RequestView:
        """Read the stored request until ``done`` holds or ``setup_wait`` passes; the latest view either way
        (the store, not a query: the workflow records every change of status with its view)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._setup_wait
        while not done(view) and loop.time() < deadline:
            await asyncio.sleep(STORE_POLL)
            view = await self._stored(view.id)
        return view

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


def _command_id() -> str:
    return f"cmd-{uuid4().hex}"


def closed_sentence(view: RequestView) -> str:
    return f"request {view.id} is already {view.status.value}; nothing can change it now"
