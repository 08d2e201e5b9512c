"""RequestService: the one place every edge (REST API, review page, CLI through the API, later Slack and
Jira) goes through to create, decide and act on access requests.

Invariants:

- ``create`` validates everything before a workflow starts: a workflow must never receive input it
  cannot decode (it would sit RUNNING forever). Then the (requester, connection) slot is reserved in the
  store, and only then is the workflow started; if starting fails the row is saved as ``FAILED`` so the
  slot is free again — but only once Temporal says no such workflow exists: a start that failed
  ambiguously (timeout, dropped connection) may have started it, and a row is never terminal while its
  workflow runs.
- Decisions and actions are Temporal Updates whose validators decide. A refusal — from the validator, or
  because the workflow has already completed — is written to the evidence ledger as a refused attempt
  (``decision.refused``, ``extend.refused``, ``relinquish.refused``, ``cancel.refused``,
  ``revoke.refused``) and raised as :class:`Refused` carrying the sentence a person reads.
- A vote that decides the request (quorum or deny), like ``create``, answers once the workflow has moved
  on (at most ``setup_wait`` seconds), so the caller sees ACTIVE / DENIED rather than a stale PENDING.
- The store holds every request (it is reserved before the workflow starts), so an id the store does not
  know is :class:`NotFound` without asking Temporal.

Errors, as a tree (each maps to one HTTP status at the REST edge and one CLI exit code)::

    ServiceError            500  something unexpected; the detail says what
    ├── BadInput            422  the input cannot be used (unparseable duration, unknown resource, ...)
    ├── NotFound            404  no such request
    ├── Forbidden           403  the caller may not do this at all (e.g. acting for someone else)
    ├── Conflict            409  the requester already holds an open request for the same connection
    ├── Refused             409  the workflow (or the policy) refused; recorded in the ledger
    └── Unavailable         503  Temporal or the store cannot be reached; try again
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.approval import (
    Stage,
    decision_refusal,
    end_refusal,
    extension_refusal,
    open_stage,
    quorum_reached,
)
from domain.durations import DurationError, format_duration, parse_duration
from domain.identity import Actor, Person, PersonRef
from domain.policy import PolicySet
from domain.requests import (
    AccessRequestInput,
    DecisionInput,
    EndInput,
    ExtendInput,
    GatewayTimings,
    RequestStatus,
    RequestView,
    Verdict,
    initial_view,
    request_workflow_id,
)
from store import SlotTaken, Store, StoreError
from workflows.access_request import AccessRequestWorkflow

log = logging.getLogger("grantflow.web.service")

SETUP_WAIT = 5.0
"""How long ``create`` waits (seconds) for the workflow to resolve its approvers before answering."""

MAX_REASON = 2000
"""Reasons travel through workflow history and the ledger: keep them to a paragraph."""

_POLL_INTERVAL = 0.05
END_ACTIONS = ("relinquish", "cancel", "revoke")

T = TypeVar("T")


# --- errors ----------------------------------------------------------------------------------------


class ServiceError(Exception):
    """Base of the service's errors. ``code`` is a stable machine-readable name, ``status`` the HTTP
    status the REST edge answers with, ``str(err)`` the sentence for a person."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadInput(ServiceError):
    """Input that cannot be used: unparseable, zero, negative or over-long duration; unknown resource or
    role; empty reason; a requester who is not an active person in the directory."""

    code = "bad_input"
    status = 422


class NotFound(ServiceError):
    """No request with that id."""

    code = "not_found"
    status = 404


class Forbidden(ServiceError):
    """The caller may not do this at all, whatever the request's state (e.g. acting for someone else
    without being an administrator)."""

    code = "forbidden"
    status = 403


class Conflict(ServiceError):
    """The requester already has an open request for the connection; ``existing_request_id`` names it."""

    code = "conflict"
    status = 409

    def __init__(
        self, detail: str, *, existing_request_id: str | None = None, existing_status: str = ""
    ) -> None:
        super().__init__(detail)
        self.existing_request_id = existing_request_id
        self.existing_status = existing_status


class Refused(ServiceError):
    """The workflow's validator (or the policy, before a workflow starts) refused; the sentence says why.
    Refusals of decisions and actions on existing requests are recorded in the ledger."""

    code = "refused"
    status = 409


class Unavailable(ServiceError):
    """Temporal or the store could not be reached or did not answer; nothing was changed, or the change
    could not be confirmed. Try again."""

    code = "unavailable"
    status = 503


