"""The server's own log: one JSON object per line on stderr, for the ``orchestrator.*`` loggers.

A record's message becomes ``"message"``; the structured fields a caller passes as
``extra={"fields": {...}}`` are merged in. gunicorn's loggers are left as they are.
"""

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

ROOT = "orchestrator"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, stream: IO[str] | None = None) -> None:
    """Send the ``orchestrator`` loggers, at ``level`` and above, to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    # A line per request: skip the record fields no format here shows (the caller's file and line,
    # thread and multiprocessing names), as the logging HOWTO's "Optimization" section describes.
    # gunicorn's own format shows the process id, which stays.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    logger = logging.getLogger(ROOT)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
