"""Logging of the worker and the web server: text lines for people, or one JSON object per line for a log
pipeline (``GRANTFLOW_LOG_FORMAT=json``).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and, when the record
knows them, ``request_id``, ``campaign_id`` and ``workflow_id`` — passed by grantflow's own log calls as
``extra={"request_id": ...}``, or taken from the workflow and activity details the Temporal SDK's loggers
attach (``temporal_workflow`` / ``temporal_activity`` in the record's extras) or, for a plain logger
called inside an activity (the integrations log that way), from the running activity itself — plus
``exception`` when an exception is logged.

A record logged while the web app answers a request for one request or campaign
(``/api/v1/requests/{request_id}/approve``, ``/api/v1/campaigns/{campaign_id}``…) gets that id from the
route's path parameters (:func:`configuration.log_context.serving`). A record without an explicit id gets
one from its workflow: an access request's workflow id *is* the request id, and a campaign's workflow id
is ``campaign-<campaign id>`` (scheduled runs name their workflow after the schedule, so their activities
pass ``campaign_id`` explicitly). A log pipeline can then follow one request or one campaign across the
web server, the worker and every activity attempt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from temporalio import activity

from configuration.log_context import ids_from_route

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
IDS = ("request_id", "campaign_id", "workflow_id")
# What the Temporal SDK's workflow and activity loggers put in a record's extras.
TEMPORAL_EXTRAS = ("temporal_workflow", "temporal_activity")
# Workflow types whose workflow id names the request or the campaign (see the module docstring).
REQUEST_WORKFLOWS = frozenset({"AccessRequestWorkflow"})
CAMPAIGN_WORKFLOWS = frozenset({"CampaignWorkflow"})
CAMPAIGN_PREFIX = "campaign-"
SCHEDULED_CAMPAIGN_PREFIX = "campaign-schedule-"  # a scheduled run's id names its schedule, not the campaign


def _running_activity() -> dict[str, Any] | None:
    """The current activity's details, as the SDK's activity logger would attach them; None outside one."""
    if not activity.in_activity():
        return None
    info = activity.info()
    return {
        "workflow_id": info.workflow_id,
        "workflow_type": info.workflow_type,
        "activity_type": info.activity_type,
        "attempt": info.attempt,
    }


def _ids_from_workflow(line: dict[str, Any]) -> None:
    workflow_id, workflow_type = line.get("workflow_id"), line.get("workflow_type")
    if not workflow_id:
        return
    if workflow_type in REQUEST_WORKFLOWS:
        line.setdefault("request_id", workflow_id)
    elif (
        workflow_type in CAMPAIGN_WORKFLOWS
        and workflow_id.startswith(CAMPAIGN_PREFIX)
        and not workflow_id.startswith(SCHEDULED_CAMPAIGN_PREFIX)
    ):
        line.setdefault("campaign_id", workflow_id.removeprefix(CAMPAIGN_PREFIX))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in IDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        found = [getattr(record, extra, None) for extra in TEMPORAL_EXTRAS]
        if not any(isinstance(details, Mapping) for details in found):
            found = [_running_activity()]
        for details in found:
            if isinstance(details, Mapping):
                workflow_id = details.get("workflow_id")
                if workflow_id is not None:
                    line.setdefault("workflow_id", str(workflow_id))
                for key in ("workflow_type", "activity_type", "attempt"):
                    if details.get(key) is not None:
                        line.setdefault(key, details[key])
        ids_from_route(line)
        _ids_from_workflow(line)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO, log_format: Literal["text", "json"] = "text") -> None:
    """Set up the root logger of a grantflow process: ``log_format`` text or json, on standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are about its own plugins
