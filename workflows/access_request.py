"""AccessRequestWorkflow: one just-in-time access request from asking to the end of the access.

    PENDING ──quorum──▶ ACTIVE ──expiry / relinquish / revoke──▶ REVOKING ──verified──▶ ENDED
       │                  ▲ (auto-approve and break-glass skip PENDING)
       ├─ one eligible deny ─▶ DENIED
       ├─ request_timeout ───▶ TIMED_OUT
       ├─ cancel ────────────▶ CANCELLED
       └─ gateway refuses ───▶ FAILED (failure_reason says what to do)

This module is the process: the order of its steps, the votes and actions (signals answered by a
query), the identity signals and the view query, the end of the pending stage, and continue-as-new. The
rest is delegated, one object per concern, all holding the request's one view object:
- ``Approvers`` (``approvers``): the eligible set, resolved once and kept current by identity sync;
- ``access_gates.check_access``: hoop's gates for the requester, before asking and before granting;
- ``GrantHolder`` (``grant_holder``): writing, renewing, holding and revoking the grant;
- ``HoopDecided`` (``hoop_decided``): the strategy of a request with an ``origin`` (a review pending in
  hoop), decided in hoop instead of provisioning a grant;
- ``Presenter`` (``presenter``): the request in Slack, Jira and email, in the background;
- ``RequestLedger`` (``request_ledger``): one store write and ledger entry per transition, notifications;
- ``request_policies``: retry policies, deadlines and the state carried over (``CarriedOver``).

Invariants:
- Decisions and actions arrive as signals (``submit``, one ``RequestCommand`` each, answered under its id
  by the ``answer`` query). A signal is in the history as soon as the server has it, worker or no worker,
  and replays in the order it was written. (They were Updates until an SDK defect showed: an Update that
  arrives while a timed-out workflow task waits for a worker is accepted after that task's activity
  results when it runs, but before them when the history is replayed, and the request is stuck;
  ``tests/histories/sdk_defects``. The Update handlers stay, so requests that received Updates replay.)
  Commands and identity changes are carried out one at a time, each to its end, in the order they
  arrived (``_one_at_a_time``).
  ``refusal`` refuses (with a sentence) anyone not in the eligible set held in state, the requester, a
  second vote by the same identity, and anything after the stage closed. The edge asks it first, so a
  refused attempt usually writes nothing to history and the edge records it in the ledger; what the
  request refuses itself (state moved in between) it records in the ledger itself.
- The history stays bounded: the policy caps extensions (``min_extension``, ``max_extensions``), and an
  ACTIVE request whose history reaches ``CONTINUE_AS_NEW_AFTER`` events continues as new between two
  steps of its active phase, once every update handler has finished, carrying its state (``CarriedOver``:
  the view, the eligible set, the grants' correlation ids, the ledger step, the channels' handles).

It never calls a vendor (activities do) and never reads the wall clock (only ``workflow.now()``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.approval import (
        Stage,
        command_refusal,
        decision_refusal,
        end_refusal,
        extension_refusal,
        open_stage,
        quorum_reached,
    )
    from domain.channels import ChannelState
    from domain.durations import format_duration
    from domain.identity import Actor
    from domain.requests import (
        AccessRequestInput,
        ApproversChanged,
        CommandAnswer,
        Decision,
        DecisionInput,
        EndInput,
        EndReason,
        ExtendInput,
        HoopReviewChanged,
        PendingExtension,
        PersonLeft,
        RequestAction,
        RequestCommand,
        RequestStatus,
        RequestView,
        RetroReview,
        Verdict,
        initial_view,
        naming_command,
    )
    from workflows.access_gates import check_access
    from workflows.approvers import Approvers
    from workflows.grant_holder import GrantHolder
    from workflows.hoop_decided import Concluded, HoopDecided, Look
    from workflows.presenter import Presenter, PresentQueue
    from workflows.request_ledger import RequestLedger
    from workflows.request_policies import (
        CONTINUE_AS_NEW_AFTER,
        CarriedOver,
        Refused,
        wait_at_most,
    )

END_ACTIONS = ("relinquish", "cancel", "revoke")
ANSWERS_KEPT = 200  # answers to the edge's commands kept in a run (the edge asks within seconds)
ANSWERS_CARRIED = 20  # of which a continued run carries the latest

SERIAL_COMMANDS_PATCH = "commands-one-at-a-time"
"""Requests that received commands before they were carried out one at a time replay side by side."""

ADMIN_ON_BEHALF_PATCH = "admin-on-behalf-needs-policy"
"""Decisions accepted before an administrator's vote on behalf of an approver needed the policy's
``allow_admin_on_behalf`` replay as they were made."""


@workflow.defn
class AccessRequestWorkflow:
    @workflow.init
    def __init__(self, start: AccessRequestInput | CarriedOver) -> None:
        carried = start if isinstance(start, CarriedOver) else None
        inp = start.input if isinstance(start, CarriedOver) else start
        self._input = inp
        # One view object for the whole run, changed in place: every helper below holds it.
        self._view = view = carried.view if carried is not None else initial_view(inp)
        self._cancel: EndInput | None = None
        self._requester_left: PersonLeft | None = None
        self._new_run_wanted = False  # the history is long: continue as new once idle
        # The answers to the edge's commands (``submit``), by command id, oldest first; a continued run
        # carries the latest so an answer given just before continuing is still found.
        self._answers: dict[str, str | None] = dict(carried.answers) if carried is not None else {}
        self._in_flight: set[str] = set()
        self._turn = asyncio.Lock()  # held by the command or identity change being carried out
        # Presenting the request in Slack, Jira and email runs beside the process, newest view first.
        # A request made in a Jira intake issue adopts that issue as its ticket.
        if carried is None:
            self._presenter = Presenter(view, ChannelState(jira_key=inp.jira_key))
        else:
            queue = PresentQueue(
                carried.present_pending,
                tuple(carried.present_ask),
                tuple(carried.present_remind),
                carried.present_rounds,
            )
            self._presenter = Presenter(view, carried.channels, queue)
        self._ledger = RequestLedger(view, self._presenter, carried.step if carried is not None else 0)
        eligible = set(carried.eligible) if carried is not None else None
        self._approvers = Approvers(inp, view, self._ledger, eligible)
        # A request for a hoop review is decided there (a continued run is one only if its first was).
        origin = inp.origin if carried is None or carried.hoop_origin else None
        self._grant = GrantHolder(
            inp,
            view,
            self._ledger,
            correlation_ids=carried.correlation_ids if carried is not None else None,
            hoop_review=origin,
            review_granted=carried.hoop_review_granted if carried is not None else False,
        )
        self._hoop = HoopDecided(origin, inp, view, self._ledger, self._grant) if origin else None

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, start: AccessRequestInput | CarriedOver) -> RequestView:
        """``start`` is the request's input, or (in a run continuing an ACTIVE request) its carried state."""
        if isinstance(start, CarriedOver):
            return await self._resume_active()
        inp, view, ledger = start, self._view, self._ledger
        if inp.channels:
            self._presenter.start()
        await ledger.record(
            "request.created",
            actor=inp.submitted_by,
            data={
                "resource": inp.resource,
                "role": inp.role,
                "connection": inp.policy.connection,
                "duration": format_duration(inp.duration),
                "reason": inp.reason,
                "break_glass": inp.break_glass,
                "policy": inp.policy.model_dump(mode="json"),
            },
        )
        if not await check_access(view, ledger, before_granting=False):
            return await self._finish_failed()
        resolution = await self._approvers.resolve()
        if resolution is None:
            return await self._finish_failed()

        if inp.break_glass:
            if not inp.policy.break_glass.allowed:
                reason = f"the policy for {inp.resource} {inp.role} does not allow break-glass access"
                await ledger.fail(reason, notify=False)
                return await self._finish_failed()
            view.retro_review = RetroReview.PENDING
        elif resolution.auto_approve_group is not None:
            view.auto_approved = True
            view.decided_at = workflow.now()
            await ledger.record("request.auto_approved", data={"group": resolution.auto_approve_group})
        else:
            eligible, needed = len(view.eligible_approvers), view.required_approvals
            if eligible < needed:
                groups = ", ".join(inp.policy.approver_groups)
                reason = (
                    f"the policy for {inp.resource} {inp.role} needs {needed} approvals but only {eligible} "
                    f"eligible approver(s) exist in {groups} (the requester never counts); ask the group's "
                    "owners to add approvers, then request again"
                )
                await ledger.fail(reason, notify=True)
                return await self._finish_failed()
            await ledger.notify("request_created", view.eligible_approvers, with_review_link=True)
            self._presenter.present(ask=view.eligible_approvers)
            outcome = await self._await_decision()
            if outcome is not None:
                return await self._close(outcome)
            view.decided_at = workflow.now()

        # Group memberships and hoop's rules may have changed while approvers decided: a grant hoop would
        # not honour (or that nobody needs) is not written. A review approved in hoop's UI is not checked.
        mirrored = self._hoop is not None and self._hoop.mirrored is not None
        if not mirrored and not await check_access(view, ledger, before_granting=True):
            return await self._finish_failed()
        if self._hoop is not None:
            concluded = await self._hoop.conclude()
            if concluded is Concluded.DENIED:
                return await self._close(RequestStatus.DENIED)
            if concluded is Concluded.FINISHED:
                return await self._finish()
        elif not await self._grant.first_segment():
            return await self._finish()
        elif view.break_glass:
            await ledger.notify("retro_review", view.eligible_approvers, with_review_link=True)
            self._presenter.present(ask=view.eligible_approvers)
        return await self._hold_then_end()

    async def _resume_active(self) -> RequestView:
        """The rest of an ACTIVE request, in a new run (``_continue_as_new_if_long``)."""
        if self._input.channels:
            self._presenter.start()
        return await self._hold_then_end()

    async def _hold_then_end(self) -> RequestView:
        """Hold the access until its end, then revoke it and end the request."""
        await self._grant.hold(
            lambda: self._requester_left, self._continue_as_new_if_long, self._idle_for_new_run
        )
        await self._grant.revoke_and_end()
        return await self._finish()

    # ------------------------------------------------------------------ phases

    async def _await_decision(self) -> RequestStatus | None:
        """Wait for quorum (None), or a deny, cancel or timeout (the status to close with). For a hoop
        review, a decision taken in hoop's own UI also ends the wait (``HoopDecided.mirrored`` is set)."""
        view, hoop = self._view, self._hoop
        assert view.timeout_at is not None
        reminder_before = self._input.policy.reminder_before
        reminder_at = view.timeout_at - reminder_before if reminder_before else None
        while True:
            if view.denials:
                return RequestStatus.DENIED
            if self._cancel is not None or self._requester_left is not None:
                return RequestStatus.CANCELLED
            if quorum_reached(view, Stage.REQUEST):
                return None
            now = workflow.now()
            if hoop is not None:
                look = await hoop.look(now, view.timeout_at)
                if look is Look.APPROVED:
                    return None
                if look is Look.REJECTED:
                    return RequestStatus.DENIED
                if look is Look.AGAIN:
                    continue
            if now >= view.timeout_at:
                return RequestStatus.TIMED_OUT
            deadline = view.timeout_at
            if reminder_at is not None:
                if now >= reminder_at:
                    reminder_at = None
                    voted = {d.approver.id for d in view.approvals}
                    waiting = [p for p in view.eligible_approvers if p.id not in voted]
                    await self._ledger.notify("reminder", waiting, with_review_link=True)
                    # Reminders reach approvers where they were asked (a new Slack DM, an email).
                    self._presenter.present(remind=waiting)
                    continue
                deadline = reminder_at
            if hoop is not None:
                deadline = hoop.wake_by(deadline)
            await wait_at_most(
                lambda: (
                    bool(view.denials)
                    or self._cancel is not None
                    or self._requester_left is not None
                    or quorum_reached(view, Stage.REQUEST)
                    or (hoop is not None and hoop.watch.changed)
                ),
                deadline - now,
            )

    def _continue_as_new_if_long(self) -> None:
        """An ACTIVE request can live for weeks (a renewal every ``max_grant``, extensions, every change
        presented in every channel): once its history is long, the rest continues in a new run carrying
        the state (``CarriedOver``). Only between steps of ``GrantHolder.hold`` and only when idle: no
        update or signal handler running and no presentation in flight, so nothing is lost or done twice.
        Never waited for: when busy, the active loop is woken once idle (``_idle_for_new_run``) and comes
        back here, so a slow channel never delays an expiry or a renewal."""
        info = workflow.info()
        long = info.get_current_history_length() >= CONTINUE_AS_NEW_AFTER
        if not long and not info.is_continue_as_new_suggested():
            return
        self._new_run_wanted = True
        if not self._idle_for_new_run():
            return
        queue = self._presenter.queue
        workflow.continue_as_new(
            CarriedOver(
                input=self._input,
                view=self._view,
                eligible=sorted(self._approvers.eligible or ()),
                correlation_ids=list(self._grant.correlation_ids),
                step=self._ledger.step,
                channels=self._presenter.channels,
                present_pending=queue.pending,
                present_ask=list(queue.ask),
                present_remind=list(queue.remind),
                present_rounds=queue.rounds,
                hoop_origin=self._hoop is not None,
                hoop_review_granted=self._grant.review_granted,
                answers=dict(list(self._answers.items())[-ANSWERS_CARRIED:]),
            )
        )

    def _idle_for_new_run(self) -> bool:
        return self._new_run_wanted and workflow.all_handlers_finished() and not self._presenter.busy

    async def _close(self, status: RequestStatus) -> RequestView:
        view, hoop = self._view, self._hoop
        mirrored = hoop.mirrored if hoop is not None else None
        view.status = status
        view.ended_at = workflow.now()
        actor: str | Actor = "grantflow"
        channel: str | None = None
        data: dict[str, Any] = {}
        if status is RequestStatus.CANCELLED and self._cancel is not None:
            actor = self._cancel.actor
            data["reason"] = self._cancel.reason
            view.closed_reason = f"cancelled by {self._cancel.actor.describe()}" + (
                f": {self._cancel.reason}" if self._cancel.reason else ""
            )
        elif status is RequestStatus.CANCELLED and self._requester_left is not None:
            actor = "identity sync"
            data = {"reason": f"the requester left ({self._requester_left.reason})", "leaver": True}
            channel = "scim"
            view.closed_reason = data["reason"]
        elif status is RequestStatus.DENIED and view.denials:
            denial = view.denials[0]
            data = {"by": denial.approver.email, "reason": denial.reason}
        elif status is RequestStatus.DENIED and hoop is not None and mirrored is not None:
            actor, channel = "hoop", "hoop"
            data = hoop.denied_data()
        await self._ledger.record(f"request.{status.value.lower()}", actor=actor, channel=channel, data=data)
        if hoop is not None and mirrored is None:
            await hoop.reject(status, self._cancel)
        if mirrored is not None:  # the denials are empty: say where it was decided
            await self._ledger.notify("closed", [view.requester], note=view.outcome_note or "")
            return await self._finish()
        template = "denied" if status is RequestStatus.DENIED else "closed"
        await self._ledger.notify(template, [view.requester])
        return await self._finish()

    async def _finish_failed(self) -> RequestView:
        """A request FAILED before it was decided: its review (if any) is rejected in hoop, saying why."""
        if self._hoop is not None:
            await self._hoop.reject(RequestStatus.FAILED, self._cancel)
        return await self._finish()

    async def _finish(self) -> RequestView:
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._presenter.finish()  # the final state reaches every channel before we end
        return self._view

    # ------------------------------------------------------------------ decisions and actions, queries

    @workflow.query
    def view(self) -> RequestView:
        return self._view

    @workflow.signal
    async def submit(self, command: RequestCommand) -> None:
        """A decision or action from the edge. Carried out or refused, the outcome is kept under the
        command's id for ``answer``; a command delivered twice (the same id) is carried out once."""
        if command.id in self._answers or command.id in self._in_flight:
            return
        self._in_flight.add(command.id)
        async with self._one_at_a_time():
            refusal, until_ended = await self._carry_out(command)
        if until_ended is not None:  # an end waits for the access to end, outside the turn
            await workflow.wait_condition(until_ended)
        self._in_flight.discard(command.id)
        self._answers[command.id] = refusal
        while len(self._answers) > ANSWERS_KEPT:
            del self._answers[next(iter(self._answers))]

    def _one_at_a_time(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Commands and identity changes are carried out one at a time, each to its end, in the order they
        arrived. Run side by side, a command's ledger entries could be split by another's (a refused
        second vote recorded between an extension's approval and the extension), and which went first
        depended on whether a signal reached the workflow before or after an activity result: the
        worker-crash scenario met a request that a rebuilt worker could not replay at such a point
        (a nondeterminism error leaves the request stuck). Histories written before replay as they ran
        (``SERIAL_COMMANDS_PATCH``)."""
        if workflow.patched(SERIAL_COMMANDS_PATCH):
            return self._turn
        return contextlib.nullcontext()

    async def _carry_out(self, command: RequestCommand) -> tuple[str | None, Callable[[], bool] | None]:
        """Carry ``command`` out: its refusal (None when carried out), and for an end, the condition that
        says the access has ended."""
        refusal: str | None = None
        until_ended: Callable[[], bool] | None = None
        try:
            if command.decision is not None and command.action is RequestAction.DECIDE:
                await self._decide(command.decision, command_id=command.id)
            elif command.extension is not None and command.action is RequestAction.EXTEND:
                await self._extend(command.extension, command_id=command.id)
            elif command.end is not None and command.action.value in END_ACTIONS:
                until_ended = self._request_end(command.action.value, command.end)
            else:
                refusal = f"a {command.action.value} command must carry its own input"
        except Refused as refused:
            refusal = refused.message
        if refusal is not None:
            # Refused here, not at the edge (the state moved after the edge asked): record it here.
            await self._ledger.record(
                command.refusal_kind,
                actor=command.actor,
                data=naming_command({**command.refusal_data, "refusal": refusal}, command.id),
            )
        return refusal, until_ended

    @workflow.query
    def answer(self, command_id: str) -> CommandAnswer | None:
        """The outcome of the command with this id, once carried out or refused; None before."""
        if command_id not in self._answers:
            return None
        return CommandAnswer(refusal=self._answers[command_id], view=self._view)

    @workflow.query
    def refusal(self, command: RequestCommand) -> str | None:
        """Why the request would refuse ``command`` now (None: it would be carried out); the edge asks
        before sending it, so refused attempts stay out of the history."""
        return command_refusal(self._view, self._approvers.eligible, command)

    # The Updates below are how decisions arrived before ``submit``; kept so those histories replay.

    @workflow.update
    async def decide(self, inp: DecisionInput) -> RequestView:
        return await self._decide(inp)

    async def _decide(self, inp: DecisionInput, *, command_id: str | None = None) -> RequestView:
        # Histories from before admin votes on behalf needed the policy's consent replay without that rule.
        refusal = decision_refusal(
            self._view,
            self._approvers.eligible,
            inp.actor,
            inp.verdict,
            inp.stage,
            admin_rule=workflow.patched(ADMIN_ON_BEHALF_PATCH),
        )
        if refusal is not None:  # state may have moved between validation and handling
            raise Refused(refusal)
        stage = open_stage(self._view)
        assert stage is not None
        view = self._view
        decision = Decision(
            approver=inp.actor.person,
            verdict=inp.verdict,
            reason=inp.reason,
            channel=inp.actor.channel,
            on_behalf_by=inp.actor.admin,
            at=workflow.now(),
            stage=stage.value,
        )
        kind = "decision.approved" if inp.verdict is Verdict.APPROVE else "decision.denied"
        data: dict[str, Any] = {"stage": stage.value, "reason": inp.reason}
        if stage is Stage.EXTENSION:
            assert view.pending_extension is not None
            extension = view.pending_extension
            if inp.verdict is Verdict.APPROVE:
                extension.approvals.append(decision)
                if quorum_reached(view, Stage.EXTENSION):
                    await self._ledger.record(kind, actor=inp.actor, data=data)
                    await self._apply_extension(extension.by, inp.actor, extension.reason, command_id)
                    return view
            else:
                view.denials.append(decision)
                view.pending_extension = None
                data["extension_denied"] = format_duration(extension.by)
        elif inp.verdict is Verdict.APPROVE:
            view.approvals.append(decision)
            if stage is Stage.RETRO_REVIEW and quorum_reached(view, Stage.RETRO_REVIEW):
                view.retro_review = RetroReview.APPROVED
                data["retro_review"] = "approved"
                self._grant.changed()
        else:
            view.denials.append(decision)
            if stage is Stage.RETRO_REVIEW:
                view.retro_review = RetroReview.DENIED
                self._grant.request_end(EndReason.REVOKED, inp.actor, "break-glass retro-review denied")
        await self._ledger.record(kind, actor=inp.actor, data=naming_command(data, command_id))
        return view

    @decide.validator
    def _validate_decide(self, inp: DecisionInput) -> None:
        refusal = decision_refusal(self._view, self._approvers.eligible, inp.actor, inp.verdict, inp.stage)
        if refusal is not None:
            raise Refused(refusal)

    @workflow.update
    async def extend(self, inp: ExtendInput) -> RequestView:
        return await self._extend(inp)

    async def _extend(self, inp: ExtendInput, *, command_id: str | None = None) -> RequestView:
        refusal = extension_refusal(self._view, inp.actor, inp.by)
        if refusal is not None:
            raise Refused(refusal)
        self._view.extensions_requested += 1  # counted whatever the approvers decide: bounds the history
        if self._input.policy.self_extension:
            await self._apply_extension(inp.by, inp.actor, inp.reason, command_id)
            return self._view
        self._view.pending_extension = PendingExtension(
            by=inp.by, requested_at=workflow.now(), reason=inp.reason
        )
        data = {"by": format_duration(inp.by), "reason": inp.reason}
        await self._ledger.record(
            "extension.requested", actor=inp.actor, data=naming_command(data, command_id)
        )
        await self._ledger.notify("extension_requested", self._view.eligible_approvers, with_review_link=True)
        self._presenter.present(ask=self._view.eligible_approvers)
        return self._view

    @extend.validator
    def _validate_extend(self, inp: ExtendInput) -> None:
        refusal = extension_refusal(self._view, inp.actor, inp.by)
        if refusal is not None:
            raise Refused(refusal)

    async def _apply_extension(
        self, by: timedelta, actor: Actor, reason: str, command_id: str | None = None
    ) -> None:
        view = self._view
        assert view.expires_at is not None
        if view.pending_extension is not None:  # keep who approved the extension visible
            view.approvals.extend(view.pending_extension.approvals)
        view.pending_extension = None
        view.expires_at = view.expires_at + by
        view.granted_total = view.granted_total + by
        self._grant.changed()
        data = {"by": format_duration(by), "expires_at": view.expires_at.isoformat(), "reason": reason}
        await self._ledger.record("extension.applied", actor=actor, data=naming_command(data, command_id))

    @workflow.update
    async def relinquish(self, inp: EndInput) -> RequestView:
        return await self._handle_end("relinquish", inp)

    @relinquish.validator
    def _validate_relinquish(self, inp: EndInput) -> None:
        self._validate_end("relinquish", inp)

    @workflow.update
    async def revoke(self, inp: EndInput) -> RequestView:
        return await self._handle_end("revoke", inp)

    @revoke.validator
    def _validate_revoke(self, inp: EndInput) -> None:
        self._validate_end("revoke", inp)

    @workflow.update
    async def cancel(self, inp: EndInput) -> RequestView:
        return await self._handle_end("cancel", inp)

    @cancel.validator
    def _validate_cancel(self, inp: EndInput) -> None:
        self._validate_end("cancel", inp)

    def _validate_end(self, action: str, inp: EndInput) -> None:
        refusal = end_refusal(self._view, inp.actor, action, self._approvers.eligible)
        if refusal is not None:
            raise Refused(refusal)

    async def _handle_end(self, action: str, inp: EndInput) -> RequestView:
        await workflow.wait_condition(self._request_end(action, inp))
        return self._view

    def _request_end(self, action: str, inp: EndInput) -> Callable[[], bool]:
        """Ask for the end (cancel a PENDING request, or end ACTIVE access); the condition returned says it
        has happened."""
        self._validate_end(action, inp)
        if action == "cancel":
            self._cancel = inp
            return lambda: self._view.status is not RequestStatus.PENDING
        reason = EndReason.RELINQUISHED if action == "relinquish" else EndReason.REVOKED
        self._grant.request_end(reason, inp.actor, inp.reason)
        return lambda: self._view.status is not RequestStatus.ACTIVE

    # ------------------------------------------------------------------ identity sync signals

    @workflow.signal
    async def person_left(self, inp: PersonLeft) -> None:
        """A leaver loses everything now: their access ends, their pending request is cancelled, and
        votes they cast on a stage that has not reached quorum are withdrawn."""
        view = self._view
        if inp.person.id == view.requester.id:
            if self._requester_left is None and not view.status.is_terminal:
                self._requester_left = inp
                if view.status is RequestStatus.ACTIVE:
                    self._grant.end_for_leaver(inp)
            return
        async with self._one_at_a_time():
            await self._approvers.left(inp)

    @workflow.signal
    async def approvers_changed(self, inp: ApproversChanged) -> None:
        """Membership of the approver groups changed: joiners may approve at once, people who moved out
        may not (their votes on an undecided stage are withdrawn)."""
        async with self._one_at_a_time():
            added = await self._approvers.changed(inp)
            view = self._view
            if added and open_stage(view) is not None:
                event = "extension_requested" if view.pending_extension else "request_created"
                await self._ledger.notify(event, added, with_review_link=True)
                self._presenter.present(ask=added)

    @workflow.signal
    def hoop_review_changed(self, inp: HoopReviewChanged) -> None:
        """Discovery saw this request's review leave PENDING in hoop. Read it (in the run loop) to mirror a
        decision taken in hoop's own UI; ignored once grantflow decided the review itself."""
        if self._hoop is not None:
            self._hoop.review_changed(inp)