# --- the service -----------------------------------------------------------------------------------


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:12]}"


class RequestService:
    """Create, decide and act on access requests on behalf of an already authenticated :class:`Actor`.

    The edges establish who is acting (bearer token, signed review link, Slack signature); this class
    checks what the input means, and the workflow decides what the actor may do."""

    def __init__(
        self,
        client: Client,
        store: Store,
        policies: PolicySet,
        task_queue: str,
        timings: GatewayTimings | None = None,
        *,
        setup_wait: float = SETUP_WAIT,
        channels: list[str] | None = None,
    ) -> None:
        self._channels = list(channels or [])
        self._client = client
        self._store = store
        self._policies = policies
        self._task_queue = task_queue
        self._timings = timings or GatewayTimings()
        self._setup_wait = setup_wait

    @property
    def policies(self) -> PolicySet:
        return self._policies

    # --- people ------------------------------------------------------------------------------------

    async def person(self, email: str, *, what: str = "person") -> PersonRef:
        """The active directory person with this email; :class:`BadInput` otherwise."""
        email = storable(email, what).strip()
        if not email:
            raise BadInput(f"the {what} is empty; give an email address")
        found = await self._store_call(self._store.find_person_by_email, email)
        return _active_ref(found, email, what)

    async def person_by_id(self, person_id: str) -> Person | None:
        return await self._store_call(self._store.get_person, person_id)

    # --- create ------------------------------------------------------------------------------------

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
        reason = _reason(reason)
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
            requester = _active_ref(found, actor.person.email, "requester")
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
                    f"request {request_id} could not be started ({_short(exc)}); nothing was granted, "
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

    async def _settle(
        self, handle: WorkflowHandle[Any, Any], fallback: RequestView, done: Callable[[RequestView], bool]
    ) -> RequestView:
        """Query until ``done`` holds or ``setup_wait`` passes; the latest view either way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._setup_wait
        latest = fallback
        while True:
            try:
                latest = await handle.query(AccessRequestWorkflow.view)
            except Exception as exc:  # e.g. the first workflow task has not run yet
                log.debug("query of %s failed while settling: %s", handle.id, exc)
            else:
                if done(latest):
                    return latest
            if loop.time() >= deadline:
                return latest
            await asyncio.sleep(_POLL_INTERVAL)

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
            f"request {request_id} may or may not have started ({_short(exc)}); it stays open until "
            f"Temporal can tell: see `grantflow request show {request_id}` before asking again"
        ) from exc

    async def _mark_not_started(self, view: RequestView, submitter: Actor, exc: BaseException) -> None:
        now = datetime.now(UTC)
        failed = view.model_copy(
            update={
                "status": RequestStatus.FAILED,
                "failure_reason": f"the workflow could not be started: {_short(exc)}",
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

    # --- decisions and actions ---------------------------------------------------------------------

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
        inp = DecisionInput(actor=actor, verdict=verdict, reason=_reason(reason), stage=stage)

        def closed(view: RequestView) -> str:
            return decision_refusal(view, None, actor, verdict) or _closed_sentence(view)

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
        inp = ExtendInput(actor=actor, by=delta, reason=_reason(reason))

        def closed(view: RequestView) -> str:
            return extension_refusal(view, actor, delta) or _closed_sentence(view)

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
        inp = EndInput(actor=actor, reason=_reason(reason))
        update = {
            "relinquish": AccessRequestWorkflow.relinquish,
            "cancel": AccessRequestWorkflow.cancel,
            "revoke": AccessRequestWorkflow.revoke,
        }[action]

        def closed(view: RequestView) -> str:
            return end_refusal(view, actor, action, None) or _closed_sentence(view)

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
                raise ServiceError(
                    f"request {request_id}: the update failed: {_short(cause or err)}"
                ) from err
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            raise Unavailable(
                f"request {request_id}: Temporal did not confirm the change in time; check with show"
            ) from err
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise Unavailable(f"Temporal could not be reached: {_short(err)}") from err
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
                f"{_short(exc)}"
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
                f"the attempt was refused ({refusal}), but the refusal could not be recorded: {_short(exc)}"
            ) from exc

    # --- reading -----------------------------------------------------------------------------------

    async def show(self, request_id: str) -> RequestView:
        """The live view from the workflow, or the stored one when the workflow cannot answer."""
        stored = await self._stored(request_id)
        return await self._latest(self._handle(request_id), stored)

    async def list(
        self,
        *,
        requester_email: str | None = None,
        statuses: list[str] | None = None,
        limit: int = 50,
    ) -> list[RequestView]:
        """Stored requests, newest first, optionally of one requester and in some statuses."""
        if not 1 <= limit <= 500:
            raise BadInput(f"limit {limit} is out of range; give 1 to 500")
        parsed: list[RequestStatus] | None = None
        if statuses:
            parsed = []
            for raw in statuses:
                for part in raw.split(","):
                    if not part.strip():
                        continue
                    try:
                        parsed.append(RequestStatus(part.strip().upper()))
                    except ValueError:
                        known = ", ".join(s.value for s in RequestStatus)
                        raise BadInput(
                            f"status {part.strip()!r} is not known; statuses are: {known}"
                        ) from None
        requester_id: str | None = None
        if requester_email:
            person = await self._store_call(self._store.find_person_by_email, requester_email)
            if person is None:
                return []
            requester_id = person.id
        return await self._store_call(
            self._store.list_requests, requester_id=requester_id, statuses=parsed, limit=limit
        )

    # --- helpers -----------------------------------------------------------------------------------

    def _handle(self, request_id: str) -> WorkflowHandle[Any, Any]:
        return self._client.get_workflow_handle_for(
            AccessRequestWorkflow.run, request_workflow_id(request_id)
        )

    async def _stored(self, request_id: str) -> RequestView:
        view = await self._store_call(self._store.get_request, request_id)
        if view is None:
            raise NotFound(f"there is no request {request_id}")
        return view

    async def _latest(self, handle: WorkflowHandle[Any, Any], stored: RequestView) -> RequestView:
        try:
            return await handle.query(AccessRequestWorkflow.view)
        except Exception as exc:
            log.debug("query of %s failed (%s); answering from the store", handle.id, exc)
            fresher = await self._store_call(self._store.get_request, stored.id)
            return fresher or stored

    async def _store_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (SlotTaken, ServiceError):
            raise
        except StoreError as exc:
            raise Conflict(str(exc)) from exc
        except Exception as exc:
            log.exception("store call %s failed", getattr(fn, "__name__", fn))
            raise Unavailable(f"the store could not be used: {_short(exc)}") from exc


def _reason(text: str | None) -> str:
    reason = storable(text or "", "reason").strip()
    if len(reason) > MAX_REASON:
        raise BadInput(f"reason is too long ({len(reason)} characters); keep it under {MAX_REASON}")
    return reason


def storable(text: str, what: str) -> str:
    """``text`` if every store and channel can keep it: UTF-8 encodable (no lone surrogates, which JSON
    can carry) and without NUL characters (PostgreSQL refuses them in text). Otherwise :class:`BadInput`
    here at the edge, rather than a store error after a workflow has started."""
    if "\x00" in text:
        raise BadInput(f"{what} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} is not valid text (it contains an unpaired surrogate)") from None
    return text


def _active_ref(person: Person | None, email: str, what: str) -> PersonRef:
    if person is None:
        raise BadInput(f"{what} {email} is not a person in the directory")
    if not person.active:
        raise BadInput(f"{what} {email} is not an active person in the directory")
    return person.ref


def _slot_taken_sentence(email: str, connection: str, taken: SlotTaken) -> str:
    rid, status = taken.existing_request_id, taken.existing_status
    head = f"{email} already has request {rid} ({status}) for {connection}"
    if status == RequestStatus.ACTIVE.value:
        return f"{head}; extend it with `grantflow request extend {rid} --by 1h`"
    if status == RequestStatus.PENDING.value:
        return f"{head}; wait for its decision, or cancel it with `grantflow request cancel {rid}`"
    return f"{head}; its access is ending, try again in a moment"


def _closed_sentence(view: RequestView) -> str:
    return f"request {view.id} is already {view.status.value}; nothing can change it now"


def _short(exc: BaseException | None) -> str:
    """What a caller is told about an internal failure: its kind and an id to find it in the logs.

    The full text (SQL, host names, Temporal internals) goes to the log only: error bodies reach anyone
    holding a token, and must not leak the deployment's internals."""
    error_id = secrets.token_hex(4)
    log.error("error %s: %r", error_id, exc)
    return f"{type(exc).__name__ if exc is not None else 'error'}, error id {error_id}"
