"""Creating access requests: validate, reserve the (requester, connection) slot, start the workflow.

``create`` validates everything before a workflow starts: a workflow must never receive input it cannot
decode (it would sit RUNNING forever). Then the slot is reserved in the store, and only then is the
workflow started; if starting fails the row is saved as ``FAILED`` so the slot is free again — but only
once Temporal says no such workflow exists: a start that failed ambiguously (timeout, dropped connection)
may have started it, and a row is never terminal while its workflow runs. Whether the request is then
approved is the workflow's to decide, never this module's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.approval import Stage, open_stage
from domain.durations import DurationError, format_duration, parse_duration
from domain.identity import Actor
from domain.requests import AccessRequestInput, RequestStatus, RequestView, initial_view, request_workflow_id
from store import SlotTaken
from web.service.core import ServiceCore, active_ref, clean_reason, storable
from web.service.errors import BadInput, Conflict, Forbidden, Refused, Unavailable, short
from workflows.access_request import AccessRequestWorkflow

log = logging.getLogger("grantflow.web.service")


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:12]}"


class RequestCreation(ServiceCore):
    """``create`` and what it needs to start a workflow safely."""

    async def create(
        self,
        actor: Actor,
        *,
        resource: str,
        role: str | None,
        duration: str,
        reason: str,
        requester_email: str | None = None,
        break_glass: bool = False,
        jira_key: str | None = None,
    ) -> RequestView:
        """Validate, reserve the slot, start the workflow and return its view once approvers are known.

        ``actor`` is who submits. ``requester_email``, when it names someone else, needs an administrator
        (``actor.admin``); the request is then the requester's, submitted by "admin X on behalf of Y".
        ``jira_key`` is the Jira issue the request was made in, which becomes its ticket."""
        for value, what in ((resource, "resource"), (role or "", "role"), (duration, "duration")):
            storable(value, what)
        storable(requester_email or "", "requester")
        reason = clean_reason(reason)
        if not reason:
            raise BadInput("reason is empty; say why the access is needed (a ticket or incident id)")
        try:
            wanted = parse_duration(duration)
        except DurationError as exc:
            raise BadInput(str(exc)) from None
        try:
            role_name, policy = self._policies.role(resource, role or None)
        except LookupError as exc:
            raise BadInput(str(exc.args[0]) if exc.args else str(exc)) from None
        if wanted > policy.max_duration:
            raise BadInput(
                f"duration {format_duration(wanted)} is too long: {format_duration(policy.max_duration)} is "
                f"the most {resource} {role_name} allows"
            )
        if break_glass and not policy.break_glass.allowed:
            raise Refused(f"the policy for {resource} {role_name} does not allow break-glass access")

        if requester_email and requester_email.strip().lower() != actor.person.email.lower():
            if not actor.is_admin:
                raise Forbidden(
                    f"{actor.person.email} may only request access for themselves; requesting for "
                    f"{requester_email.strip()} needs an admin token"
                )
            requester = await self.person(requester_email, what="requester")
            submitter = Actor(person=requester, admin=actor.admin, channel=actor.channel)
        else:
            found = await self._store_call(self._store.get_person, actor.person.id)
            requester = active_ref(found, actor.person.email, "requester")
            submitter = Actor(
                person=requester,
                admin=actor.admin,
                channel=actor.channel,
                channel_user_id=actor.channel_user_id,
            )

        request_id = new_request_id()
        now = datetime.now(UTC)
        inp = AccessRequestInput(
            request_id=request_id,
            requester=requester,
            submitted_by=submitter,
            resource=resource,
            role=role_name,
            policy=policy,
            duration=wanted,
            reason=reason,
            break_glass=break_glass,
            created_at=now,
            timings=self._timings,
            channels=self._channels,
            jira_key=jira_key,
        )
        view = initial_view(inp)
        try:
            await self._store_call(self._store.reserve_request, view)
        except SlotTaken as taken:
            if await self._release_if_abandoned(taken):
                return await self.create(
                    actor,
                    resource=resource,
                    role=role,
                    duration=duration,
                    reason=reason,
                    requester_email=requester_email,
                    break_glass=break_glass,
                    jira_key=jira_key,
                )
            raise Conflict(
                _slot_taken_sentence(requester.email, view.connection, taken),
                existing_request_id=taken.existing_request_id,
                existing_status=taken.existing_status,
            ) from None

        try:
            handle = await self._client.start_workflow(
                AccessRequestWorkflow.run,
                inp,
                id=request_workflow_id(request_id),
                task_queue=self._task_queue,
            )
        except Exception as exc:
            # A start can fail after Temporal started the workflow (a timeout, a dropped connection): the
            # row must not turn FAILED under a running workflow (a leaver's end would skip a terminal row
            # while the grant lives on). Temporal says which; only a workflow it does not know frees the slot.
            log.error("could not start the workflow for %s: %s", request_id, exc)
            started = await self._started_despite(request_id, exc)
            if started is None:
                await self._mark_not_started(view, submitter, exc)
                raise Unavailable(
                    f"request {request_id} could not be started ({short(exc)}); nothing was granted, "
                    "try again"
                ) from exc
            log.warning("request %s: the start answered %r but its workflow runs", request_id, exc)
            handle = started
        settled = await self._wait_for_setup(handle, view)
        check = settled.access_check
        if (
            settled.status is RequestStatus.FAILED
            and check is not None
            and (not check.eligible or not check.needs_review)
        ):
            # hoop's rules refuse it (or make it pointless): the workflow recorded why and asked nobody.
            raise Refused(f"request {request_id} was refused: {settled.failure_reason}")
        return settled

    async def _release_if_abandoned(self, taken: SlotTaken) -> bool:
        """Free a slot whose request's workflow is no longer running (terminated by an operator, reset, or
        failed) although the store still shows it open: otherwise the person could never ask again."""
        try:
            description = await self._handle(taken.existing_request_id).describe()
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                return False
            status_name = "NOT_FOUND"
        else:
            if description.status is None or description.status is WorkflowExecutionStatus.RUNNING:
                return False
            status_name = description.status.name
        stored = await self._store_call(self._store.get_request, taken.existing_request_id)
        if stored is None or stored.status.is_terminal:
            return False
        if open_stage(stored) is not Stage.REQUEST or stored.status is not RequestStatus.PENDING:
            # A grant may exist in the gateway (approved, ACTIVE or REVOKING): freeing the slot would
            # hide it. The request stays open and the refusal says so; an administrator must look.
            log.error("request %s is %s but its workflow is %s", stored.id, stored.status.value, status_name)
            return False
        note = f"its workflow is {status_name} without having finished the request"
        closed = stored.model_copy(
            update={
                "status": RequestStatus.FAILED,
                "failure_reason": note,
                "updated_at": datetime.now(UTC),
            }
        )
        await self._store_call(self._store.save_request, closed)
        await self._store_call(
            self._store.append_ledger,
            kind="request.abandoned",
            subject=stored.id,
            actor="grantflow",
            channel="system",
            data={"previous_status": stored.status.value, "workflow_status": status_name},
            idempotency_key=f"{stored.id}:abandoned",
        )
        log.warning("request %s: %s; its slot is freed", stored.id, note)
        return True

    async def _wait_for_setup(self, handle: WorkflowHandle[Any, Any], fallback: RequestView) -> RequestView:
        """The view once the request waits for approvers, or has moved on (an auto-approved one: once
        granted, so the requester is told "active until", not "pending")."""
        return await self._settle(
            handle,
            fallback,
            lambda v: (v.approvers_resolved and not v.auto_approved) or v.status is not RequestStatus.PENDING,
        )

    async def _started_despite(self, request_id: str, exc: BaseException) -> WorkflowHandle[Any, Any] | None:
        """The handle of the request's workflow if the failed start did start it; None when Temporal does
        not know the workflow. When Temporal cannot tell either, the request stays as reserved (PENDING,
        not terminal) and :class:`Unavailable` says so: a later request for the same slot frees it once
        Temporal answers that no workflow exists (``_release_if_abandoned``)."""
        handle = self._handle(request_id)
        if isinstance(exc, WorkflowAlreadyStartedError):  # the client's own retry met the first start
            return handle
        try:
            await handle.describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            unknown: BaseException = err
        except Exception as err:
            unknown = err
        else:
            return handle
        log.error("request %s: cannot tell whether its workflow started: %r", request_id, unknown)
        raise Unavailable(
            f"request {request_id} may or may not have started ({short(exc)}); it stays open until "
            f"Temporal can tell: see `grantflow request show {request_id}` before asking again"
        ) from exc

    async def _mark_not_started(self, view: RequestView, submitter: Actor, exc: BaseException) -> None:
        now = datetime.now(UTC)
        failed = view.model_copy(
            update={
                "status": RequestStatus.FAILED,
                "failure_reason": f"the workflow could not be started: {short(exc)}",
                "ended_at": now,
                "updated_at": now,
            }
        )
        try:
            await asyncio.to_thread(self._store.save_request, failed)
            await asyncio.to_thread(
                self._store.append_ledger,
                kind="request.failed",
                subject=view.id,
                actor=submitter.describe(),
                channel=submitter.channel,
                data={"status": "FAILED", "failure_reason": failed.failure_reason},
                idempotency_key=f"{view.id}:not-started",
            )
        except Exception:
            log.exception("request %s: could not record that it was not started", view.id)


def _slot_taken_sentence(email: str, connection: str, taken: SlotTaken) -> str:
    rid, status = taken.existing_request_id, taken.existing_status
    head = f"{email} already has request {rid} ({status}) for {connection}"
    if status == RequestStatus.ACTIVE.value:
        return f"{head}; extend it with `grantflow request extend {rid} --by 1h`"
    if status == RequestStatus.PENDING.value:
        return f"{head}; wait for its decision, or cancel it with `grantflow request cancel {rid}`"
    return f"{head}; its access is ending, try again in a moment"
