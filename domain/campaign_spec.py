"""Campaign specs: what a recertification campaign reviews, who reviews it, and what happens at the deadline.

A spec is a TOML file written by the security team (``examples/campaign.toml`` is the example organisation's).
It is validated completely before anything starts, and every problem is reported with its line and field
(``campaign.toml: line 14: stages.1.group: …``) so the author fixes the file in one pass. A spec holds no
secrets and no people's data beyond the emails it names; it is safe to keep in version control and to carry
in workflow inputs.

The model, top to bottom:

- **scope** — which standing access is reviewed: connections by name, hoop tag (``key=value``) or type;
  access-control groups; people filtered by department, manager and employment type; hoop's non-human
  identities (API keys, AI agents, service accounts, machine identities); "unused for" and "granted since".
  A scope that selects nothing is refused: a campaign over nothing is a typing mistake.
- **stages** — up to three, reviewed one after the other, each by a kind of reviewer (the subject's manager,
  the resource owner, a named group, or a non-human identity's owner). Items a stage's kind cannot resolve,
  and items whose reviewer would be their own subject, go to the next stage's reviewer or to the **fallback
  reviewer**, which every spec names.
- **timing** — a duration (from launch) or a fixed deadline, optional per-stage durations, reminders before a
  stage's deadline, an escalation before it (``escalation = "2d"``, for every stage or per stage: reviewers
  who still have pending items are escalated to their manager as the directory has it then), and an
  optional quarterly/monthly schedule with a catch-up window — or, instead of a calendar, a **trigger**:
  ``[trigger] on = "mover"`` opens a small campaign whenever the identity sync sees someone change manager or
  department, over that person's access alone, reviewed by their new manager
  (``domain/campaign_triggers.py``).
- **outcome** — the default decision at the deadline (``keep``, ``revoke`` or the item's ``recommendation``),
  which decisions need a reason, and whether revocations are applied automatically.

This module parses and validates; it never reads the directory or the gateway (the snapshot resolves names).
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.durations import PositiveDuration, format_duration
from domain.toml_lines import key_lines, line_of

MAX_STAGES = 3
"""Sequential review stages a campaign may have (the anchors in this field stop at three as well)."""


class CampaignSpecError(ValueError):
    """A campaign spec that cannot be used; the message names the file, and each problem's line and field."""


class FieldProblem(ValueError):
    """A problem a whole-spec check finds with one field: reported on that field's line, not at the top."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _email(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
        raise ValueError(f"{value!r} is not an email address")
    return value.lower()


Email = Annotated[str, AfterValidator(_email)]


def _tag(value: str) -> str:
    # hoop selects connections by tag with ``tag_selector=key=value`` (GET /connections, hoop's OpenAPI spec).
    key, _, tag_value = value.partition("=")
    if not key.strip() or not tag_value.strip():
        raise ValueError(f"{value!r} is not a connection tag: write key=value, e.g. env=prod")
    return f"{key.strip()}={tag_value.strip()}"


ConnectionTag = Annotated[str, AfterValidator(_tag)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class ReviewerKind(StrEnum):
    MANAGER = "manager"  # the subject's manager, from the directory
    RESOURCE_OWNER = "resource_owner"  # the owner of the group or connection the item is about
    GROUP = "group"  # any member of a named group
    IDENTITY_OWNER = "identity_owner"  # a non-human identity's configured owner, else its creator


class IdentityKind(StrEnum):
    """hoop's non-human identities (``/api-keys``, ``/ai-agents``, ``/serviceaccounts``,
    ``/machineidentities`` in hoop's OpenAPI spec)."""

    API_KEY = "api_key"
    AI_AGENT = "ai_agent"
    SERVICE_ACCOUNT = "service_account"
    MACHINE_IDENTITY = "machine_identity"


