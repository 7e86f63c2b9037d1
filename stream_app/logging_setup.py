"""Worker log format: mode's coloured text (default) or one JSON object per line.

``STREAMREC_LOG_FORMAT=json`` is for log shippers (Loki, Elasticsearch, Cloud Logging):
every record becomes ``{"time", "level", "logger", "message", …}`` on stdout, with the
traceback under ``"exception"`` and any ``extra=`` fields kept as keys. streamrec logs
per micro-batch or per timer run, never per event, and names users only by id.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from stream_app.settings import Settings

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as a single-line JSON object."""

    def __init__(self, service: str = "streamrec") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def worker_logging_config(settings: Settings) -> dict[str, Any] | None:
    """A ``logging.config.dictConfig`` for the Faust worker; ``None`` keeps mode's text logs."""
    if settings.log_format != "json":
        return None
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": JsonFormatter, "service": settings.app_id},
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
                "level": level,
            },
        },
        "root": {"level": level, "handlers": ["stdout"]},
    }
