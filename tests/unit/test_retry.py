from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from worker.retry import RetryPolicy, parse_retry_after

POLICY = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=60.0, max_total_delay=300.0)
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


class UpperBoundRandom(random.Random):
    """A `Random` whose `uniform` returns the upper bound, to read the backoff ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


# Backoff.


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        pytest.param(1, 1.0, id="attempt-1"),
        pytest.param(2, 2.0, id="attempt-2"),
        pytest.param(3, 4.0, id="attempt-3"),
        pytest.param(6, 32.0, id="attempt-6"),
        pytest.param(7, 60.0, id="attempt-7-capped"),
        pytest.param(30, 60.0, id="attempt-30-capped"),
    ],
)
def test_backoff_ceiling_doubles(attempt: int, ceiling: float) -> None:
    assert POLICY.backoff(attempt, UpperBoundRandom()) == ceiling


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 7, 12])
def test_backoff_within_bounds(attempt: int) -> None:
    ceiling = min(POLICY.max_delay, POLICY.base_delay * 2 ** (attempt - 1))
    delays = [POLICY.backoff(attempt, random.Random(seed)) for seed in range(200)]

    out_of_bounds = [delay for delay in delays if not POLICY.base_delay / 2 <= delay <= ceiling]

    assert out_of_bounds == []


def test_backoff_capped_below_half_base() -> None:
    policy = RetryPolicy(base_delay=10.0, max_delay=2.0)

    assert policy.backoff(1, random.Random(1)) == 2.0


def test_backoff_jitter_differs_by_seed() -> None:
    delays = {POLICY.backoff(5, random.Random(seed)) for seed in range(10)}

    assert len(delays) == 10


def test_backoff_same_seed_same_delay() -> None:
    assert POLICY.backoff(4, random.Random(7)) == POLICY.backoff(4, random.Random(7))


# Delay decisions.


def test_delay_uses_backoff() -> None:
    delay = POLICY.delay(attempt=3, waited=0.0, retry_after=None, rng=random.Random(3))

    assert delay == POLICY.backoff(3, random.Random(3))


def test_delay_last_attempt_retries() -> None:
    delay = POLICY.delay(attempt=5, waited=0.0, retry_after=None, rng=random.Random(0))

    assert delay is not None


@pytest.mark.parametrize("attempt", [6, 7])
def test_delay_gives_up_after_max_attempts(attempt: int) -> None:
    assert POLICY.delay(attempt=attempt, waited=0.0, retry_after=None, rng=random.Random(0)) is None


@pytest.mark.parametrize(
    ("waited", "retry_after", "expected"),
    [
        pytest.param(290.0, 10.0, 10.0, id="exactly-at-total"),
        pytest.param(290.0, 10.5, None, id="past-total"),
        pytest.param(0.0, 301.0, None, id="retry-after-alone-past-total"),
        pytest.param(299.9, None, None, id="backoff-past-total"),
    ],
)
def test_delay_total_limit(waited: float, retry_after: float | None, expected: float | None) -> None:
    delay = POLICY.delay(attempt=1, waited=waited, retry_after=retry_after, rng=random.Random(0))

    assert delay == expected


@pytest.mark.parametrize(
    "retry_after",
    [pytest.param(42.0, id="longer-than-backoff"), pytest.param(0.0, id="zero")],
)
def test_delay_retry_after_wins(retry_after: float) -> None:
    delay = POLICY.delay(attempt=2, waited=0.0, retry_after=retry_after, rng=random.Random(0))

    assert delay == retry_after


# Retry-After parsing.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("3", 3.0, id="seconds"),
        pytest.param(" 7 ", 7.0, id="seconds-padded"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("garbage", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param("-1", None, id="negative"),
        pytest.param("1.5", None, id="fraction"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_future_date() -> None:
    value = format_datetime(NOW + timedelta(seconds=30), usegmt=True)

    assert parse_retry_after(value, NOW) == 30.0


def test_parse_retry_after_past_date() -> None:
    value = format_datetime(NOW - timedelta(minutes=5), usegmt=True)

    assert parse_retry_after(value, NOW) == 0.0


def test_parse_retry_after_date_without_zone() -> None:
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:10 -0000", NOW) == 10.0


def test_parse_retry_after_default_now() -> None:
    value = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    seconds = parse_retry_after(value)

    assert seconds is not None
    assert 3590.0 <= seconds <= 3600.0


def test_parse_retry_after_superscript_digit() -> None:
    assert parse_retry_after("\u00b2", NOW) is None
