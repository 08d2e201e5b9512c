"""A campaign's record and lifecycle, as the store keeps it and the CLI, API and workflow read it.

    SNAPSHOTTING ──items written──▶ OPEN (stage 1 … n) ──last stage closed──▶ APPLYING ──▶ CLOSED
         │                             │
         └──────── cancel ─────────────┴──▶ CANCELLED (nothing applied; the evidence says so)

A dry run goes SNAPSHOTTING ──▶ DRY_RUN: the population, the assignments and what the deadline would revoke
if nobody answered, with no message sent and nothing changed.

An item's ``outcome`` moves ``open`` ──▶ ``kept`` | ``revoke`` (decided, or defaulted at the last deadline)
──▶ ``revoked`` | ``failed`` once the revocation was applied and read back, or could not be.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class CampaignStatus(StrEnum):
    SNAPSHOTTING = "SNAPSHOTTING"
    OPEN = "OPEN"
    APPLYING = "APPLYING"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"
    DRY_RUN = "DRY_RUN"

    @property
    def is_terminal(self) -> bool:
        return self in (CampaignStatus.CLOSED, CampaignStatus.CANCELLED, CampaignStatus.DRY_RUN)


class ItemOutcome(StrEnum):
    OPEN = "open"
    KEPT = "kept"
    REVOKE = "revoke"  # decided (or defaulted) to revoke; not yet applied
    REVOKED = "revoked"
    FAILED = "failed"  # the revocation could not be applied; a remediation record says what next


class CampaignRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    owner: str
    spec_toml: str
    spec_sha256: str
    status: CampaignStatus
    dry_run: bool = False
    launched_at: datetime
    deadline: datetime | None = None
    closed_at: datetime | None = None
    stage: int = 0
    stage_open: bool = False
    stage_closes_at: datetime | None = None
    nominal_time: datetime | None = Field(default=None, description="the scheduled run's nominal time")
    workflow_id: str
    population_hash: str | None = None
    item_count: int = 0
    provenance_json: str | None = None
    updated_at: datetime


class ReviewerProgress(BaseModel):
    model_config = ConfigDict(frozen=True)

    reviewer: str
    decided: int
    pending: int


class CampaignProgress(BaseModel):
    """Counts for ``grantflow campaign status``."""

    model_config = ConfigDict(frozen=True)

    total: int
    by_outcome: dict[str, int]
    decided_in_stage: int
    pending_in_stage: int
    defaulted: int
    reviewers: tuple[ReviewerProgress, ...] = ()
