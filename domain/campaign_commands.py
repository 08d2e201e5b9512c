"""A campaign owner's commands — cancel, extend, end the open stage, apply — and the rules that refuse them.

The edge sends each command to ``CampaignWorkflow`` as a signal carrying a :class:`CampaignCommand` with a
fresh id, and the workflow answers under that id (:class:`CampaignCommandAnswer`, its ``answer`` query). A
signal is in the workflow's history as soon as the server has it, worker or no worker, and replays in the
order it was written; an Update accepted while a timed-out workflow task waits for a worker can be ordered
differently on replay (temporalio 1.35, ``tests/histories/sdk_defects``), and the campaign would be stuck.

:func:`command_refusal` is the one rule set: the workflow's ``refusal`` query and signal handler (through
:func:`campaign_command_refusal`) and the validators of its Updates (kept so campaigns that received Updates
replay) all ask it, on the workflow's
own state (:class:`CommandStanding`). :func:`owner_refusal` is the part of it the edge can answer from the
stored campaign alone (who may command it), so a stranger's command is refused without reaching the
workflow. Every sentence is shown as is to the person and recorded in the ledger as a refused attempt.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from domain.durations import PositiveDuration, format_duration
from domain.identity import Actor

MAX_EXTENSION = timedelta(days=90)
"""The most one extension may add to the open stage's deadline."""


class Phase(StrEnum):
    """Where a campaign's workflow is: snapshotting, in a review stage, waiting for the owner to apply the
    revocations (auto-apply off), applying them, or done (telling the outcome, writing the evidence)."""

    SNAPSHOT = "snapshot"
    STAGE = "stage"
    AWAIT_APPLY = "await_apply"
    APPLY = "apply"
    DONE = "done"


class OwnerCommand(BaseModel):
    actor: Actor
    reason: str = ""


class ExtendInput(OwnerCommand):
    by: PositiveDuration


class CommandKind(StrEnum):
    CANCEL = "cancel"
    EXTEND = "extend"
    END_STAGE = "end_stage"
    APPLY = "apply"

    @property
    def verb(self) -> str:
        """How a refusal says what the person tried ("… cannot end the open stage of campaign …")."""
        return "end the open stage of" if self is CommandKind.END_STAGE else self.value

    @property
    def noun(self) -> str:
        """How the edge names the command once delivered ("the cancellation was delivered …")."""
        return _NOUNS[self]


_NOUNS = {
    CommandKind.CANCEL: "cancellation",
    CommandKind.EXTEND: "extension",
    CommandKind.END_STAGE: "order to end the stage",
    CommandKind.APPLY: "order to apply the revocations",
}


class CampaignCommand(BaseModel):
    """One owner command, as the edge signals it (``CampaignWorkflow.owner_command``); answered under
    ``id``, and carried out once however often it is delivered. ``extension`` is set for ``extend``,
    ``order`` for the others."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    kind: CommandKind
    order: OwnerCommand | None = None
    extension: ExtendInput | None = None

    @classmethod
    def of(cls, command_id: str, kind: CommandKind, carried: OwnerCommand) -> CampaignCommand:
        if kind is CommandKind.EXTEND:
            assert isinstance(carried, ExtendInput), "an extension says by how much"
            return cls(id=command_id, kind=kind, extension=carried)
        return cls(id=command_id, kind=kind, order=OwnerCommand(actor=carried.actor, reason=carried.reason))

    @property
    def carried(self) -> OwnerCommand | None:
        """What the command carries for its kind; None when it carries the wrong thing."""
        return self.extension if self.kind is CommandKind.EXTEND else self.order


class CampaignCommandAnswer(BaseModel):
    """What a campaign made of a :class:`CampaignCommand`: ``refusal`` is the sentence a person reads, or
    None when it was carried out; ``message`` then says what happens now ("stage 1 now closes at …")."""

    refusal: str | None = None
    message: str = ""


class CommandStanding(BaseModel):
    """What the refusal rules read of a running campaign (the workflow's state, at the moment it asks)."""

    model_config = ConfigDict(frozen=True)

    campaign_id: str
    owner: str = Field(description="the spec's owner (lower case)")
    phase: Phase
    stage: int = Field(description="the current stage, 0-based")
    stage_open: bool = Field(description="a review stage is open: not closed, with a deadline")
    ending_early: bool = Field(default=False, description="the owner ended the open stage")
    cancelling: bool = Field(default=False, description="the campaign is being cancelled")


def owner_refusal(campaign_id: str, owner: str, kind: CommandKind, actor: Actor) -> str | None:
    """Only the campaign's owner or an administrator commands it."""
    if actor.person.email.lower() != owner and not actor.is_admin:
        return (
            f"{actor.person.email} cannot {kind.verb} campaign {campaign_id}: "
            f"only its owner ({owner}) or an administrator can"
        )
    return None


def command_refusal(standing: CommandStanding, kind: CommandKind, command: OwnerCommand) -> str | None:
    """Why a campaign standing as ``standing`` would refuse ``command`` of ``kind`` now (None: it would be
    carried out)."""
    campaign_id = standing.campaign_id
    refused = owner_refusal(campaign_id, standing.owner, kind, command.actor)
    if refused is not None:
        return refused
    if standing.phase is Phase.DONE:
        return f"campaign {campaign_id} is already finished"
    if kind is CommandKind.CANCEL:
        if standing.phase is Phase.APPLY:
            return f"campaign {campaign_id} is already applying its decisions"
        return None
    if kind is CommandKind.APPLY:
        if standing.phase is not Phase.AWAIT_APPLY:
            return f"campaign {campaign_id} is not waiting for its revocations to be applied"
        return None
    # extend and end_stage move the open stage's deadline
    if standing.phase is not Phase.STAGE or not standing.stage_open:
        return f"campaign {campaign_id} has no open review stage"
    if standing.ending_early:
        return f"stage {standing.stage + 1} of campaign {campaign_id} is already closing"
    if standing.cancelling:
        return f"campaign {campaign_id} is being cancelled"
    if kind is CommandKind.EXTEND:
        if not isinstance(command, ExtendInput):
            return "an extension must say by how much"
        if command.by > MAX_EXTENSION:
            return f"an extension of {format_duration(command.by)} is more than 90 days"
    return None


def campaign_command_refusal(standing: CommandStanding, command: CampaignCommand) -> str | None:
    """:func:`command_refusal` of a signalled command, which must carry the input of its kind."""
    carried = command.carried
    if carried is None:
        return f"a {command.kind.value} command must carry its own input"
    return command_refusal(standing, command.kind, carried)
