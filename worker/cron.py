"""Pure helpers around a job's cron schedule (APScheduler 3.11 `CronTrigger`)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

logger = logging.getLogger(__name__)

FALLBACK_INTERVAL = timedelta(days=365)  # for a schedule that never fires again


def cron_trigger(schedule: str, timezone: str) -> CronTrigger:
    """Build a trigger from a 5-field cron expression in the given IANA time zone."""
    return CronTrigger.from_crontab(schedule, timezone=timezone)


def schedule_interval(trigger: CronTrigger, now: datetime) -> timedelta:
    """Return the gap between the trigger's next two fire times after *now*."""
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(microseconds=1)) if first else None
    if first is None or second is None:
        return FALLBACK_INTERVAL
    gap: timedelta = second - first
    return gap


def is_overdue(last_success: datetime | None, interval: timedelta, now: datetime) -> bool:
    """Return True when a job should run right after start instead of waiting for its slot.

    A job that never succeeded, or whose last success is older than one interval, missed at
    least one slot; it runs once, not once per missed slot.
    """
    return last_success is None or now - last_success > interval


def last_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """Return the latest fire time of *trigger* at or before *now*, the slot a run belongs to."""
    interval = schedule_interval(trigger, now)
    fire = trigger.get_next_fire_time(None, now - 2 * interval)
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest
