"""What a campaign's evidence says: the population and where it came from, who reviewed what seeing what,
every decision, the defaults, and each revocation with when it took effect and how it was read back.

These are the answers to the standard user-access-review audit requests — population completeness (the
sources, queries, counts and the population hash), reviewer independence (every assignment with the
reasons a candidate was passed over), what each reviewer saw (the usage and recommendation stored on the
item), every decision with who, when and through which channel, defaults and exceptions, remediation,
timeliness (decided before the deadline or defaulted), and integrity (the ledger head in the signed
manifest). The report activity fills a :class:`CampaignReport` from the store and renders it; this module
only aggregates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.campaign_decisions import ItemDecision
from domain.campaigns import CampaignItem

Outcome = Literal["kept", "revoked", "defaulted_keep", "defaulted_revoke", "failed", "pending"]
OUTCOMES: tuple[Outcome, ...] = ("kept", "revoked", "defaulted_keep", "defaulted_revoke", "failed", "pending")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceExtract(_Frozen):
    """One read of a source system during the snapshot."""

    system: Literal["hoop", "scim"]
    endpoint: str = Field(description="e.g. GET /api/connections")
    query: str = Field(default="", description="filters and paging as sent")
    count: int = Field(ge=0)
    extracted_at: datetime


class Provenance(_Frozen):
    extracted_at: datetime
    sources: tuple[SourceExtract, ...]
    population_hash: str
    item_count: int
    connections: tuple[str, ...]
    notes: tuple[str, ...] = ()


class Revocation(_Frozen):
    status: Literal["applied", "failed", "remediation"]
    systems: tuple[str, ...] = Field(description="where it was removed: hoop, scim")
    applied_at: datetime | None = None
    read_back: str = Field(default="", description="what reading back showed, e.g. 'groups: engineering'")
    sessions_killed: tuple[str, ...] = ()
    remediation: str | None = Field(default=None, description="the remediation ticket or record")
    error: str = ""


class ItemEvidence(_Frozen):
    item: CampaignItem
    reviewer: str | None = Field(description="who was asked (email or group), per the last stage")
    assigned_via: str
    assignment_notes: tuple[str, ...] = ()
    decision: ItemDecision | None = None
    revocation: Revocation | None = None

    @property
    def outcome(self) -> Outcome:
        if self.revocation is not None and self.revocation.status != "applied":
            return "failed"
        if self.decision is None:
            return "pending"
        if self.decision.default:
            return "defaulted_keep" if self.decision.verdict == "keep" else "defaulted_revoke"
        return "kept" if self.decision.verdict == "keep" else "revoked"


class RefusedAttempt(_Frozen):
    item_id: str
    actor: str
    channel: str
    at: datetime
    reason: str


class CampaignReport(_Frozen):
    campaign_id: str
    name: str
    owner: str
    status: str
    launched_at: datetime
    deadline: datetime
    closed_at: datetime | None = None
    spec_sha256: str
    workflow_id: str
    run_ids: tuple[str, ...]
    ledger_head: tuple[int, str] | None = None
    provenance: Provenance
    items: tuple[ItemEvidence, ...]
    decisions: tuple[ItemDecision, ...] = Field(default=(), description="every decision, changed ones too")
    refused: tuple[RefusedAttempt, ...] = ()

    def counts(self) -> dict[Outcome, int]:
        found = Counter(e.outcome for e in self.items)
        return {o: found.get(o, 0) for o in OUTCOMES}

    def per_reviewer(self) -> list[tuple[str, dict[Outcome, int]]]:
        """Each reviewer's outcomes, the busiest first."""
        by: dict[str, Counter[Outcome]] = {}
        for evidence in self.items:
            by.setdefault(evidence.reviewer or "(nobody independent)", Counter())[evidence.outcome] += 1
        rows = [(name, {o: c.get(o, 0) for o in OUTCOMES}) for name, c in by.items()]
        return sorted(rows, key=lambda row: (-sum(row[1].values()), row[0]))

    def decisions_per_day(self) -> list[tuple[date, int]]:
        """Reviewer decisions per day (changed ones too; defaults are not decisions of anyone)."""
        days = Counter(d.decided_at.date() for d in self.decisions if not d.default)
        return sorted(days.items())

    def late_decisions(self) -> Sequence[ItemEvidence]:
        return [
            e
            for e in self.items
            if e.decision is not None and not e.decision.default and e.decision.decided_at > self.deadline
        ]