class DefaultDecision(StrEnum):
    KEEP = "keep"
    REVOKE = "revoke"
    RECOMMENDATION = "recommendation"  # the item's recommendation, recorded with its inputs

    @property
    def sentence(self) -> str:
        """What reviewers are told happens at the deadline."""
        return {
            "keep": "undecided access is kept",
            "revoke": "undecided access is revoked",
            "recommendation": "undecided access follows its recommendation",
        }[self.value]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeopleFilter(_Frozen):
    """Which people's access is reviewed; each list, when given, must match (an empty list matches all)."""

    departments: list[Name] = Field(default_factory=list)
    managers: list[Email] = Field(default_factory=list)
    employment_types: list[Name] = Field(default_factory=list)
    ids: list[Name] = Field(
        default_factory=list,
        description="directory ids of the people reviewed; a triggered campaign's launch sets its mover here",
    )


class Scope(_Frozen):
    connections: list[Name] = Field(default_factory=list, description="connections by name")
    connection_tags: list[ConnectionTag] = Field(default_factory=list, description="hoop tags, key=value")
    connection_types: list[Name] = Field(default_factory=list, description="hoop connection types")
    groups: list[Name] = Field(default_factory=list, description="access-control groups")
    people: PeopleFilter = PeopleFilter()
    identities: list[IdentityKind] = Field(default_factory=list, description="non-human identities")
    include_admins: bool = Field(
        default=True, description="members of hoop's admin and auditor groups, who reach every connection"
    )
    unused_for: PositiveDuration | None = Field(default=None, description="only access unused this long")
    granted_since: date | None = Field(default=None, description="only access granted on or after this day")

    @model_validator(mode="after")
    def _selects_something(self) -> Scope:
        if not (
            self.connections
            or self.connection_tags
            or self.connection_types
            or self.groups
            or self.identities
            or self.people.ids
        ):
            raise ValueError(
                "the scope selects nothing: name connections, connection_tags, connection_types, groups "
                "or identities"
            )
        return self

    @property
    def selects_connections(self) -> bool:
        return bool(self.connections or self.connection_tags or self.connection_types)


class Stage(_Frozen):
    reviewers: ReviewerKind
    group: Name | None = Field(default=None, description="the reviewing group, for reviewers = group")
    duration: PositiveDuration | None = Field(
        default=None, description="this stage's share of the campaign; the rest is split evenly"
    )
    escalation: PositiveDuration | None = Field(
        default=None, description="this stage's escalation, before its deadline (instead of the campaign's)"
    )

    @model_validator(mode="after")
    def _group_when_needed(self) -> Stage:
        if self.reviewers is ReviewerKind.GROUP and self.group is None:
            raise ValueError('a stage reviewed by a group names it: group = "security"')
        if self.reviewers is not ReviewerKind.GROUP and self.group is not None:
            raise ValueError(f"group is only for reviewers = group (this stage: {self.reviewers.value})")
        return self


class Owners(_Frozen):
    """Who owns what, for ``resource_owner`` and ``identity_owner`` stages. A group without a configured
    owner is owned by the owner of the single connection it reaches; otherwise its items go to the
    fallback reviewer."""

    groups: dict[Name, Email] = Field(default_factory=dict)
    connections: dict[Name, Email] = Field(default_factory=dict)
    identities: dict[Name, Email] = Field(default_factory=dict)


class Recommendation(_Frozen):
    """How an item's recommendation is computed from its usage (its inputs are stored with it)."""

    revoke_if_unused_for: PositiveDuration = timedelta(days=90)


class Schedule(_Frozen):
    """A recurring campaign: a Temporal Schedule, no overlap, runs missed while down start within
    ``catch_up_window``."""

    every: Literal["quarter", "month"] = "quarter"
    start: datetime = Field(description="the first nominal run, local time in time_zone")
    time_zone: str = "UTC"
    catch_up_window: PositiveDuration = timedelta(days=1)

    @model_validator(mode="after")
    def _known_zone(self) -> Schedule:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time_zone {self.time_zone!r} is not an IANA time zone such as Europe/Berlin"
            ) from None
        return self


MoverChange = Literal["manager", "department"]
ReviewChannel = Literal["email", "slack", "jira"]
DEFAULT_REVIEW_CHANNELS: tuple[ReviewChannel, ...] = ("email", "slack")
ALL_MOVER_CHANGES: tuple[MoverChange, ...] = ("manager", "department")


