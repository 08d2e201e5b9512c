"""Campaign items changing hands within a stage: escalations (a reviewer's pending items reach their manager,
who may then decide them too) and delegations (a reviewer hands items to another person, who reviews them
instead).

An escalation is kept per item and stage with the reviewer it was escalated from, and it holds only while the
item stays with that reviewer in that stage: an item delegated or re-routed afterwards (a mover, a leaver)
belongs to its new reviewer alone. A delegation rewrites the item's assignment (``via = "delegated"``, the
delegator named in its notes), under one write lock that first checks that every item is still open in the
open stage and still the delegator's — all of them move, or none. Who may escalate or delegate, and to whom,
is decided by the callers (``activities/campaign_handovers.py``, ``web/campaign_service.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, insert, select, update

import store.schema as schema
from domain.campaign_state import CampaignStatus, ItemOutcome
from domain.campaigns import Assignment
from domain.identity import PersonRef
from store.base import StoreBase
from store.campaigns import PAGE_LIMIT, CampaignConflict, StoredItem, _assignment_columns, _stored_item


class CampaignHandovers(StoreBase):
    """The escalation and delegation part of :class:`store.Store`."""

    def record_escalation(
        self,
        campaign_id: str,
        stage: int,
        reviewer_id: str,
        escalated_to: PersonRef,
        item_ids: Sequence[str],
        at: datetime,
    ) -> int:
        """Record that ``item_ids`` (the reviewer's pending items) were escalated to ``escalated_to``; items
        escalated already in this stage are left as they are (a retried escalation). Returns how many were
        new."""
        e = schema.campaign_escalations
        ids = list(item_ids)
        new = 0
        with self._write() as conn:
            for start in range(0, len(ids), PAGE_LIMIT):
                chunk = ids[start : start + PAGE_LIMIT]
                present = set(
                    conn.execute(
                        select(e.c.item_id).where(
                            e.c.campaign_id == campaign_id, e.c.stage == stage, e.c.item_id.in_(chunk)
                        )
                    ).scalars()
                )
                rows = [
                    {
                        "campaign_id": campaign_id,
                        "stage": stage,
                        "item_id": item_id,
                        "reviewer_id": reviewer_id,
                        "escalated_to_id": escalated_to.id,
                        "escalated_to_email": escalated_to.email,
                        "escalated_at": at,
                    }
                    for item_id in chunk
                    if item_id not in present
                ]
                if rows:
                    conn.execute(insert(e), rows)
                new += len(rows)
        return new

    def escalations(self, campaign_id: str, item_ids: Sequence[str]) -> dict[str, PersonRef]:
        """Item id → whom its escalation reached, for the items whose escalation still holds (the item is
        open, in the stage it was escalated in, with the reviewer it was escalated from)."""
        e, i = schema.campaign_escalations, schema.campaign_items
        ids = list(item_ids)
        found: dict[str, PersonRef] = {}
        for start in range(0, len(ids), PAGE_LIMIT):
            with self._read() as conn:
                rows = conn.execute(
                    select(e.c.item_id, e.c.escalated_to_id, e.c.escalated_to_email)
                    .join(i, and_(i.c.campaign_id == e.c.campaign_id, i.c.id == e.c.item_id))
                    .where(
                        e.c.campaign_id == campaign_id,
                        e.c.item_id.in_(ids[start : start + PAGE_LIMIT]),
                        i.c.stage == e.c.stage,
                        i.c.reviewer_id == e.c.reviewer_id,
                        i.c.outcome == ItemOutcome.OPEN.value,
                    )
                ).all()
            found.update(
                (r.item_id, PersonRef(id=r.escalated_to_id, email=r.escalated_to_email)) for r in rows
            )
        return found

    def escalated_items(
        self, campaign_id: str, stage: int, person_id: str, *, after: str = "", limit: int = PAGE_LIMIT
    ) -> list[StoredItem]:
        """A page (by item id) of the open items of ``stage`` escalated to ``person_id`` whose escalation
        still holds."""
        e, i = schema.campaign_escalations, schema.campaign_items
        query = (
            select(i)
            .join(e, and_(e.c.campaign_id == i.c.campaign_id, e.c.item_id == i.c.id))
            .where(
                e.c.campaign_id == campaign_id,
                e.c.stage == stage,
                e.c.escalated_to_id == person_id,
                i.c.stage == stage,
                i.c.reviewer_id == e.c.reviewer_id,
                i.c.outcome == ItemOutcome.OPEN.value,
                # paged on the escalation's item id (the same id): the page is one range of
                # ix_campaign_escalations_to, not a walk through every item of the campaign
                e.c.item_id > after,
            )
            .order_by(e.c.item_id)
            .limit(min(limit, PAGE_LIMIT))
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_stored_item(r) for r in rows]

    def delegate_items(
        self,
        campaign_id: str,
        stage: int,
        delegator_id: str,
        assignments: dict[str, Assignment],
    ) -> None:
        """Give each item its new assignment (the delegate), all or none: the campaign must be open in
        ``stage`` and every item still open there and reviewed by ``delegator_id``; otherwise nothing is
        changed and :class:`CampaignConflict` says why. A decision already made on an item stays (its
        delegate may change it until the stage closes)."""
        c, i = schema.campaigns, schema.campaign_items
        with self._write() as conn:
            campaign = conn.execute(select(c).where(c.c.id == campaign_id)).first()
            if campaign is None:
                raise CampaignConflict(f"campaign {campaign_id} does not exist")
            if CampaignStatus(campaign.status) is not CampaignStatus.OPEN:
                raise CampaignConflict(
                    f"campaign {campaign_id} is {campaign.status}: nothing can be delegated"
                )
            if campaign.stage != stage or not campaign.stage_open:
                raise CampaignConflict(
                    f"stage {stage + 1} of campaign {campaign_id} is closed; "
                    "its items can no longer be delegated"
                )
            for item_id, assignment in assignments.items():
                changed = conn.execute(
                    update(i)
                    .where(
                        i.c.campaign_id == campaign_id,
                        i.c.id == item_id,
                        i.c.stage == stage,
                        i.c.reviewer_id == delegator_id,
                        i.c.outcome == ItemOutcome.OPEN.value,
                    )
                    .values(**_assignment_columns(assignment))
                ).rowcount
                if changed != 1:
                    # The transaction is rolled back: no item of this delegation moves.
                    raise CampaignConflict(
                        f"item {item_id} is no longer open in stage {stage + 1} with its reviewer; "
                        "nothing was delegated"
                    )
