"""Logging of the worker and the web server: text lines for people, or one JSON object per line for a log
pipeline (``GRANTFLOW_LOG_FORMAT=json``).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and, when the record
knows them, ``request_id``, ``campaign_id`` and ``workflow_id`` — passed by grantflow's own log calls as
``extra={"request_id": ...}``, or taken from the workflow and activity details the Temporal SDK's loggers
attach (``temporal_workflow`` / ``temporal_activity`` in the record's extras) — plus ``exception`` when
an exception is logged. Standard library only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
IDS = ("request_id", "campaign_id", "workflow_id")
# What the Temporal SDK's workflow and activity loggers put in a record's extras.
TEMPORAL_EXTRAS = ("temporal_workflow", "temporal_activity")


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
        for extra in TEMPORAL_EXTRAS:
            details = getattr(record, extra, None)
            if isinstance(details, Mapping):
                workflow_id = details.get("workflow_id")
                if workflow_id is not None:
                    line.setdefault("workflow_id", str(workflow_id))
                for key in ("workflow_type", "activity_type", "attempt"):
                    if details.get(key) is not None:
                        line.setdefault(key, details[key])
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
