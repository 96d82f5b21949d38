from __future__ import annotations

import threading

import pytest

from worker.errors import RunInterrupted, SourceTimeout
from worker.pacing import Pacer, PacerRegistry, SlidingWindow


class FakeClock:
    """A monotonic clock that moves only when a test or `ClockAdvancingEvent` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class ClockAdvancingEvent(threading.Event):
    """A cancel event whose `wait` advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.clock.now += timeout
        return self.is_set()


def full_pacer(clock: FakeClock, limit: int = 2, window: float = 4.0) -> Pacer:
    """Return a pacer on *clock* whose window already contains *limit* requests at the current time."""
    pacer = Pacer(limit, window, clock=clock)
    for _ in range(limit):
        pacer.acquire()
    return pacer


# SlidingWindow.


def test_sliding_window_admits_limit() -> None:
    window = SlidingWindow(limit=3, window=10.0)
    waits = []
    for now in (0.0, 1.0, 2.0):
        waits.append(window.wait_time(now))
        window.record(now)

    assert waits == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(2.0, 8.0, id="right-after-third"),
        pytest.param(5.0, 5.0, id="mid-window"),
        pytest.param(9.75, 0.25, id="just-before-expiry"),
        pytest.param(10.0, 0.0, id="oldest-expires-exactly"),
        pytest.param(25.0, 0.0, id="all-expired"),
    ],
)
def test_sliding_window_exact_wait(now: float, expected: float) -> None:
    window = SlidingWindow(limit=3, window=10.0)
    for event in (0.0, 1.0, 2.0):
        window.record(event)

    assert window.wait_time(now) == expected


def test_sliding_window_waits_for_second_oldest() -> None:
    window = SlidingWindow(limit=2, window=10.0)
    for event in (0.0, 4.0, 10.0):
        window.record(event)

    assert window.wait_time(10.0) == 4.0


# Pacer. A 4 s window gets the minimum margin of 0.25 s, so its padded length 4.25 s is exact.


@pytest.mark.parametrize(
    ("window", "padded"),
    [
        pytest.param(4.0, 4.25, id="minimum-margin"),
        pytest.param(6.0, 6.3, id="five-percent"),
        pytest.param(60.0, 63.0, id="long-window"),
    ],
)
def test_pacer_pads_window(window: float, padded: float) -> None:
    clock = FakeClock()
    pacer = full_pacer(clock, limit=1, window=window)
    cancel = ClockAdvancingEvent(clock)

    pacer.acquire(cancel=cancel)

    assert cancel.waits == [pytest.approx(padded)]


def test_pacer_admits_without_waiting() -> None:
    clock = FakeClock()
    cancel = ClockAdvancingEvent(clock)
    pacer = full_pacer(clock, limit=1)
    clock.now += 4.25

    pacer.acquire(cancel=cancel)

    assert cancel.waits == []
    assert pacer.waited == 0.0


def test_pacer_waits_exact_time() -> None:
    clock = FakeClock()
    pacer = full_pacer(clock, limit=2)
    clock.now += 1.5
    cancel = ClockAdvancingEvent(clock)

    pacer.acquire(cancel=cancel)

    assert cancel.waits == [2.75]
    assert pacer.waited == 2.75
    assert clock.now == 1004.25


def test_pacer_counts_waited_request() -> None:
    clock = FakeClock()
    pacer = full_pacer(clock, limit=1)
    cancel = ClockAdvancingEvent(clock)

    pacer.acquire(cancel=cancel)
    pacer.acquire(cancel=cancel)

    assert cancel.waits == [4.25, 4.25]


def test_pacer_charge_counts_request() -> None:
    clock = FakeClock()
    pacer = Pacer(1, 4.0, clock=clock)
    cancel = ClockAdvancingEvent(clock)

    pacer.charge()
    pacer.acquire(cancel=cancel)

    assert cancel.waits == [4.25]


def test_pacer_cancel_during_wait() -> None:
    clock = FakeClock()
    pacer = full_pacer(clock)
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(RunInterrupted, match="rate limit"):
        pacer.acquire(cancel=cancel)


def test_pacer_cancel_ignored_with_room() -> None:
    clock = FakeClock()
    pacer = Pacer(1, 4.0, clock=clock)
    cancel = threading.Event()
    cancel.set()

    pacer.acquire(cancel=cancel)

    assert pacer.waited == 0.0


def test_pacer_deadline_passes_during_wait() -> None:
    clock = FakeClock()
    pacer = full_pacer(clock)
    cancel = ClockAdvancingEvent(clock)

    with pytest.raises(SourceTimeout, match="deadline"):
        pacer.acquire(cancel=cancel, deadline=clock() + 4.0)

    assert cancel.waits == []


def test_pacer_deadline_exactly_at_slot() -> None:
    clock = FakeClock()
    pacer = full_pacer(clock)
    cancel = ClockAdvancingEvent(clock)

    pacer.acquire(cancel=cancel, deadline=clock() + 4.25)

    assert cancel.waits == [4.25]


# PacerRegistry.


def test_registry_same_user_same_pacer() -> None:
    registry = PacerRegistry()

    assert registry.for_user("user-1") is registry.for_user("user-1")


def test_registry_two_users_two_pacers() -> None:
    registry = PacerRegistry()

    assert registry.for_user("user-1") is not registry.for_user("user-2")


def test_registry_pacer_uses_limit() -> None:
    registry = PacerRegistry(limit=1, window=60.0)
    pacer = registry.for_user("user-1")
    cancel = threading.Event()
    cancel.set()
    pacer.acquire(cancel=cancel)

    with pytest.raises(RunInterrupted):
        pacer.acquire(cancel=cancel)


def test_registry_user_of_unknown() -> None:
    assert PacerRegistry().user_of("0123456789ab") is None


def test_registry_remember_user() -> None:
    registry = PacerRegistry()
    registry.remember_user("0123456789ab", "user-1")

    assert registry.user_of("0123456789ab") == "user-1"


def test_registry_remember_user_replaces() -> None:
    registry = PacerRegistry()
    registry.remember_user("0123456789ab", "user-1")
    registry.remember_user("0123456789ab", "user-2")

    assert registry.user_of("0123456789ab") == "user-2"
