from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from worker.config import Job
from worker.cron import FALLBACK_INTERVAL, is_overdue, last_fire_time, schedule_interval
from worker.scheduler import cron_trigger

NOW = datetime(2025, 6, 10, 12, 34, 56, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")

def make_job(schedule: str, timezone: str = "UTC") -> Job:
    return Job(
        name="deals",
        doc_id="doc1",
        table_id="grid-1",
        token=None,
        token_problem=None,
        schedule=schedule,
        timezone=timezone,
        target_schema="coda",
        target_table="deals",
        deletes="hard",
        max_delete_fraction=0.5,
        allow_mass_delete=False,
        run_timeout=1800.0,
    )


class BoundedTrigger:
    """A `CronTrigger` wrapper that raises after *max_calls* lookups, so a looping caller fails fast."""

    def __init__(self, trigger: CronTrigger, max_calls: int = 200) -> None:
        self.trigger = trigger
        self.calls = 0
        self.max_calls = max_calls

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        self.calls += 1
        if self.calls > self.max_calls:
            raise RuntimeError(f"get_next_fire_time called more than {self.max_calls} times")
        fire_time: datetime | None = self.trigger.get_next_fire_time(previous, now)
        return fire_time


def berlin_trigger(schedule: str) -> CronTrigger:
    return cron_trigger(make_job(schedule, "Europe/Berlin"))


# schedule_interval.


@pytest.mark.parametrize(
    ("schedule", "timezone", "expected"),
    [
        pytest.param("0 * * * *", "UTC", timedelta(hours=1), id="hourly"),
        pytest.param("*/15 * * * *", "UTC", timedelta(minutes=15), id="every-15-min"),
        pytest.param("0 3 * * *", "Europe/Berlin", timedelta(days=1), id="daily-berlin"),
        pytest.param("30 8 * * 1", "UTC", timedelta(weeks=1), id="weekly"),
    ],
)
def test_schedule_interval_gap(schedule: str, timezone: str, expected: timedelta) -> None:
    assert schedule_interval(cron_trigger(make_job(schedule, timezone)), NOW) == expected


def test_schedule_interval_utc_daily() -> None:
    before_change = datetime(2025, 3, 28, 6, 0, tzinfo=UTC)

    assert schedule_interval(cron_trigger(make_job("0 3 * * *")), before_change) == timedelta(hours=24)


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        # Berlin moves to summer time on 2025-03-30: 03:00 on 29 and 30 March are 23 h apart.
        pytest.param(
            "0 3 * * *", datetime(2025, 3, 28, 6, 0, tzinfo=UTC), timedelta(hours=23), id="daily-spring"
        ),
        # Berlin moves back on 2025-10-26: 02:00 summer time and 02:00 winter time are 1 h apart.
        pytest.param(
            "0 * * * *", datetime(2025, 10, 25, 23, 30, tzinfo=UTC), timedelta(hours=1), id="hourly-autumn"
        ),
    ],
)
def test_schedule_interval_across_dst(schedule: str, now: datetime, expected: timedelta) -> None:
    assert schedule_interval(berlin_trigger(schedule), now) == expected


def test_schedule_interval_no_next_fire() -> None:
    trigger = CronTrigger(year=2020, month=1, day=1, hour=0, minute=0, timezone=UTC)

    assert schedule_interval(trigger, NOW) == FALLBACK_INTERVAL


# is_overdue.


@pytest.mark.parametrize(
    ("last_success", "expected"),
    [
        pytest.param(None, True, id="never-succeeded"),
        pytest.param(NOW - timedelta(minutes=10), False, id="recent"),
        pytest.param(NOW - timedelta(hours=1), False, id="exactly-one-interval"),
        pytest.param(NOW - timedelta(hours=1, seconds=1), True, id="older-than-interval"),
        pytest.param(NOW - timedelta(days=3), True, id="days-old"),
    ],
)
def test_is_overdue_cases(last_success: datetime | None, expected: bool) -> None:
    assert is_overdue(last_success, timedelta(hours=1), NOW) is expected


# cron_trigger.


def test_cron_trigger_uses_job_timezone() -> None:
    assert berlin_trigger("0 3 * * *").timezone == BERLIN


