"""The response the emulator sends for one request, before it is written to the socket."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from worker.emulator.payloads import error_body

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass
class Reply:
    """A status, headers and body; ``drop_connection`` closes the socket without a response."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_CONTENT_TYPE
    drop_connection: bool = False

    def encode(self) -> bytes:
        """Return the body bytes: str and bytes as they are, anything else as compact JSON."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_reply(status: int, message: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    """Build a reply carrying Coda's three-field error body."""
    return Reply(status, error_body(status, message), headers=dict(headers or {}))