class Trigger(_Frozen):
    """An event-triggered campaign: each event opens one small campaign about the person concerned."""

    on: Literal["mover"] = Field(
        description="mover: someone's manager or department changed in the directory"
    )
    changes: list[MoverChange] = Field(
        default_factory=lambda: list(ALL_MOVER_CHANGES),
        min_length=1,
        description="which changes make someone a mover for this spec",
    )


class CampaignSpec(_Frozen):
    name: Name
    owner: Email = Field(description="may cancel or extend the campaign; receives its outcome")
    description: str = ""
    scope: Scope
    stages: list[Stage] = Field(min_length=1, max_length=MAX_STAGES)
    fallback_reviewer: Email
    duration: PositiveDuration | None = Field(default=None, description="from launch to the deadline")
    deadline: datetime | None = Field(default=None, description="a fixed deadline, with its time zone")
    default_decision: DefaultDecision
    reasons_required: list[Literal["keep", "revoke"]] = Field(default_factory=list)
    auto_apply: bool = True
    channels: list[ReviewChannel] = Field(
        default_factory=lambda: list(DEFAULT_REVIEW_CHANNELS),
        min_length=1,
        description="how reviewers are told of their items, where the worker has the channel configured: "
        '"email" (the notice and reminders with the review link), "slack" (one digest DM per reviewer and '
        'stage), "jira" (one issue per reviewer and stage, decided by comment). Jira is opt-in: it opens '
        "issues in a shared project",
    )
    allow_admin_on_behalf: bool = Field(
        default=False,
        description="an administrator may decide items on behalf of their reviewer (``as``); refused "
        "and recorded otherwise",
    )
    reminders: list[PositiveDuration] = Field(
        default_factory=list, description="before each stage's deadline, to reviewers with pending items"
    )
    escalation: PositiveDuration | None = Field(
        default=None,
        description="before each stage's deadline: every reviewer with items still pending is escalated to "
        "their manager (as the directory has it then; the campaign's owner when they have none), who is "
        "told and may decide those items too",
    )
    owners: Owners = Owners()
    recommendation: Recommendation = Recommendation()
    schedule: Schedule | None = None
    trigger: Trigger | None = None

    @model_validator(mode="before")
    @classmethod
    def _triggered_stage(cls, data: Any) -> Any:
        """A triggered spec may leave out its stages: its one stage is the mover's new manager."""
        if isinstance(data, dict) and "trigger" in data and "stages" not in data:
            return {**data, "stages": [{"reviewers": ReviewerKind.MANAGER.value}]}
        return data

    @model_validator(mode="after")
    def _triggered(self) -> CampaignSpec:
        if self.trigger is None:
            return self
        if self.schedule is not None:
            raise FieldProblem(
                ("trigger",), "a spec is either scheduled or triggered: remove [schedule] or [trigger]"
            )
        if self.deadline is not None:
            raise FieldProblem(
                ("deadline",),
                'a triggered campaign runs for a duration from each event (duration = "14d"), not to a '
                "fixed deadline",
            )
        if len(self.stages) != 1 or self.stages[0].reviewers is not ReviewerKind.MANAGER:
            raise FieldProblem(
                ("stages",),
                "a triggered campaign has one stage, reviewed by the mover's new manager (reviewers = "
                '"manager"); leave stages out to get it',
            )
        if self.scope.identities:
            raise FieldProblem(
                ("scope", "identities"),
                "a triggered campaign reviews the mover's own access: non-human identities have no manager "
                "to move to; review them in a scheduled campaign",
            )
        if self.scope.people.ids:
            raise FieldProblem(
                ("scope", "people", "ids"),
                "a triggered campaign reviews the person its event is about: it is set at launch, not here",
            )
        return self

    @model_validator(mode="after")
    def _timing(self) -> CampaignSpec:
        if (self.duration is None) == (self.deadline is None):
            raise ValueError('give exactly one of duration ("14d") and deadline (2027-01-15T17:00:00Z)')
        if self.deadline is not None and self.deadline.tzinfo is None:
            raise ValueError("deadline needs a time zone offset, e.g. 2027-01-15T17:00:00Z")
        if self.schedule is not None and self.deadline is not None:
            raise ValueError(
                "a scheduled campaign runs for a duration from each start, not to a fixed deadline"
            )
        fixed = [s.duration for s in self.stages if s.duration is not None]
        if self.duration is not None and sum(fixed, timedelta()) > self.duration:
            raise ValueError(
                f"the stages' durations add up to more than the campaign's {format_duration(self.duration)}"
            )
        if (
            self.duration is not None
            and len(fixed) == len(self.stages)
            and sum(fixed, timedelta()) != (self.duration)
        ):
            raise ValueError("every stage has a duration, but they do not add up to the campaign's duration")
        if any(s.reviewers is ReviewerKind.IDENTITY_OWNER for s in self.stages) and not self.scope.identities:
            raise ValueError("a stage reviewed by identity owners needs identities in the scope")
        if self.duration is not None:  # a fixed deadline's stages are known at launch only (checked there)
            # With a duration the stages' lengths do not depend on the launch: any instant will do, and a
            # fixed one keeps this validator deterministic (it also runs when a workflow decodes its input).
            problem = self.escalation_problem(datetime(2000, 1, 1, tzinfo=UTC))
            if problem is not None:
                raise ValueError(problem)
        return self

    def escalation_before(self, stage: int) -> timedelta | None:
        """How long before ``stage``'s deadline (0-based) its reviewers with pending items are escalated;
        None when the stage has no escalation."""
        return self.stages[stage].escalation or self.escalation

    def escalation_problem(self, launched_at: datetime) -> str | None:
        """Why a stage's escalation would fall at or before the stage opens, or None: an escalation that
        could never happen is a mistake in the spec, not something to skip quietly."""
        for n, length in enumerate(self.stage_durations(launched_at)):
            before = self.escalation_before(n)
            if before is not None and before >= length:
                return (
                    f"stage {n + 1}'s escalation {format_duration(before)} before its deadline falls before "
                    f"the stage opens (it lasts {format_duration(length)})"
                )
        return None

    def total_duration(self, launched_at: datetime) -> timedelta:
        """From launch to the deadline."""
        if self.duration is not None:
            return self.duration
        assert self.deadline is not None
        return self.deadline.astimezone(UTC) - launched_at

    def stage_durations(self, launched_at: datetime) -> list[timedelta]:
        """Each stage's duration: the fixed ones as given, the rest of the campaign split evenly."""
        total = self.total_duration(launched_at)
        fixed = sum((s.duration for s in self.stages if s.duration is not None), timedelta())
        open_stages = [s for s in self.stages if s.duration is None]
        share = (total - fixed) / len(open_stages) if open_stages else timedelta()
        return [s.duration if s.duration is not None else share for s in self.stages]

    def reason_required(self, verdict: Literal["keep", "revoke"]) -> bool:
        return verdict in self.reasons_required


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_campaign_spec(text: str, source: str = "campaign spec") -> CampaignSpec:
    """Parse and validate a spec's TOML text; a :class:`CampaignSpecError` lists every problem."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignSpecError(f"{source}: not valid TOML: {exc}") from None
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        lines = key_lines(text)
        problems = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if not isinstance(part, str) or "[" not in part)
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, FieldProblem):  # a whole-spec check that knows which field is wrong
                loc = (*loc, *cause.loc)
            line = line_of(lines, loc)
            where = f"line {line}: " if line is not None else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}{_field(loc)}: {message}")
        raise CampaignSpecError(f"{source}: " + "; ".join(problems)) from None


def load_campaign_spec(path: Path) -> CampaignSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignSpecError(f"{path}: campaign spec not found") from None
    except UnicodeDecodeError as exc:
        raise CampaignSpecError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the spec as UTF-8"
        ) from None
    except OSError as exc:  # a folder, no permission: the operator fixes the path, not the spec
        raise CampaignSpecError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_campaign_spec(text, str(path))
