"""The server's own log: one JSON object per line on stderr, for the ``orchestrator.*`` loggers.

A record's message becomes ``"message"``; the structured fields a caller passes as
``extra={"fields": {...}}`` are merged in. gunicorn's loggers are left as they are.

Lines are formatted and written by a background thread (:class:`BufferedLines`): info lines
within 50 ms, warnings and errors at once.
"""

import logging
import sys
import threading
from collections import deque
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


class BufferedLines(logging.Handler):
    """Queues records; a background thread formats and writes them, every `interval`.

    The caller (the event loop, for request lines) only appends the record to a deque: no
    handler lock, no formatting and no write() of its own. Formatting there cost the loop
    about 2% of its time per write under load (a py-spy profile of 32 writing clients). A
    record's fields must not change after it is logged (ours are built for the call).
    With the usual lock and a write per line, 32 busy request threads queued on each other and on
    the GIL behind every log line: bench/decompose.py measured ~300 us of server CPU and 10
    context switches per request for that line. Warnings and errors are written at once, with
    whatever is queued before them, so their order holds.
    """

    def __init__(self, stream: IO[str], interval: float = 0.05) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._records: deque[logging.LogRecord] = deque()
        self._writing = threading.Lock()  # one writer at a time keeps lines in order
        self._stopped = threading.Event()
        threading.Thread(target=self._run, name="log-writer", daemon=True).start()

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        self.emit(record)  # without the handler lock: deque.append is atomic
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        with self._writing:
            lines = []
            while self._records:
                record = self._records.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # stderr closed or gone: nothing else to tell it to
                    pass

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()


def configure(level: str, stream: IO[str] | None = None) -> None:
    """Send the ``orchestrator`` loggers, at ``level`` and above, to ``stream`` (stderr) as JSON lines."""
    handler = BufferedLines(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    # A line per request: skip the record fields no format here shows (the caller's file and line,
    # thread and multiprocessing names), as the logging HOWTO's "Optimization" section describes.
    # gunicorn's own format shows the process id, which stays.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logger = logging.getLogger(ROOT)
    for old in logger.handlers:
        old.close()
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
