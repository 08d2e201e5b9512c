"""grantflow's Prometheus metrics (``prometheus_client``): what operators graph and alert on.

Every business event grantflow counts is already an entry of the evidence ledger, so the metrics are
derived from ledger entries in one place, :meth:`GrantflowMetrics.observe_entry`, which the store calls
once per *new* entry after its commit (:meth:`store.Store.observe_ledger`). A process counts what it
appended itself: the worker the workflow and activity events, the web app the decisions and refusals
arriving through it; Prometheus sums the processes.

Metrics (all prefixed ``grantflow_``):

- ``ledger_entries_total{kind}`` — every ledger entry, by kind;
- ``decisions_total{verdict,channel,outcome}`` — approvals and denials of requests (``approve``/``deny``)
  and campaign decisions (``keep``/``revoke``, one per item), ``outcome`` ``recorded`` or ``refused``;
- ``grants_total`` — grants written in the gateway (``grant.written``);
- ``revocations_total{result}`` — ``revoked`` (a request's access ended, a campaign item or a standing
  membership revoked) or ``failed`` (a campaign revocation left to a remediation record);
- ``failures_total{kind}`` — what needs a person: escalations, failed requests, remediation, an anchor
  that could not be written; ``kind`` is the ledger kind (``revocation.escalated``, ``request.failed``…);
- ``expiry_to_revocation_seconds`` — for requests that ended ``expired``, from the scheduled expiry to
  the verified revocation;
- ``http_requests_total{route,status}`` — the web app's requests, by route template (never the raw
  path, whose ids would make one series per request).

Metrics are observability, never evidence: :meth:`observe_entry` ignores what it cannot read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger("grantflow.metrics")


class ObservedEntry(Protocol):
    """What the metrics read of a ledger entry (:class:`store.ledger.LedgerEntry` has it)."""

    @property
    def kind(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


REQUEST_VERDICTS = {"decision.approved": "approve", "decision.denied": "deny"}
REVOCATIONS = {
    "request.ended": "revoked",
    "campaign.item_revoked": "revoked",
    "standing_access.revoked": "revoked",
    "campaign.item_failed": "failed",
}
FAILURES = frozenset(
    {
        "request.failed",
        "request.refused",  # the access check refused the grant: the request ends FAILED
        "revocation.escalated",
        "sessions.kill_failed",
        "grant.renewal_failed",
        "campaign.item_failed",  # a remediation record says what a person must do
        "campaign.evidence_not_written",
        "gateway.sync_escalated",
        "hoop.review_reject_failed",
        "directory.sync_blocked",
        "ledger.anchor_failed",
    }
)

# Expiry lags from a second (a timer firing on time) to hours (a gateway down for a while).
LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0)


class GrantflowMetrics:
    """The metrics in one registry (tests use their own; processes use :data:`METRICS`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.ledger_entries = Counter(
            "grantflow_ledger_entries", "Entries appended to the evidence ledger", ["kind"], registry=registry
        )
        self.decisions = Counter(
            "grantflow_decisions",
            "Decisions on requests (approve/deny) and campaign items (keep/revoke), recorded or refused",
            ["verdict", "channel", "outcome"],
            registry=registry,
        )
        self.grants = Counter("grantflow_grants", "Grants written in the gateway", registry=registry)
        self.revocations = Counter(
            "grantflow_revocations", "Revocations, by result (revoked/failed)", ["result"], registry=registry
        )
        self.failures = Counter(
            "grantflow_failures",
            "Escalations, failed requests and remediation needing a person, by ledger kind",
            ["kind"],
            registry=registry,
        )
        self.expiry_lag = Histogram(
            "grantflow_expiry_to_revocation_seconds",
            "From a grant's scheduled expiry to its verified revocation (requests that ended expired)",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.http_requests = Counter(
            "grantflow_http_requests",
            "HTTP requests of the web app, by route template and status",
            ["route", "status"],
            registry=registry,
        )

    def observe_entry(self, entry: ObservedEntry) -> None:
        """Count one new ledger entry (the store's observer; see the module docstring)."""
        kind, data = entry.kind, entry.data
        self.ledger_entries.labels(kind=kind).inc()
        if kind in REQUEST_VERDICTS:
            self.decisions.labels(REQUEST_VERDICTS[kind], entry.channel, "recorded").inc()
        elif kind == "decision.refused":
            self.decisions.labels(str(data.get("verdict") or "unknown"), entry.channel, "refused").inc()
        elif kind == "campaign.decided":
            for decision in data.get("decisions") or ():
                if isinstance(decision, Mapping):
                    verdict = str(decision.get("verdict") or "unknown")
                    self.decisions.labels(verdict, entry.channel, "recorded").inc()
        elif kind == "campaign.decision_refused":
            self.decisions.labels(str(data.get("verdict") or "unknown"), entry.channel, "refused").inc()
        elif kind == "grant.written":
            self.grants.inc()
        if kind in REVOCATIONS:
            self.revocations.labels(result=REVOCATIONS[kind]).inc()
        if kind in FAILURES:
            self.failures.labels(kind=kind).inc()
        if kind == "request.ended" and data.get("end_reason") == "expired":
            lag = expiry_lag_seconds(entry)
            if lag is not None:
                self.expiry_lag.observe(lag)

    def observe_http(self, route: str, status: int) -> None:
        self.http_requests.labels(route=route, status=str(status)).inc()


def expiry_lag_seconds(entry: ObservedEntry) -> float | None:
    """Seconds from the ``expires_at`` recorded in a ``request.ended`` entry to its ``ended_at`` (the
    workflow's time once the revocation was verified; the entry's own time when absent); None when the
    entry has no readable expiry (entries written before it was recorded)."""
    expires_at = _moment(entry.data.get("expires_at"))
    if expires_at is None:
        return None
    ended_at = _moment(entry.data.get("ended_at")) or entry.at
    return max(0.0, (ended_at - expires_at).total_seconds())


def _moment(raw: object) -> datetime | None:
    """A timezone-aware ISO 8601 time, else None."""
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


METRICS = GrantflowMetrics(REGISTRY)
"""The metrics of this process, in prometheus_client's default registry (with its process and Python
collectors), served by the web app's ``/metrics`` and the worker's metrics port."""


class MetricsServer:
    """``registry`` in Prometheus text format on ``addr:port``, served from a daemon thread until
    :meth:`close` (the worker's ``GRANTFLOW_METRICS_PORT``). ``port=0`` picks a free port (:attr:`port`).
    ``OSError`` when the address cannot be bound."""

    def __init__(self, port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> None:
        self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        self.port = int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
