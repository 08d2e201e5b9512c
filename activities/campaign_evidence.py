"""A closed campaign's evidence bundle: built from the store, rendered, signed, kept; its hash in the ledger.

The report is built from the records, never from workflow state: the population with its provenance, every
item with its reviewer, the decision that counted (and every decision in ``decisions.jsonl``), defaults,
refused attempts and each revocation as it was read back. The bundle is signed with the worker's Ed25519
key (``GRANTFLOW_EVIDENCE_SIGNING_KEY``) and stored whole, so what the API serves later is byte for byte what
was signed; the manifest's SHA-256 goes to the ledger, tying the bundle to the chain. Without a key nothing is
written but a ledger entry saying why: an unsigned bundle is not evidence.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio import activity

from activities.campaign_base import CampaignBase, CampaignRef
from activities.campaign_report import report_files
from domain.campaign_decisions import ItemDecision, final_verdict
from domain.campaign_report import CampaignReport, ItemEvidence, Provenance
from domain.campaigns import CampaignItem
from store.evidence_bundle import manifest_sha256, signed_bundle


class EvidenceResult(BaseModel):
    written: bool
    manifest_sha256: str = ""
    reason: str = ""


class CampaignEvidence(CampaignBase):
    @activity.defn(name="campaign_evidence")
    async def evidence(self, inp: CampaignRef) -> EvidenceResult:
        if self._evidence_key is None:
            reason = "GRANTFLOW_EVIDENCE_SIGNING_KEY is not set: the evidence bundle was not written"
            await self._ledger(
                "campaign.evidence_not_written", inp.campaign_id, "evidence", {"reason": reason}
            )
            return EvidenceResult(written=False, reason=reason)
        report = await asyncio.to_thread(self._report, inp.campaign_id)
        head = report.ledger_head
        about = {
            "campaign_id": report.campaign_id,
            "workflow_id": report.workflow_id,
            "run_ids": list(report.run_ids),
            "ledger_head": {"seq": head[0], "hash": head[1]} if head else None,
            "generated_at": datetime.now(UTC).isoformat(),
        }
        bundle = signed_bundle(report_files(report), about=about, signing_key=self._evidence_key)
        await asyncio.to_thread(self._store.save_evidence, inp.campaign_id, bundle)
        digest = manifest_sha256(bundle)
        await self._ledger(
            "campaign.evidence",
            inp.campaign_id,
            "evidence",
            {"manifest_sha256": digest, "files": sorted(bundle), "items": len(report.items)},
        )
        return EvidenceResult(written=True, manifest_sha256=digest)

    def _report(self, campaign_id: str) -> CampaignReport:
        store = self._store
        record = store.campaign(campaign_id)
        assert record is not None, campaign_id
        decisions: dict[str, list[ItemDecision]] = {}
        every: list[ItemDecision] = []
        last_seq = 0
        while page := store.decisions(campaign_id, after_seq=last_seq):
            for _, decision in page:
                decisions.setdefault(decision.item_id, []).append(decision)
                every.append(decision)
            last_seq = page[-1][0]
        evidence: list[ItemEvidence] = []
        after = ""
        while items := store.items(campaign_id, after=after):
            for item in items:
                reviewer = item.assignment.reviewer
                evidence.append(
                    ItemEvidence(
                        item=CampaignItem.model_validate(
                            item.model_dump(include=set(CampaignItem.model_fields))
                        ),
                        reviewer=reviewer.name if reviewer is not None else None,
                        assigned_via=item.assignment.via,
                        assignment_notes=item.assignment.notes,
                        decision=final_verdict(decisions.get(item.id, [])),
                        revocation=item.revocation,
                    )
                )
            after = items[-1].id
        head = store.ledger_head()
        provenance = (
            Provenance.model_validate(json.loads(record.provenance_json))
            if record.provenance_json
            else Provenance(
                extracted_at=record.launched_at, sources=(), population_hash="", item_count=0, connections=()
            )
        )
        return CampaignReport(
            campaign_id=record.id,
            name=record.name,
            owner=record.owner,
            status=record.status.value,
            launched_at=record.launched_at,
            deadline=record.deadline or record.stage_closes_at or record.launched_at,
            closed_at=record.closed_at,
            spec_sha256=record.spec_sha256,
            workflow_id=record.workflow_id,
            run_ids=(activity.info().workflow_run_id,),
            ledger_head=(head.seq, head.hash) if head.seq else None,
            provenance=provenance,
            items=tuple(evidence),
            decisions=tuple(every),
            refused=tuple(store.refusals(campaign_id)),
        )
