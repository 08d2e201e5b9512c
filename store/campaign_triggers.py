"""Triggered campaign specs and the events that fired them.

A registered spec is kept by its trigger id (from its name: registering the same name replaces it). Each
event that fires a spec is recorded *before* its campaign's workflow is started, keyed by the campaign id
(``domain/campaign_triggers.py`` derives it from spec, person and change): recording the same firing again
returns the first record, so a retried sync never makes a second one, and a firing whose start failed stays
``pending`` until a later sync starts it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

import store.schema as schema
from domain.campaign_triggers import FiringStatus, RegisteredTrigger, TriggerFiring
from store.base import StoreBase

MAX_ERROR = 2000


class CampaignTriggerRecords(StoreBase):
    """The triggered-campaign part of :class:`store.Store`."""

    def put_campaign_trigger(self, trigger: RegisteredTrigger) -> bool:
        """Register ``trigger``, replacing one of the same id; True when it replaced one."""
        t = schema.campaign_triggers
        with self._write() as conn:
            existed = conn.execute(select(t.c.trigger_id).where(t.c.trigger_id == trigger.trigger_id)).first()
            if existed is not None:
                conn.execute(
                    update(t).where(t.c.trigger_id == trigger.trigger_id).values(**trigger.model_dump())
                )
            else:
                conn.execute(insert(t).values(**trigger.model_dump()))
        return existed is not None

    def campaign_triggers(self, event: str | None = None) -> list[RegisteredTrigger]:
        t = schema.campaign_triggers
        query = select(t).order_by(t.c.trigger_id)
        if event is not None:
            query = query.where(t.c.event == event)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [RegisteredTrigger.model_validate(dict(r._mapping)) for r in rows]

    def remove_campaign_trigger(self, trigger_id: str) -> bool:
        """Stop firing ``trigger_id`` (campaigns it opened run on); False when it was not registered."""
        t = schema.campaign_triggers
        with self._write() as conn:
            return conn.execute(delete(t).where(t.c.trigger_id == trigger_id)).rowcount > 0

    def record_trigger_firing(self, firing: TriggerFiring) -> TriggerFiring:
        """Record a firing; the same campaign id again returns the stored firing unchanged."""
        f = schema.campaign_trigger_firings
        with self._write() as conn:
            row = conn.execute(select(f).where(f.c.campaign_id == firing.campaign_id)).first()
            if row is not None:
                return _firing(row._mapping)
            values = firing.model_dump(exclude={"change"})
            conn.execute(insert(f).values(**values, change_json=json.dumps(firing.change, sort_keys=True)))
        return firing

    def trigger_firing(self, campaign_id: str) -> TriggerFiring | None:
        f = schema.campaign_trigger_firings
        with self._read() as conn:
            row = conn.execute(select(f).where(f.c.campaign_id == campaign_id)).first()
        return _firing(row._mapping) if row is not None else None

    def trigger_firing_started(self, campaign_id: str, at: datetime) -> None:
        f = schema.campaign_trigger_firings
        with self._write() as conn:
            conn.execute(
                update(f)
                .where(f.c.campaign_id == campaign_id)
                .values(
                    status=FiringStatus.STARTED.value, attempts=f.c.attempts + 1, error=None, updated_at=at
                )
            )

    def trigger_firing_failed(self, campaign_id: str, error: str, at: datetime) -> None:
        f = schema.campaign_trigger_firings
        with self._write() as conn:
            conn.execute(
                update(f)
                .where(f.c.campaign_id == campaign_id, f.c.status == FiringStatus.PENDING.value)
                .values(attempts=f.c.attempts + 1, error=error[:MAX_ERROR], updated_at=at)
            )

    def pending_trigger_firings(self, limit: int = 100) -> list[TriggerFiring]:
        """Firings whose campaign has not started yet, oldest first."""
        f = schema.campaign_trigger_firings
        query = (
            select(f)
            .where(f.c.status == FiringStatus.PENDING.value)
            .order_by(f.c.fired_at, f.c.campaign_id)
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_firing(r._mapping) for r in rows]


def _firing(row: Any) -> TriggerFiring:
    values = dict(row)
    values["change"] = json.loads(values.pop("change_json"))
    return TriggerFiring.model_validate(values)
