"""The files of a campaign's evidence bundle, rendered from a :class:`~domain.campaign_report.CampaignReport`.

``summary.html`` is one self-contained page (inline CSS and SVG charts, no script, nothing fetched), so it
opens offline years later: the outcomes, each reviewer's progress, decisions per day, then the exceptions an
auditor asks about first (failed revocations and their remediation, items nobody independent could review,
late decisions, refused attempts) and the population's provenance. ``items.csv`` has one row per item with
what the reviewer saw and what happened; ``decisions.jsonl`` every decision, changed ones included;
``population.json`` the population with its provenance and hash. Signing and writing the files is
``store.evidence_bundle``'s job; reading the store is the report activity's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from domain.campaign_report import OUTCOMES, CampaignReport, ItemEvidence, Outcome
from store.evidence_bundle import csv_text
from templates import template_environment

OUTCOME_LABELS: dict[Outcome, str] = {
    "kept": "Kept",
    "revoked": "Revoked",
    "defaulted_keep": "Kept by default",
    "defaulted_revoke": "Revoked by default",
    "failed": "Revocation failed",
    "pending": "Pending",
}
OUTCOME_COLOURS: dict[Outcome, str] = {
    "kept": "#2e7d32",
    "revoked": "#c62828",
    "defaulted_keep": "#81c784",
    "defaulted_revoke": "#ef9a9a",
    "failed": "#6a1b9a",
    "pending": "#9e9e9e",
}
CHART_WIDTH = 640
MAX_REVIEWERS_CHARTED = 25

ITEM_COLUMNS = (
    "item_id",
    "subject_kind",
    "subject",
    "access",
    "group",
    "sources",
    "connections",
    "last_used_at",
    "sessions_since_last_review",
    "recommendation",
    "reviewer",
    "assigned_via",
    "assignment_notes",
    "outcome",
    "verdict",
    "reason",
    "decided_by",
    "channel",
    "decided_at",
    "default_basis",
    "revocation",
    "revoked_in",
    "applied_at",
    "read_back",
    "sessions_killed",
    "remediation",
)


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    colour: str
    label: str
    count: int


def stacked(counts: dict[Outcome, int], width: float) -> list[Segment]:
    """One horizontal bar of ``width`` split by outcome, in the order of :data:`OUTCOMES`."""
    total = sum(counts.values())
    x = 0.0
    segments = []
    for outcome in OUTCOMES:
        count = counts.get(outcome, 0)
        if not count or not total:
            continue
        share = width * count / total
        segments.append(Segment(x, share, OUTCOME_COLOURS[outcome], OUTCOME_LABELS[outcome], count))
        x += share
    return segments


def _item_row(evidence: ItemEvidence) -> list[object]:
    item, decision, revocation = evidence.item, evidence.decision, evidence.revocation
    usage = item.usage
    last_used = usage.last_used_at if usage else None
    actor = decision.actor if decision else None
    return [
        item.id,
        item.subject.kind.value,
        item.subject.name,
        item.access.via.value,
        item.access.group or "",
        "+".join(s.value for s in item.access.sources),
        " ".join(item.access.connections),
        last_used.isoformat() if last_used else "",
        usage.sessions if usage else "",
        item.recommendation.sentence if item.recommendation else "",
        evidence.reviewer or "",
        evidence.assigned_via,
        "; ".join(evidence.assignment_notes),
        evidence.outcome,
        decision.verdict if decision else "",
        decision.reason if decision else "",
        actor.describe() if actor else ("default" if decision else ""),
        actor.channel if actor else "",
        decision.decided_at.isoformat() if decision else "",
        decision.default_basis if decision else "",
        revocation.status if revocation else "",
        "+".join(revocation.systems) if revocation else "",
        revocation.applied_at.isoformat() if revocation and revocation.applied_at else "",
        revocation.read_back if revocation else "",
        " ".join(revocation.sessions_killed) if revocation else "",
        revocation.remediation or "" if revocation else "",
    ]


def items_csv(report: CampaignReport) -> str:
    return csv_text(ITEM_COLUMNS, (_item_row(e) for e in report.items))


def decisions_jsonl(report: CampaignReport) -> str:
    lines = []
    for decision in sorted(report.decisions, key=lambda d: (d.decided_at, d.item_id, d.stage)):
        doc: dict[str, Any] = decision.model_dump(mode="json")
        doc["decided_by"] = decision.actor.describe() if decision.actor else "default"
        lines.append(json.dumps(doc, sort_keys=True, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def population_json(report: CampaignReport) -> str:
    doc = {
        "campaign_id": report.campaign_id,
        "provenance": report.provenance.model_dump(mode="json"),
        "items": [e.item.model_dump(mode="json") for e in report.items],
    }
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def summary_html(report: CampaignReport) -> str:
    counts = report.counts()
    reviewers = report.per_reviewer()
    days = report.decisions_per_day()
    peak = max((n for _, n in days), default=0)
    env = template_environment(autoescape=True)
    return env.get_template("reports/summary.html.j2").render(
        report=report,
        counts=counts,
        labels=OUTCOME_LABELS,
        colours=OUTCOME_COLOURS,
        outcome_bar=stacked(counts, CHART_WIDTH),
        reviewer_bars=[
            (name, sum(c.values()), stacked(c, CHART_WIDTH - 220))
            for name, c in reviewers[:MAX_REVIEWERS_CHARTED]
        ],
        reviewers_left_out=max(0, len(reviewers) - MAX_REVIEWERS_CHARTED),
        days=days,
        day_peak=peak,
        chart_width=CHART_WIDTH,
        failed=[e for e in report.items if e.outcome == "failed"],
        unreviewable=[e for e in report.items if e.reviewer is None],
        late=report.late_decisions(),
    )


def report_files(report: CampaignReport) -> dict[str, bytes]:
    """The bundle's files (the manifest is added when the bundle is written and signed)."""
    return {
        "summary.html": summary_html(report).encode(),
        "items.csv": items_csv(report).encode(),
        "decisions.jsonl": decisions_jsonl(report).encode(),
        "population.json": population_json(report).encode(),
    }