def test_cron_trigger_fires_local_time() -> None:
    fire_time = berlin_trigger("0 3 * * *").get_next_fire_time(None, NOW)

    assert fire_time == datetime(2025, 6, 11, 3, 0, tzinfo=BERLIN)
    assert fire_time.astimezone(UTC) == datetime(2025, 6, 11, 1, 0, tzinfo=UTC)


def test_cron_trigger_utc_job() -> None:
    trigger = cron_trigger(make_job("0 3 * * *"))

    assert trigger.get_next_fire_time(None, NOW) == datetime(2025, 6, 11, 3, 0, tzinfo=UTC)


# NOW is Tuesday 2025-06-10. Crontab counts weekdays from 0 = Sunday, and 7 is Sunday too.
@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        pytest.param("0 9 * * 0", datetime(2025, 6, 15, 9, 0, tzinfo=UTC), id="zero-is-sunday"),
        pytest.param("0 9 * * 7", datetime(2025, 6, 15, 9, 0, tzinfo=UTC), id="seven-is-sunday"),
        pytest.param("0 9 * * 1", datetime(2025, 6, 16, 9, 0, tzinfo=UTC), id="one-is-monday"),
        pytest.param("0 9 * * 5-7", datetime(2025, 6, 13, 9, 0, tzinfo=UTC), id="friday-to-sunday"),
        pytest.param("0 9 * * */3", datetime(2025, 6, 11, 9, 0, tzinfo=UTC), id="every-third-day"),
        pytest.param("0 9 * * SAT", datetime(2025, 6, 14, 9, 0, tzinfo=UTC), id="day-name"),
        pytest.param("30 0 * * * *", datetime(2025, 6, 10, 13, 0, 30, tzinfo=UTC), id="seconds-field"),
    ],
)
def test_cron_trigger_crontab_fields(schedule: str, expected: datetime) -> None:
    trigger = cron_trigger(make_job(schedule))

    assert trigger.get_next_fire_time(None, NOW) == expected


def test_cron_trigger_day_or_weekday() -> None:
    # Crontab reads "0 0 1 * 1" as "the 1st of each month and every Monday".
    trigger = cron_trigger(make_job("0 0 1 * 1"))

    assert trigger.get_next_fire_time(None, NOW) == datetime(2025, 6, 16, 0, 0, tzinfo=UTC)


# last_fire_time.


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        pytest.param("0 * * * *", NOW, datetime(2025, 6, 10, 12, 0, tzinfo=UTC), id="hourly-mid-hour"),
        pytest.param(
            "0 * * * *",
            datetime(2025, 6, 10, 12, 0, tzinfo=UTC),
            datetime(2025, 6, 10, 12, 0, tzinfo=UTC),
            id="exactly-at-slot",
        ),
        pytest.param("0 3 * * *", NOW, datetime(2025, 6, 10, 1, 0, tzinfo=UTC), id="daily-berlin"),
        pytest.param(
            "*/15 * * * *", NOW, datetime(2025, 6, 10, 12, 30, tzinfo=UTC), id="quarter-hour-berlin"
        ),
    ],
)
def test_last_fire_time_slot(schedule: str, now: datetime, expected: datetime) -> None:
    assert last_fire_time(berlin_trigger(schedule), now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 02:00:30 summer time: the slot is 02:00 summer time, but the lookup starts after it.
        pytest.param(
            datetime(2025, 10, 26, 0, 0, 30, tzinfo=UTC),
            datetime(2025, 10, 26, 0, 0, tzinfo=UTC),
            id="first-0200-summer",
        ),
        # 02:30 winter time: stepping past 02:00 winter time on the wall clock would land in
        # summer time and return the same slot forever.
        pytest.param(
            datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
            datetime(2025, 10, 26, 1, 0, tzinfo=UTC),
            id="second-0200-winter",
        ),
    ],
)
def test_last_fire_time_autumn_dst(now: datetime, expected: datetime) -> None:
    trigger = BoundedTrigger(berlin_trigger("0 * * * *"))

    slot = last_fire_time(trigger, now)

    # A time in the repeated hour compares unequal to every time in another zone (PEP 495),
    # so compare in UTC.
    assert slot is not None
    assert slot.astimezone(UTC) == expected
