"""The access request: its input, its statuses, the decisions on it and the view every edge shows.

``RequestView`` is the single shape returned by the workflow query, stored in the SQL store after every
transition, served by the REST API and printed by ``grantflow request show --json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.access import AccessVerdict
from domain.durations import Elapsed, PositiveDuration
from domain.identity import Actor, PersonRef
from domain.policy import RolePolicy


class RequestStatus(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    REVOKING = "REVOKING"
    ENDED = "ENDED"
    DENIED = "DENIED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    APPROVED = "APPROVED"  # a one-time command approval (hoop `onetime` review): no grant, no timer

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        RequestStatus.ENDED,
        RequestStatus.DENIED,
        RequestStatus.TIMED_OUT,
        RequestStatus.CANCELLED,
        RequestStatus.FAILED,
        RequestStatus.APPROVED,
    }
)


class EndReason(StrEnum):
    EXPIRED = "expired"
    RELINQUISHED = "relinquished"
    REVOKED = "revoked"
    LEAVER = "leaver"


class RetroReview(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class HoopReviewType(StrEnum):
    """The two kinds of review a person can leave pending in hoop."""

    JIT = "jit"
    """Time-bound access to a connection: approved, it lets sessions open until hoop's ``revoke_at``."""
    ONETIME = "onetime"
    """One command (``command``) awaiting approval, e.g. a schema change: approved, it may run once."""


class HoopReviewOrigin(BaseModel):
    """The review in hoop a request was opened for (the person asked with ``hoop connect``/``exec``).

    Such a request is decided in hoop (``PUT /reviews/{id}``) instead of provisioning a grant: grantflow's
    quorum approves the review, a deny, timeout or cancel rejects it, and a decision taken in hoop's own
    UI is mirrored."""

    model_config = ConfigDict(frozen=True)

    review_id: str
    review_type: HoopReviewType
    session_id: str
    command: str | None = None
    """For ``onetime``: the command the person wants to run, shown to approvers as is."""


class HoopReviewChanged(BaseModel):
    """Discovery saw the review leave PENDING in hoop: the request reads it and mirrors a decision taken
    in hoop's own UI (or ignores it when grantflow decided it)."""

    review_id: str


class GatewayTimings(BaseModel):
    """Operator settings the workflow needs, copied in at creation (they are not secrets)."""

    model_config = ConfigDict(frozen=True)

    max_grant: PositiveDuration = timedelta(hours=48)
    """The gateway refuses longer grants; longer access is a chain of grants renewed before each lapses."""
    renewal_lead: PositiveDuration = timedelta(minutes=30)
    revoke_escalate_after: PositiveDuration = timedelta(minutes=10)


class AccessRequestInput(BaseModel):
    """Everything the workflow needs, validated at the edge. Holds no secrets.

    The policy is copied in at creation so the request is decided under the policy it was made under,
    and the ledger can say which one that was."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    requester: PersonRef
    submitted_by: Actor
    resource: str
    role: str
    policy: RolePolicy
    duration: PositiveDuration
    reason: str = Field(min_length=1)
    break_glass: bool = False
    created_at: AwareDatetime
    timings: GatewayTimings = GatewayTimings()
    channels: list[str] = Field(default_factory=list)
    """Channels configured when the request was made (slack, jira, email): where it is presented."""
    origin: HoopReviewOrigin | None = None
    """Set when the request was opened for a review pending in hoop (see ``HoopReviewOrigin``)."""
    jira_key: str | None = None
    """The Jira issue the request was made in (an intake issue): it is the request's ticket, so the
    people who follow it there see the decisions and the outcome, and no second ticket is opened."""


class DecisionInput(BaseModel):
    """An approve or deny from an edge that has already authenticated ``actor``."""

    actor: Actor
    verdict: Verdict
    reason: str = ""
    stage: str | None = None
    """The stage the person decided on (request, extension, retro_review), when the edge knows it."""


class ExtendInput(BaseModel):
    actor: Actor
    by: PositiveDuration
    reason: str = ""


class EndInput(BaseModel):
    """Relinquish, cancel or revoke, with who asked and why."""

    actor: Actor
    reason: str = ""


class RequestAction(StrEnum):
    DECIDE = "decide"
    EXTEND = "extend"
    RELINQUISH = "relinquish"
    CANCEL = "cancel"
    REVOKE = "revoke"


COMMAND_ID = "command_id"
"""The ledger data key under which a request records the id of the ``RequestCommand`` an entry carries out
(a decision, an extension) or refuses: the edge reads a command's outcome from the store by it, without
asking the workflow, and an auditor can tie the entry to the call that caused it."""
COMMANDS_RECORDED = frozenset({RequestAction.DECIDE, RequestAction.EXTEND})
"""The actions whose outcome is recorded under ``COMMAND_ID``. Ends are carried out by the request's grant
(a revocation, a cancellation recorded by the run loop) and answered by the workflow's ``answer`` query."""


def naming_command(data: Mapping[str, object], command_id: str | None) -> dict[str, object]:
    """``data`` for a ledger entry, naming the command it carries out or refuses (when there is one: the
    Update handlers kept for old histories have none)."""
    return dict(data) if command_id is None else {**data, COMMAND_ID: command_id}


