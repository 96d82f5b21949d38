"""Cron parsing: crontab weekday numbers and the optional seconds field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.config import load_config
from worker.cron import cron_trigger, crontab_weekdays, last_fire_time

FRIDAY = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("1", "mon"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("0,6", "sun,sat"),
        ("5/1", "fri,sat"),
    ],
    ids=["any", "one", "zero", "seven", "range", "step", "names", "list", "start-step"],
)
def test_crontab_weekdays_follow_crontab(field: str, expected: str) -> None:
    assert crontab_weekdays(field) == expected


@pytest.mark.parametrize(
    "field", ["8", "sat-sun", "x", "*/0"], ids=["eight", "backwards", "word", "zero-step"]
)
def test_crontab_weekdays_invalid_raises(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_weekdays(field)


def test_cron_trigger_monday_means_monday() -> None:
    fire = cron_trigger("0 9 * * 1", "UTC").get_next_fire_time(None, FRIDAY)

    assert fire is not None
    assert fire.strftime("%a %H:%M") == "Mon 09:00"


def test_cron_trigger_accepts_seconds_field() -> None:
    fire = cron_trigger("*/5 * * * * *", "UTC").get_next_fire_time(None, FRIDAY.replace(second=1))

    assert fire == FRIDAY.replace(second=5)


def test_cron_trigger_rejects_four_fields() -> None:
    with pytest.raises(ValueError, match="expected 5 fields such as"):
        cron_trigger("* * * *", "UTC")


def test_last_fire_time_is_latest_slot() -> None:
    slot = last_fire_time(cron_trigger("0 * * * *", "UTC"), FRIDAY.replace(minute=30))

    assert slot == FRIDAY


def test_run_timeout_shorter_than_interval(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(
        '[[jobs]]\nname = "fast"\ndoc_id = "AbCDeFGHij"\ntable_id = "grid-a"\ntoken = "t-123456"\n'
        'schedule = "*/10 * * * *"\n\n'
        '[[jobs]]\nname = "hourly"\ndoc_id = "AbCDeFGHij"\ntable_id = "grid-b"\ntoken = "t-123456"\n\n'
        '[[jobs]]\nname = "set"\ndoc_id = "AbCDeFGHij"\ntable_id = "grid-c"\ntoken = "t-123456"\n'
        'schedule = "*/10 * * * *"\nrun_timeout = 900\n'
    )

    config = load_config(path, {})

    assert config.job("fast").run_timeout == 540.0
    assert config.job("hourly").run_timeout == 1800.0
    assert config.job("set").run_timeout == 900.0


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("0 9 * * 1-5", datetime(2026, 12, 4, 9, 0, tzinfo=UTC)),
        ("0 0,1 * * *", datetime(2026, 12, 6, 1, 0, tzinfo=UTC)),
        ("0 0 1 1 *", datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
    ],
    ids=["weekdays-on-sunday", "uneven-gaps", "yearly"],
)
def test_last_fire_time_irregular_intervals(schedule: str, expected: datetime) -> None:
    sunday_noon = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    assert last_fire_time(cron_trigger(schedule, "UTC"), sunday_noon) == expected
