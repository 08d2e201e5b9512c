"""A campaign's evidence files: outcomes counted, every item and decision written, exceptions shown, the
summary self-contained and escaped, and the bundle verifying once signed."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activities.campaign_report import ITEM_COLUMNS, report_files, stacked
from domain.campaign_decisions import ItemDecision
from domain.campaign_report import (
    CampaignReport,
    ItemEvidence,
    Provenance,
    RefusedAttempt,
    Revocation,
    SourceExtract,
)
from domain.campaigns import (
    AccessVia,
    CampaignItem,
    ConnectionUsage,
    ItemAccess,
    Source,
    Subject,
    SubjectKind,
    Usage,
    population_hash,
)
from domain.identity import Actor, PersonRef
from store.evidence_bundle import verify_bundle, write_bundle

LAUNCH = datetime(2027, 1, 4, 9, tzinfo=UTC)
DEADLINE = LAUNCH + timedelta(days=14)
KEN = PersonRef(id="u-2", email="ken@example.com")


def _item(n: int, name: str | None = None) -> CampaignItem:
    subject = Subject(kind=SubjectKind.PERSON, id=f"u-{n}", name=name or f"p{n}@example.com")
    access = ItemAccess(
        via=AccessVia.GROUP, group="db-owners", sources=(Source.HOOP, Source.SCIM), connections=("pg",)
    )
    usage = Usage(
        window_start=LAUNCH - timedelta(days=90),
        read_at=LAUNCH,
        per_connection=(
            ConnectionUsage(connection="pg", last_used_at=LAUNCH - timedelta(days=n * 20), sessions=n),
        ),
    )
    return CampaignItem.of(subject, access, usage, timedelta(days=90))


def _decision(
    item: CampaignItem, verdict: str, *, day: int, default: bool = False, reason: str = ""
) -> ItemDecision:
    return ItemDecision(
        item_id=item.id,
        stage=0,
        verdict=verdict,
        reason=reason,
        actor=None if default else Actor(person=KEN, channel="web"),
        decided_at=LAUNCH + timedelta(days=day),
        default=default,
        default_basis="nobody decided by the deadline; the campaign revokes undecided access"
        if default
        else "",
    )


def _report() -> CampaignReport:
    items = [_item(n) for n in range(1, 8)]
    items.append(_item(8, name='=HYPERLINK("http://evil")<script>x</script>'))
    kept = _decision(items[0], "keep", day=1, reason="on call")
    changed_first = _decision(items[1], "keep", day=1)
    revoked = _decision(items[1], "revoke", day=2)
    defaulted = _decision(items[2], "revoke", day=14, default=True)
    failed_decision = _decision(items[3], "revoke", day=3)
    late = _decision(items[4], "keep", day=15)
    evil = _decision(items[7], "keep", day=2, reason="=1+1")
    applied = Revocation(
        status="applied",
        systems=("hoop", "scim"),
        applied_at=LAUNCH + timedelta(days=2, minutes=1),
        read_back="hoop groups: engineering; scim: not a member",
        sessions_killed=("s-1",),
    )
    evidence = [
        ItemEvidence(item=items[0], reviewer="ken@example.com", assigned_via="manager", decision=kept),
        ItemEvidence(
            item=items[1],
            reviewer="ken@example.com",
            assigned_via="manager",
            decision=revoked,
            revocation=applied,
        ),
        ItemEvidence(
            item=items[2],
            reviewer="ken@example.com",
            assigned_via="manager",
            decision=defaulted,
            revocation=applied,
        ),
        ItemEvidence(
            item=items[3],
            reviewer="dana@example.com",
            assigned_via="resource_owner",
            decision=failed_decision,
            revocation=Revocation(
                status="remediation", systems=("scim",), error="the IdP refused: 403", remediation="SEC-12"
            ),
        ),
        ItemEvidence(
            item=items[4], reviewer="dana@example.com", assigned_via="resource_owner", decision=late
        ),
        ItemEvidence(item=items[5], reviewer="dana@example.com", assigned_via="resource_owner"),
        ItemEvidence(
            item=items[6],
            reviewer=None,
            assigned_via="none",
            assignment_notes=("fallback: grace would review their own access",),
        ),
        ItemEvidence(item=items[7], reviewer="ken@example.com", assigned_via="manager", decision=evil),
    ]
    return CampaignReport(
        campaign_id="cmp-1",
        name="Q1 <review>",
        owner="grace@example.com",
        status="CLOSED",
        launched_at=LAUNCH,
        deadline=DEADLINE,
        closed_at=DEADLINE + timedelta(hours=1),
        spec_sha256="ab" * 32,
        workflow_id="campaign-cmp-1",
        run_ids=("r1", "r2"),
        ledger_head=(42, "cd" * 32),
        provenance=Provenance(
            extracted_at=LAUNCH,
            sources=(
                SourceExtract(
                    system="hoop",
                    endpoint="GET /api/users",
                    query="page_size=100",
                    count=8,
                    extracted_at=LAUNCH,
                ),
                SourceExtract(
                    system="scim", endpoint="GET /Groups", query="count=100", count=3, extracted_at=LAUNCH
                ),
            ),
            population_hash=population_hash(items),
            item_count=len(items),
            connections=("pg",),
            notes=("legacy-ftp: hoop's access control is off",),
        ),
        items=tuple(evidence),
        decisions=(kept, changed_first, revoked, defaulted, failed_decision, late, evil),
        refused=(
            RefusedAttempt(
                item_id=items[0].id,
                actor="<script>alert(1)</script>",
                channel="web",
                at=LAUNCH,
                reason="cannot review their own access",
            ),
        ),
    )


def test_outcomes_are_counted_per_campaign_and_per_reviewer() -> None:
    report = _report()
    assert report.counts() == {
        "kept": 3,  # on call, late, and the formula-named one
        "revoked": 1,
        "defaulted_keep": 0,
        "defaulted_revoke": 1,
        "failed": 1,
        "pending": 2,
    }
    reviewers = dict(report.per_reviewer())
    assert sum(reviewers["ken@example.com"].values()) == 4
    assert reviewers["(nobody independent)"]["pending"] == 1
    assert [e.item.id for e in report.late_decisions()] == [report.items[4].item.id]
    assert [n for _, n in report.decisions_per_day()] == [2, 2, 1, 1]  # defaults are not reviewer decisions


def test_items_csv_has_every_item_with_what_the_reviewer_saw_and_no_formula() -> None:
    files = report_files(_report())
    rows = list(csv.DictReader(io.StringIO(files["items.csv"].decode())))
    assert tuple(rows[0]) == ITEM_COLUMNS
    assert len(rows) == 8
    first = rows[0]
    assert first["recommendation"] == "keep: used 1 time since the last review"
    assert first["decided_by"] == "ken@example.com" and first["channel"] == "web"
    assert rows[3]["outcome"] == "failed" and rows[3]["remediation"] == "SEC-12"
    assert rows[2]["decided_by"] == "default" and rows[2]["default_basis"].startswith("nobody decided")
    assert rows[1]["revoked_in"] == "hoop+scim" and rows[1]["sessions_killed"] == "s-1"
    evil = rows[7]
    assert evil["subject"].startswith("'=HYPERLINK") and evil["reason"] == "'=1+1"
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@")) for value in row.values())


def test_decisions_jsonl_keeps_changed_decisions_and_population_json_the_hash() -> None:
    files = report_files(_report())
    lines = [json.loads(line) for line in files["decisions.jsonl"].decode().splitlines()]
    assert len(lines) == 7
    changed = [d for d in lines if d["item_id"] == _report().items[1].item.id]
    assert [d["verdict"] for d in changed] == ["keep", "revoke"]
    assert {d["decided_by"] for d in lines} == {"ken@example.com", "default"}
    population = json.loads(files["population.json"])
    assert len(population["items"]) == 8
    recomputed = population_hash(CampaignItem.model_validate(i) for i in population["items"])
    assert recomputed == population["provenance"]["population_hash"]


def test_the_summary_is_self_contained_escaped_and_shows_exceptions() -> None:
    html = report_files(_report())["summary.html"].decode()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Q1 &lt;review&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html), "the summary must not fetch anything"
    assert html.count("<svg") == 3
    assert "Revocation failed: 1" in html and "SEC-12" in html and "the IdP refused: 403" in html
    assert "grace would review their own access" in html
    assert "Decisions after the deadline (1)" in html
    assert "Refused attempts (1)" in html
    assert "legacy-ftp: hoop" in html
    assert "entry 42" in html


def test_the_rendered_files_make_a_bundle_that_verifies(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    report = _report()
    write_bundle(tmp_path, report_files(report), about={"campaign_id": report.campaign_id}, signing_key=key)
    assert verify_bundle(tmp_path, key.public_key()).files == (
        "decisions.jsonl",
        "items.csv",
        "population.json",
        "summary.html",
    )


def test_bars_split_their_width_by_outcome() -> None:
    segments = stacked({"kept": 3, "revoked": 1, "pending": 0}, 400)
    assert [(s.label, s.count, round(s.width)) for s in segments] == [("Kept", 3, 300), ("Revoked", 1, 100)]
    assert segments[1].x == 300
    assert stacked({}, 400) == []