class RequestCommand(BaseModel):
    """A decision or action the edge sends to a request as a signal (``AccessRequestWorkflow.submit``).

    A signal is written to the history when the server receives it, whether or not a worker runs, and is
    replayed in the order it was written; the request answers under ``id`` (``CommandAnswer``). Exactly one
    of ``decision``, ``extension`` and ``end`` is set, matching ``action``. A refusal the request itself
    makes is recorded in the ledger under ``refusal_kind`` with ``refusal_data``, the same entry the edge
    writes when it refuses first."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    action: RequestAction
    decision: DecisionInput | None = None
    extension: ExtendInput | None = None
    end: EndInput | None = None
    refusal_kind: str
    refusal_data: dict[str, str] = Field(default_factory=dict)

    @property
    def actor(self) -> Actor:
        carried = self.decision or self.extension or self.end
        assert carried is not None, f"command {self.id} carries nothing to {self.action.value}"
        return carried.actor


class PersonLeft(BaseModel):
    """Identity sync saw this person leave (deactivated or deleted at the identity provider)."""

    person: PersonRef
    reason: str
    sync_id: str


class ApproversChanged(BaseModel):
    """Identity sync changed the membership of this request's approver groups: the new eligible set."""

    eligible: list[PersonRef]
    sync_id: str


class Decision(BaseModel):
    approver: PersonRef
    verdict: Verdict
    reason: str = ""
    channel: str
    on_behalf_by: PersonRef | None = None
    at: AwareDatetime
    stage: str = Field(default="request", description="request, extension or retro_review")


class GrantSegment(BaseModel):
    """One grant written to the gateway. Grants over the gateway's cap are a chain of segments."""

    session_id: str
    review_id: str
    correlation_id: str
    revoke_at: AwareDatetime


class PendingExtension(BaseModel):
    by: PositiveDuration
    requested_at: AwareDatetime
    reason: str = ""
    approvals: list[Decision] = Field(default_factory=list)


class RequestView(BaseModel):
    """What a person (or an auditor) sees of a request at one moment."""

    id: str
    status: RequestStatus
    end_reason: EndReason | None = None
    failure_reason: str | None = None
    requester: PersonRef
    submitted_by: str
    resource: str
    role: str
    connection: str
    reason: str
    requested_duration: PositiveDuration
    granted_total: Elapsed = timedelta(0)
    break_glass: bool = False
    retro_review: RetroReview | None = None
    required_approvals: int
    eligible_approvers: list[PersonRef] = Field(default_factory=list)
    approvers_resolved: bool = False
    approvals: list[Decision] = Field(default_factory=list)
    denials: list[Decision] = Field(default_factory=list)
    auto_approved: bool = False
    pending_extension: PendingExtension | None = None
    extensions_requested: int = 0
    """Extensions asked for so far (approved, denied or self-applied): the policy's max_extensions caps it."""
    created_at: datetime
    decided_at: datetime | None = None
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    timeout_at: datetime | None = None
    grants: list[GrantSegment] = Field(default_factory=list)
    revocation_attempts: int = 0
    revocation_escalated: bool = False
    sessions_used: list[str] = Field(default_factory=list)
    """The person's gateway sessions the grant enabled, as found when it was taken away (oldest first)."""
    sessions_killed: list[str] = Field(default_factory=list)
    """Those of ``sessions_used`` that were open and were killed."""
    sessions_left_open: list[str] = Field(default_factory=list)
    """Those still open after every kill (the gateway said it killed them, they live on): escalated."""
    policy: RolePolicy
    updated_at: datetime
    origin: HoopReviewOrigin | None = None
    """The hoop review this request decides, when it started in hoop."""
    closed_reason: str | None = None
    """Why a request ended without access, in words (who cancelled it and why, or that the requester left)."""
    access_check: AccessVerdict | None = None
    """hoop's two gates for the requester as last computed (eligible, review needed, through which groups)."""
    outcome_note: str | None = None
    """How the request was decided when approvals and denials do not show it (e.g. "approved in hoop's
    own UI")."""

    @property
    def command(self) -> str | None:
        """The command a ``onetime`` hoop review asks to run (what approvers decide on), if any."""
        return self.origin.command if self.origin is not None else None


def initial_view(inp: AccessRequestInput) -> RequestView:
    """The view a request has before anything happened: what the workflow starts from and the store
    reserves."""
    return RequestView(
        id=inp.request_id,
        status=RequestStatus.PENDING,
        requester=inp.requester,
        submitted_by=inp.submitted_by.describe(),
        resource=inp.resource,
        role=inp.role,
        connection=inp.policy.connection,
        reason=inp.reason,
        requested_duration=inp.duration,
        break_glass=inp.break_glass,
        required_approvals=inp.policy.min_approvals,
        policy=inp.policy,
        created_at=inp.created_at,
        timeout_at=inp.created_at + inp.policy.request_timeout,
        updated_at=inp.created_at,
        origin=inp.origin,
    )


def request_workflow_id(request_id: str) -> str:
    """Workflow ids are the request ids: one workflow per request, found without a lookup."""
    return request_id


def hoop_request_id(review_id: str) -> str:
    """The request (and workflow) id of the request opened for a hoop review: one per review, ever."""
    return f"hoop-{review_id}"


class CommandAnswer(BaseModel):
    """What a request made of a ``RequestCommand``: ``refusal`` is the sentence a person reads, or None
    when it was carried out; ``view`` is the request after it."""

    refusal: str | None
    view: RequestView
