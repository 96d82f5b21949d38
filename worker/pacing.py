"""Proactive request pacing: one sliding-window budget per Coda user.

Coda counts reads per user across every token and doc of that user (about 100 reads per
6 seconds in the published limits), so jobs whose tokens belong to one user must share one
budget. `Pacer.acquire` blocks until the user's window has room.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from worker.errors import RunInterrupted, SourceTimeout

logger = logging.getLogger(__name__)


class SlidingWindow:
    """At most *limit* events in any *window* seconds; pure apart from its own state."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        """Return how long to wait before the next event may happen at *now*."""
        while self._events and self._events[0] <= now - self.window:
            self._events.popleft()
        if len(self._events) < self.limit:
            return 0.0
        return self._events[0] + self.window - now

    def record(self, now: float) -> None:
        """Count an event that happens at *now*."""
        self._events.append(now)


class Pacer:
    """A thread-safe sliding window shared by every client of one Coda user.

    The window is padded by `WINDOW_MARGIN`: the server starts its window when a request
    arrives, a little after we count it, so an unpadded window lets the 101st request in early.
    """

    WINDOW_MARGIN = 0.05  # fraction of the window, at least MIN_MARGIN seconds
    MIN_MARGIN = 0.25  # seconds

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        padded = window + max(self.MIN_MARGIN, window * self.WINDOW_MARGIN)
        self._window = SlidingWindow(limit, padded)
        self._lock = threading.Lock()
        self._clock = clock
        self.waited = 0.0  # seconds spent waiting in all, for measurements

    def acquire(
        self,
        *,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
    ) -> None:
        """Block until one more request fits the budget, then count it."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._window.wait_time(now)
                if wait <= 0:
                    self._window.record(now)
                    return
            if deadline is not None and now + wait > deadline:
                raise SourceTimeout("the run's deadline passed while waiting for the rate limit")
            self.waited += wait
            if cancel is not None:
                if cancel.wait(wait):
                    raise RunInterrupted("stopped while waiting for the rate limit")
            else:
                time.sleep(wait)

    def charge(self) -> None:
        """Count a request that was sent without waiting for this budget."""
        with self._lock:
            self._window.record(self._clock())


class PacerRegistry:
    """Hands out one `Pacer` per Coda user, keyed by whatever identifies the user."""

    def __init__(self, limit: int = 100, window: float = 6.0) -> None:
        self.limit = limit
        self.window = window
        self._pacers: dict[str, Pacer] = {}
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def for_user(self, user: str) -> Pacer:
        """Return the shared pacer of *user*, creating it on first use."""
        with self._lock:
            pacer = self._pacers.get(user)
            if pacer is None:
                pacer = self._pacers[user] = Pacer(self.limit, self.window)
            return pacer

    def user_of(self, token_fingerprint: str) -> str | None:
        """Return the cached Coda user of a token, or None when it was never looked up."""
        with self._lock:
            return self._users.get(token_fingerprint)

    def remember_user(self, token_fingerprint: str, user: str) -> None:
        """Cache which Coda user a token belongs to."""
        with self._lock:
            self._users[token_fingerprint] = user
