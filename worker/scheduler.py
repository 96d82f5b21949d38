"""The long-running worker: one APScheduler cron job per enabled coda-sync job.

APScheduler 3.11's `BackgroundScheduler` fires the runs in a thread pool; the main thread only
waits for a signal. `max_instances=1` keeps two runs of one job from overlapping in a process,
`coalesce=True` turns a backlog of missed runs into one, and a short maintenance job notices
jobs that `coda-sync enable` re-enabled from another process.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_SUBMITTED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from worker import status
from worker.config import Config, Job
from worker.cron import cron_trigger as job_trigger
from worker.cron import is_overdue, last_fire_time, schedule_interval
from worker.database import Database
from worker.errors import SinkError
from worker.sync import JobRunner

logger = logging.getLogger(__name__)

MAINTENANCE_JOB_ID = "coda-sync:maintenance"
MAINTENANCE_INTERVAL = 15.0  # seconds between checks for jobs enabled from outside


def cron_trigger(job: Job) -> CronTrigger:
    """Build the job's trigger from its 5-field cron expression and time zone."""
    return job_trigger(job.schedule, job.timezone)


class Worker:
    """Schedules every enabled job and runs until `stop` is called."""

    def __init__(
        self, config: Config, db: Database, runner: JobRunner, *, max_parallel_jobs: int = 4
    ) -> None:
        self.config = config
        self.db = db
        self.runner = runner
        self.stopping = threading.Event()
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_parallel_jobs)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)

    def start(self) -> None:
        """Register the configured jobs, schedule the enabled ones and start firing."""
        with self.db.connection() as conn:
            status.register_jobs(conn, self.config.jobs)
            states = {row["job_name"]: row for row in status.list_status(conn)}

        now = datetime.now(UTC)
        for job in self.config.jobs:
            state = states.get(job.name)
            if state is not None and not state["enabled"]:
                logger.warning(
                    "job %s is disabled and will not run: %s; re-enable with `coda-sync enable %s`",
                    job.name,
                    state["disabled_reason"],
                    job.name,
                    extra={"event": "job_skipped", "job": job.name},
                )
                continue
            last_success = state["last_success_at"] if state is not None else None
            self._schedule(job, last_success, now)

        self.scheduler.add_job(
            self._maintain,
            "interval",
            seconds=MAINTENANCE_INTERVAL,
            id=MAINTENANCE_JOB_ID,
            name="maintenance",
        )
        self.scheduler.start()
        self._store_next_runs()
        logger.info(
            "worker started with %d jobs",
            len(self.config.jobs),
            extra={"event": "worker_started", "jobs": len(self.config.jobs)},
        )

    def wait(self) -> None:
        """Block until `stop` is called."""
        self.stopping.wait()

    def stop(self) -> None:
        """Stop firing runs, ask running ones to stop at their next page, and wait for them."""
        self.stopping.set()
        self.runner.options.cancel.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        logger.info("worker stopped", extra={"event": "worker_stopped"})

    def _schedule(self, job: Job, last_success: datetime | None, now: datetime) -> None:
        trigger = cron_trigger(job)
        run_now = is_overdue(last_success, schedule_interval(trigger, now), now)
        options = {"next_run_time": now} if run_now else {}
        self.scheduler.add_job(
            self._run_job,
            trigger,
            args=[job.name],
            id=job.name,
            name=job.name,
            replace_existing=True,
            **options,
        )

    def _run_job(self, name: str) -> None:
        if self.stopping.is_set():
            return
        job = self.config.job(name)
        slot = last_fire_time(cron_trigger(job), datetime.now(UTC))
        result = self.runner.run(job, slot=slot)
        if result.outcome == "disabled":
            self._unschedule(name)

    def _unschedule(self, name: str) -> None:
        try:
            self.scheduler.remove_job(name)
        except JobLookupError:
            pass

    def _on_submitted(self, event: JobEvent) -> None:
        if event.job_id != MAINTENANCE_JOB_ID:
            self._store_next_runs()

    def _store_next_runs(self) -> None:
        try:
            with self.db.connection() as conn:
                for scheduled in self.scheduler.get_jobs():
                    if scheduled.id != MAINTENANCE_JOB_ID:
                        status.set_next_run(conn, scheduled.id, scheduled.next_run_time)
        except SinkError as exc:
            logger.warning(
                "could not store next run times: %s", exc, extra={"event": "status_write_failed"}
            )

    def _maintain(self) -> None:
        """Schedule jobs that were enabled from outside this process."""
        try:
            with self.db.connection() as conn:
                states = {row["job_name"]: row for row in status.list_status(conn)}
        except SinkError as exc:
            logger.warning("maintenance skipped: %s", exc, extra={"event": "maintenance_failed"})
            return

        now = datetime.now(UTC)
        for job in self.config.jobs:
            state = states.get(job.name)
            if state is None:
                continue
            scheduled = self.scheduler.get_job(job.name) is not None
            if state["enabled"] and not scheduled:
                logger.info(
                    "job %s was re-enabled; scheduling it", job.name, extra={"event": "job_scheduled"}
                )
                self._schedule(job, state["last_success_at"], now)
            elif not state["enabled"] and scheduled:
                self._unschedule(job.name)
        self._store_next_runs()
