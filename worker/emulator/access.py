"""Token authentication, token scopes and the per-user rate limit."""

from __future__ import annotations

import bisect
import logging

from worker.emulator.model import ApiToken
from worker.emulator.routes import Route

logger = logging.getLogger(__name__)


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def scope_allows(token: ApiToken, route: Route) -> bool:
    """Return whether a token's restriction lets it call ``route``.

    A doc-scoped token reaches only ``/docs/{itsDoc}…``; a table-scoped token reaches only
    ``/docs/{itsDoc}/tables/{itsTable}…`` with the table given by id. ``/whoami`` is open to
    every live token.
    """
    if token.scope is None or route.operation == "whoami":
        return True
    if route.doc_id is None or route.doc_id != token.scope[1]:
        return False
    if token.scope[0] == "doc":
        return True
    return route.table is not None and route.table == token.scope[2]


class RateLimiter:
    """A sliding-window limit on requests per user, shared by all of that user's tokens."""

    def __init__(self) -> None:
        # Arrival times per user, kept sorted because handler threads can reach the limiter in
        # a different order than their requests arrived.
        self._hits: dict[str, list[float]] = {}

    def allow(self, user: str, limit: tuple[int, float] | None, now: float) -> bool:
        """Count a request that arrived at ``now`` (seconds) unless ``limit`` is already reached.

        ``limit`` is ``(max_requests, window_seconds)``; None allows everything. A rejected
        request is not counted, so a client that waits out the window gets through.
        """
        if limit is None:
            return True

        max_requests, window = limit
        hits = self._hits.setdefault(user, [])
        del hits[: bisect.bisect_right(hits, now - window)]

        in_window = bisect.bisect_right(hits, now)
        if in_window >= max_requests:
            return False
        bisect.insort(hits, now)
        return True
