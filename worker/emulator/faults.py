"""Injected faults: responses the emulator sends in place of the normal ones, or delays before them."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

OPERATIONS = frozenset(
    {
        "listDocs",
        "getDoc",
        "listTables",
        "getTable",
        "listColumns",
        "getColumn",
        "listRows",
        "getRow",
        "whoami",
    }
)
LIST_OPERATIONS = frozenset({"listDocs", "listTables", "listColumns", "listRows"})
FAULT_ACTIONS = frozenset(
    {"repeat_page_token", "empty_page_with_token", "reject_page_token", "drop_connection"}
)
# Actions that concern a page token the client sent, so requests without one never match them.
TOKEN_ACTIONS = frozenset({"repeat_page_token", "reject_page_token"})
PAGE_ACTIONS = frozenset({"repeat_page_token", "empty_page_with_token", "reject_page_token"})


@dataclass(frozen=True)
class Fault:
    """A fault to apply to matching requests, in the order faults were injected.

    Attributes:
        endpoint: an operation id (``"listRows"``, ``"getTable"``, ``"listColumns"``,
            ``"whoami"``, ``"getDoc"``, ``"listTables"``, ``"listDocs"``, ``"getRow"``,
            ``"getColumn"``), ``"any"``, or else a regular expression searched in the URL path.
        status: the HTTP status to respond with. None responds normally, after ``delay`` and with
            ``action`` applied.
        headers: extra response headers, e.g. ``{"Retry-After": "3"}``.
        body: a dict or list is sent as JSON; str or bytes are sent as they are (an HTML page,
            truncated JSON). None with a status sends Coda's error body for that status.
        content_type: the Content-Type header; ``application/json; charset=utf-8`` when None.
        delay: seconds to wait before responding, e.g. longer than the client's read timeout.
        times: how many matching requests the fault applies to; 0 or None means every one.
        when_page_token: True matches only requests with a ``pageToken``, False only requests
            without one, None both.
        action: a special behaviour, or None.
            ``"repeat_page_token"`` returns the requested page with the ``nextPageToken`` the
            client sent, so a client that follows it loops.
            ``"empty_page_with_token"`` returns no items and a fresh token for the same position.
            ``"reject_page_token"`` returns 400 Invalid page token.
            ``"drop_connection"`` closes the socket without a response.
            The page actions match list operations only, and ``repeat_page_token`` and
            ``reject_page_token`` only requests that carry a ``pageToken``.
    """

    endpoint: str = "any"
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str | None = None
    delay: float = 0.0
    times: int | None = 1
    when_page_token: bool | None = None
    action: str | None = None

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in FAULT_ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {sorted(FAULT_ACTIONS)}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"fault status {self.status} is not an HTTP status code")
        if self.times is not None and self.times < 0:
            raise ValueError(f"fault times must be >= 0 or None, got {self.times}")
        if self.delay < 0:
            raise ValueError(f"fault delay must be >= 0 seconds, got {self.delay}")

    def matches(self, operation: str | None, path: str, has_page_token: bool) -> bool:
        """Return whether this fault applies to a request for ``operation`` at ``path``."""
        if not self._matches_endpoint(operation, path):
            return False
        if self.action in PAGE_ACTIONS and operation not in LIST_OPERATIONS:
            return False
        if self.action in TOKEN_ACTIONS and not has_page_token:
            return False
        return self.when_page_token is None or self.when_page_token == has_page_token

    def _matches_endpoint(self, operation: str | None, path: str) -> bool:
        if self.endpoint == "any":
            return True
        if self.endpoint in OPERATIONS:
            return self.endpoint == operation
        return re.search(self.endpoint, path) is not None


@dataclass
class _ArmedFault:
    fault: Fault
    # None means the fault applies forever.
    remaining: int | None


class FaultQueue:
    """Injected faults with the number of uses each has left."""

    def __init__(self) -> None:
        self._armed: list[_ArmedFault] = []

    def add(self, fault: Fault) -> None:
        self._armed.append(_ArmedFault(fault, fault.times or None))

    def clear(self) -> None:
        self._armed.clear()

    def pending(self) -> list[Fault]:
        """Return the faults that still have uses left, in matching order."""
        return [armed.fault for armed in self._armed]

    def take(self, operation: str | None, path: str, has_page_token: bool) -> Fault | None:
        """Return the first fault matching the request and use up one of its applications."""
        for armed in self._armed:
            if not armed.fault.matches(operation, path, has_page_token):
                continue

            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)

            logger.debug("applying fault %r to %s", armed.fault, path)
            return armed.fault
        return None
