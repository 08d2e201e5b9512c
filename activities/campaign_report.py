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

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from domain.campaign_decisions import ItemDecision
from domain.campaign_report import OUTCOMES, CampaignReport, ItemEvidence, Outcome
from store.evidence_bundle import csv_text, safe_cell
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
REPORT_FILES = ("summary.html", "items.csv", "decisions.jsonl", "population.json")
"""The bundle's files, as :func:`report_files` and :class:`ReportFilesWriter` write them."""
PROGRESS_EVERY = 5000
"""Decisions written between two progress reports (heartbeats) of :meth:`ReportFilesWriter.add_decisions`."""
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
    return _summary_page(
        report,
        counts=report.counts(),
        reviewers=report.per_reviewer(),
        days=report.decisions_per_day(),
        failed=[e for e in report.items if e.outcome == "failed"],
        unreviewable=[e for e in report.items if e.reviewer is None],
        late=report.late_decisions(),
    )


def _summary_page(
    report: CampaignReport | _Heading,
    *,
    counts: dict[Outcome, int],
    reviewers: list[tuple[str, dict[Outcome, int]]],
    days: list[tuple[date, int]],
    failed: Sequence[ItemEvidence],
    unreviewable: Sequence[ItemEvidence],
    late: Sequence[ItemEvidence],
) -> str:
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
        failed=failed,
        unreviewable=unreviewable,
        late=late,
    )


def report_files(report: CampaignReport) -> dict[str, bytes]:
    """The bundle's files (the manifest is added when the bundle is written and signed)."""
    return {
        "summary.html": summary_html(report).encode(),
        "items.csv": items_csv(report).encode(),
        "decisions.jsonl": decisions_jsonl(report).encode(),
        "population.json": population_json(report).encode(),
    }


class _Heading:
    """A report without its items and decisions, as the summary page reads it: the item count stands for
    the items (the page shows only how many there are)."""

    def __init__(self, report: CampaignReport, item_count: int) -> None:
        self._report = report
        self._item_count = item_count

    @property
    def items(self) -> range:
        return range(self._item_count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._report, name)


def _nested_json(value: object, level: int) -> str:
    """``value`` as ``json.dumps(..., indent=1)`` writes it ``level`` deep in a larger document (JSON
    strings hold no raw line break, so every line break is the layout's)."""
    text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)
    return text.replace("\n", "\n" + " " * level)


class ReportFilesWriter:
    """The bundle's files written into ``folder`` as the items arrive, page by page, byte for byte what
    :func:`report_files` renders from a whole :class:`CampaignReport` — for campaigns too large to hold
    in memory: only the counts the summary page shows and its exception lists are kept.

    ``heading`` is the report without items or decisions (its ``items`` and ``decisions`` are empty).
    Call :meth:`add_items` for every page of items in id order, :meth:`add_decisions` once with every
    decision by time (:meth:`store.campaigns.CampaignRecords.decisions_by_time`), :meth:`close`, then
    :meth:`write_summary`.
    """

    def __init__(self, folder: Path, heading: CampaignReport) -> None:
        self._folder = folder
        self._heading = heading
        self._count = 0
        self._counts: Counter[Outcome] = Counter()
        self._by_reviewer: dict[str, Counter[Outcome]] = {}
        self._days: Counter[date] = Counter()
        self._failed: list[ItemEvidence] = []
        self._unreviewable: list[ItemEvidence] = []
        self._late: list[ItemEvidence] = []
        self._csv_file = (folder / "items.csv").open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file, lineterminator="\n")
        self._csv.writerow([safe_cell(h) for h in ITEM_COLUMNS])
        self._population = (folder / "population.json").open("w", encoding="utf-8", newline="")
        self._population.write(
            "{\n " + json.dumps("campaign_id") + ": " + json.dumps(heading.campaign_id, ensure_ascii=False)
        )
        self._population.write(",\n " + json.dumps("items") + ": [")

    @property
    def item_count(self) -> int:
        return self._count

    def add_items(self, page: Sequence[ItemEvidence]) -> None:
        for evidence in page:
            self._csv.writerow([safe_cell(v) for v in _item_row(evidence)])
            self._population.write(",\n  " if self._count else "\n  ")
            self._population.write(_nested_json(evidence.item.model_dump(mode="json"), 2))
            self._count += 1
            outcome = evidence.outcome
            self._counts[outcome] += 1
            self._by_reviewer.setdefault(evidence.reviewer or "(nobody independent)", Counter())[outcome] += 1
            if outcome == "failed":
                self._failed.append(evidence)
            if evidence.reviewer is None:
                self._unreviewable.append(evidence)
            decision = evidence.decision
            if decision is not None and not decision.default and decision.decided_at > self._heading.deadline:
                self._late.append(evidence)

    def add_decisions(
        self, decisions: Iterable[ItemDecision], progress: Callable[[str], None] | None = None
    ) -> None:
        with (self._folder / "decisions.jsonl").open("w", encoding="utf-8", newline="") as out:
            for n, decision in enumerate(decisions, 1):
                doc: dict[str, Any] = decision.model_dump(mode="json")
                doc["decided_by"] = decision.actor.describe() if decision.actor else "default"
                out.write(json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n")
                if not decision.default:
                    self._days[decision.decided_at.date()] += 1
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(f"{n} decisions in the evidence")

    def close(self) -> None:
        """Finish ``items.csv`` and ``population.json`` (idempotent; also after a failure part-way)."""
        if not self._population.closed:
            provenance = _nested_json(self._heading.provenance.model_dump(mode="json"), 1)
            closing = "\n ]" if self._count else "]"
            self._population.write(f"{closing},\n {json.dumps('provenance')}: {provenance}\n}}\n")
        self._csv_file.close()
        self._population.close()

    def write_summary(self, heading: CampaignReport) -> None:
        """``summary.html``, once every item and decision was added (``heading``: the report without items
        or decisions, as the page shows it — with the ledger head read after the records)."""
        rows = [(name, {o: c.get(o, 0) for o in OUTCOMES}) for name, c in self._by_reviewer.items()]
        page = _summary_page(
            _Heading(heading, self._count),
            counts={o: self._counts.get(o, 0) for o in OUTCOMES},
            reviewers=sorted(rows, key=lambda row: (-sum(row[1].values()), row[0])),
            days=sorted(self._days.items()),
            failed=self._failed,
            unreviewable=self._unreviewable,
            late=self._late,
        )
        (self._folder / "summary.html").write_bytes(page.encode())
