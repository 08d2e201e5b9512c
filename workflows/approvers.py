"""Approvers: who may decide one request, kept current with the directory.

The eligible set is resolved once from the policy's approver groups (the requester never counts), then
changed by identity sync: a leaver or a person who moved out of the groups may no longer decide, and
their votes on a stage that has not reached quorum are withdrawn; joiners may decide at once. The set is
held as the workflow's state (validators read it) and survives continue-as-new; each change is recorded.

It never counts a quorum, validates a vote or asks anyone to decide: ``domain.approval`` says what the
votes mean, and the request asks the people it is told joined.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.directory import ApproverResolution, DirectoryActivities, ResolveApproversInput
    from domain.approval import Stage, open_stage, quorum_reached
    from domain.identity import PersonRef
    from domain.requests import AccessRequestInput, ApproversChanged, PersonLeft, RequestView
    from workflows.request_ledger import RequestLedger
    from workflows.request_policies import CRITICAL_RETRY, cause_message


class Approvers:
    """The eligible set of one request (``eligible``: None until resolved) and its changes."""

    def __init__(
        self, inp: AccessRequestInput, view: RequestView, ledger: RequestLedger, eligible: set[str] | None
    ) -> None:
        self._input = inp
        self._view = view  # the request's one view object, changed in place by the workflow
        self._ledger = ledger
        self.eligible = eligible

    async def resolve(self) -> ApproverResolution | None:
        """Read the approver groups; None when they cannot be read (the request is then FAILED)."""
        inp, view = self._input, self._view
        try:
            resolution = await workflow.execute_activity_method(
                DirectoryActivities.resolve_approvers,
                ResolveApproversInput(
                    request_id=view.id,
                    requester=view.requester,
                    approver_groups=list(inp.policy.approver_groups),
                    auto_approve_groups=list(inp.policy.auto_approve_groups),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=CRITICAL_RETRY,
            )
        except ActivityError as err:
            await self._ledger.fail(cause_message(err), notify=False)
            return None
        self.eligible = {p.id for p in resolution.eligible}
        view.eligible_approvers = list(resolution.eligible)
        if resolution.auto_approve_group is not None and not inp.break_glass:
            # Said together with the approvers, so that nobody reading the view in between (the edge
            # answering the requester) is told the request waits for an approval it will never need.
            view.auto_approved = True
        view.approvers_resolved = True
        await self._ledger.record(
            "approvers.resolved",
            data={"eligible": [p.email for p in resolution.eligible], "required": view.required_approvals},
        )
        return resolution

    async def left(self, inp: PersonLeft) -> None:
        """An approver left the organisation: they may no longer decide; their open votes are withdrawn."""
        view = self._view
        if self.eligible is None or inp.person.id not in self.eligible:
            return
        self.eligible = self.eligible - {inp.person.id}
        view.eligible_approvers = [p for p in view.eligible_approvers if p.id != inp.person.id]
        withdrawn = self._withdraw_votes(inp.person.id)
        await self._ledger.record(
            "approver.left",
            actor="identity sync",
            channel="scim",
            data={"approver": inp.person.email, "reason": inp.reason, "withdrawn_votes": withdrawn},
        )

    async def changed(self, inp: ApproversChanged) -> list[PersonRef]:
        """Membership of the approver groups changed: the joiners (returned, for the request to ask while a
        stage is open) may decide at once, people who moved out may not."""
        view = self._view
        if self.eligible is None or view.status.is_terminal:
            return []
        new = {p.id: p for p in inp.eligible if p.id != view.requester.id}
        added = [p for pid, p in new.items() if pid not in self.eligible]
        removed = [p for p in view.eligible_approvers if p.id not in new]
        if not added and not removed:
            return []
        self.eligible = set(new)
        view.eligible_approvers = sorted(new.values(), key=lambda p: p.email)
        withdrawn = sum(self._withdraw_votes(p.id) for p in removed)
        await self._ledger.record(
            "approvers.updated",
            actor="identity sync",
            channel="scim",
            data={
                "added": [p.email for p in added],
                "removed": [p.email for p in removed],
                "withdrawn_votes": withdrawn,
            },
        )
        return added

    def _withdraw_votes(self, person_id: str) -> int:
        """Remove a person's approvals from the open stage unless it already reached quorum."""
        view = self._view
        stage = open_stage(view)
        if stage is None or quorum_reached(view, stage):
            return 0
        if stage is Stage.EXTENSION:
            assert view.pending_extension is not None
            before = len(view.pending_extension.approvals)
            view.pending_extension.approvals = [
                d for d in view.pending_extension.approvals if d.approver.id != person_id
            ]
            return before - len(view.pending_extension.approvals)
        before = len(view.approvals)
        view.approvals = [
            d for d in view.approvals if not (d.approver.id == person_id and d.stage == stage.value)
        ]
        return before - len(view.approvals)
