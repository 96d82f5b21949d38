"""Pure retry decisions for Coda requests: which responses to retry and how long to wait.

Nothing here sleeps or sends; the client calls `RetryPolicy.delay` and acts on the result,
so the rules can be tested without a clock or a server.
"""

from __future__ import annotations

import email.utils
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Retry limits of a single request after 429, 5xx and network errors."""

    max_attempts: int = 6
    base_delay: float = 1.0  # seconds, doubled after each failed attempt
    max_delay: float = 60.0  # seconds, the cap of one backoff step
    max_total_delay: float = 300.0  # seconds a request may spend waiting in all

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return the wait in seconds after failed attempt number *attempt* (1-based).

        Full jitter: a uniform draw from [base/2, min(cap, base * 2**(attempt-1))], so that
        jobs which hit a limit together do not retry together.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return rng.uniform(min(self.base_delay / 2, ceiling), ceiling)

    def delay(
        self,
        *,
        attempt: int,
        waited: float,
        retry_after: float | None,
        rng: random.Random,
    ) -> float | None:
        """Return seconds to wait before the next attempt, or None to give up.

        *attempt* is the number of attempts made so far and *waited* the seconds already
        spent waiting for this request. A server's `Retry-After` wins over the backoff, but
        never beyond `max_total_delay`.
        """
        if attempt >= self.max_attempts:
            return None
        wait = retry_after if retry_after is not None else self.backoff(attempt, rng)
        if waited + wait > self.max_total_delay:
            return None
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Read a `Retry-After` header given in seconds or as an HTTP date; None when absent or odd."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
