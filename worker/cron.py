"""Pure helpers around a job's cron schedule (APScheduler 3.11 `CronTrigger`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

logger = logging.getLogger(__name__)

FALLBACK_INTERVAL = timedelta(days=365)  # for a schedule that never fires again
MAX_LOOKBACK = timedelta(days=800)  # a yearly schedule's slot is at most a leap year back
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering, 0 = Sunday


def cron_trigger(schedule: str, timezone: str) -> BaseTrigger:
    """Build a trigger from a cron expression in the given IANA time zone.

    Five fields are standard crontab (minute hour day month weekday); six fields put a seconds
    field first. Weekday numbers follow crontab (0 and 7 are Sunday). APScheduler 3.x counts
    0 as Monday, so numbers are turned into day names before they reach it. As in crontab, a
    schedule that restricts both the day of the month and the weekday fires when either matches.
    """
    fields = schedule.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"expected 5 fields such as '0 * * * *' (or 6 with seconds first), got {len(fields)}"
        )
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, weekday = fields
    common = {"second": second, "minute": minute, "hour": hour, "month": month, "timezone": timezone}
    weekdays = crontab_weekdays(weekday)
    if day in ("*", "?") or weekdays == "*":
        return CronTrigger(day=day if day != "?" else "*", day_of_week=weekdays, **common)
    return OrTrigger([CronTrigger(day=day, **common), CronTrigger(day_of_week=weekdays, **common)])


def crontab_weekdays(field: str) -> str:
    """Rewrite a crontab weekday field (0 or 7 = Sunday) with day names APScheduler reads alike."""
    if field in ("*", "?"):
        return "*"
    days: list[str] = []
    for part in field.split(","):
        for number in _expand_weekdays(part.lower()):
            name = WEEKDAY_NAMES[number % 7]
            if name not in days:
                days.append(name)
    return ",".join(days)


def _expand_weekdays(part: str) -> list[int]:
    base, _, step_text = part.partition("/")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ValueError(f"invalid step in weekday field {part!r}")
    if base in ("*", ""):
        first, last = 0, 6
    elif "-" in base:
        start, end = base.split("-", 1)
        first, last = _weekday_number(start), _weekday_number(end)
    else:
        first = last = _weekday_number(base)
        if step_text:
            last = 6
    if last < first:
        raise ValueError(f"weekday range {part!r} runs backwards")
    return list(range(first, last + 1, step))


def _weekday_number(text: str) -> int:
    if text in WEEKDAY_NAMES:
        return WEEKDAY_NAMES.index(text)
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    raise ValueError(f"invalid weekday {text!r}; use 0-7 (0 and 7 are Sunday) or sun-sat")


def next_fire_after(trigger: BaseTrigger, fire: datetime) -> datetime | None:
    """Return the trigger's first fire time strictly after *fire*."""
    # Arithmetic on aware datetimes in a zone with DST uses wall-clock time, so step in UTC.
    after = fire.astimezone(UTC) + timedelta(microseconds=1)
    result: datetime | None = trigger.get_next_fire_time(fire, after)
    return result


def schedule_interval(trigger: BaseTrigger, now: datetime) -> timedelta:
    """Return the gap between the trigger's next two fire times after *now*."""
    first = trigger.get_next_fire_time(None, now)
    second = next_fire_after(trigger, first) if first else None
    if first is None or second is None:
        return FALLBACK_INTERVAL
    gap: timedelta = second.astimezone(UTC) - first.astimezone(UTC)
    return gap


def is_overdue(last_success: datetime | None, interval: timedelta, now: datetime) -> bool:
    """Return True when a job should run right after start instead of waiting for its slot.

    A job that never succeeded, or whose last success is older than one interval, missed at
    least one slot; it runs once, not once per missed slot.
    """
    return last_success is None or now - last_success > interval


def last_fire_time(trigger: BaseTrigger, now: datetime) -> datetime | None:
    """Return the latest fire time of *trigger* at or before *now*, the slot a run belongs to.

    The search looks back twice the coming interval first and widens until it finds a fire
    time, because intervals vary: a weekday schedule checked on a Sunday looks back three days.
    """
    now = now.astimezone(UTC)
    lookback = 2 * schedule_interval(trigger, now)
    while lookback <= MAX_LOOKBACK:
        fire: datetime | None = trigger.get_next_fire_time(None, now - lookback)
        latest: datetime | None = None
        while fire is not None and fire.astimezone(UTC) <= now:
            latest = fire
            fire = next_fire_after(trigger, fire)
        if latest is not None:
            return latest
        lookback *= 2
    return None
