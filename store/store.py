"""``Store``: grantflow's records in one SQL database (SQLite embedded, PostgreSQL in production).

One class a caller holds, put together from one part per concern — read the module named for what you look
for:

- :mod:`store.base` — the engine, migrations and transactions every part shares (thread-safe; several
  processes may use one database);
- :mod:`store.directory` — people, groups and the identity sync's state;
- :mod:`store.requests` — access requests and their one open slot per person and connection;
- :mod:`store.campaigns` — recertification campaigns: their items, decisions and review tasks;
- :mod:`store.campaign_handovers` — campaign items escalated to a manager or delegated within a stage;
- :mod:`store.campaign_triggers` — campaign specs triggered by directory events, and the events that fired;
- :mod:`store.ledger_records` — the evidence ledger's rows (its design: :mod:`store.ledger`) and, through
  :mod:`store.anchor_file`, its anchor file.

This module adds no behaviour of its own.
"""

from __future__ import annotations

from store.campaign_handovers import CampaignHandovers
from store.campaign_triggers import CampaignTriggerRecords
from store.campaigns import CampaignRecords
from store.directory import DirectoryRecords
from store.ledger_records import LedgerRecords
from store.requests import RequestRecords


class Store(
    DirectoryRecords,
    RequestRecords,
    CampaignRecords,
    CampaignHandovers,
    CampaignTriggerRecords,
    LedgerRecords,
):
    """Records of grantflow. See the module docstring of :mod:`store.ledger` for the ledger's design."""
