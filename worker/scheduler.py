"""The long-running worker: one APScheduler cron job per enabled coda-sync job.

APScheduler 3.11's `BackgroundScheduler` fires the runs in a thread pool; the main thread only
watches for signals (see `worker.service`). `max_instances=1` keeps two runs of one job from
overlapping in a process, and `coalesce=True` turns a backlog of missed runs into one. A second
thread pool runs the worker's own jobs: the heartbeat in `coda_sync.workers`, and a
maintenance job that schedules jobs re-enabled from another process and prunes the history.
Between replicas, `JobRunner` claims each cron slot in the database, so one replica runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

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
from worker.health import WorkerIdentity, beat, mark_stopped, prune_workers, write_instance_file
from worker.history import prune_due
from worker.reload import ReloadPlan, plan_reload
from worker.settings import Settings
from worker.shutdown import ActiveRuns, RunDatabase, call_with_deadline, record_abandoned
from worker.sync import JobRunner

logger = logging.getLogger(__name__)

MAINTENANCE_JOB_ID = "coda-sync:maintenance"
HEARTBEAT_JOB_ID = "coda-sync:heartbeat"
OWN_JOB_IDS = frozenset({MAINTENANCE_JOB_ID, HEARTBEAT_JOB_ID})
MAINTENANCE_INTERVAL = 15.0  # seconds between checks for jobs enabled from outside
ABANDON_BUDGET = 1.5  # seconds to record runs that outlived the grace period
STOP_BUDGET = 0.5  # seconds to mark the worker stopped in coda_sync.workers
NEXT_RUN_LOCK_WAIT = "1000"  # milliseconds; another process may be updating the status row


def cron_trigger(job: Job) -> CronTrigger:
    """Build the job's trigger from its cron expression and time zone."""
    return job_trigger(job.schedule, job.timezone)


class Worker:
    """Schedules every enabled job and keeps this worker's heartbeat until `stop` is called."""

    def __init__(
        self,
        config: Config,
        db: Database,
        runner: JobRunner,
        *,
        run_db: RunDatabase,
        settings: Settings,
    ) -> None:
        self.config = config
        self.db = db
        self.run_db = run_db
        self.runner = runner
        self.settings = settings
        self.identity = WorkerIdentity.current(runner.options.instance_id)
        self.stopping = threading.Event()
        self.active = ActiveRuns()
        self._lock = threading.RLock()  # guards `config` and the set of scheduled jobs
        self._last_beat = time.monotonic()
        self._beat_failing_since: float | None = None
        self._last_pruned: float | None = None
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(settings.max_parallel_jobs),
                "maintenance": ThreadPoolExecutor(2),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    @property
    def instance_id(self) -> str:
        """The id of this worker in `coda_sync.workers` and `coda_sync.job_runs`."""
        return self.identity.instance_id

    def start(self) -> None:
        """Write the heartbeat, schedule the enabled jobs and start firing.

        Raises `SinkError` when PostgreSQL fails before the scheduler starts.
        """
        beat(self.db, self.identity)
        self._last_beat = time.monotonic()
        self._write_instance_file()
        with self.db.connection() as conn:
            status.register_jobs(conn, self.config.jobs, complete=True)
            states = {row["job_name"]: row for row in status.list_status(conn)}

        now = datetime.now(UTC)
        for job in self.config.jobs:
            self._schedule_if_enabled(job, states.get(job.name), now, warn=True)
        self.scheduler.add_job(
            self._beat,
            "interval",
            seconds=self.settings.heartbeat_interval,
            id=HEARTBEAT_JOB_ID,
            name="heartbeat",
            executor="maintenance",
        )
        self.scheduler.add_job(
            self._maintain,
            "interval",
            seconds=MAINTENANCE_INTERVAL,
            id=MAINTENANCE_JOB_ID,
            name="maintenance",
            executor="maintenance",
            next_run_time=now,
        )
        self.scheduler.start()
        self._store_next_runs()
        logger.info(
            "worker %s started with %d jobs",
            self.instance_id,
            len(self.config.jobs),
            extra={"event": "worker_started", "instance_id": self.instance_id, "jobs": len(self.config.jobs)},
        )

    def seconds_since_beat(self) -> float:
        """Return how long ago the last heartbeat reached PostgreSQL."""
        return time.monotonic() - self._last_beat

    def reload(self, config: Config) -> ReloadPlan:
        """Switch to a new version of the jobs file; raises `SinkError` if PostgreSQL fails."""
        plan = plan_reload(self.config, config)
        with self.db.connection() as conn, conn.transaction():
            reenabled = status.register_jobs(conn, config.jobs, complete=True)
            states = {row["job_name"]: row for row in status.list_status(conn)}

        now = datetime.now(UTC)
        with self._lock:
            self.config = config
            for name in plan.removed:
                self._unschedule(name)
            for job in config.jobs:
                fresh = job.name in plan.added or job.name in plan.rescheduled
                if fresh or (job.name in reenabled and not self._scheduled(job.name)):
                    self._schedule_if_enabled(job, states.get(job.name), now, warn=False)
        self._store_next_runs()
        return plan

    def stop(self) -> bool:
        """Stop firing runs, cancel the running ones and wait for them up to the grace period.

        Returns False when runs were still running after the grace period. They are then
        recorded as 'interrupted', and the caller must exit without joining their threads.
        """
        self.stopping.set()
        self.runner.options.cancel.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

        left = self.active.wait_until_empty(self.settings.shutdown_grace)
        if left:
            call_with_deadline(
                lambda: record_abandoned(self.db, self.run_db, left, instance_id=self.instance_id),
                ABANDON_BUDGET,
                step="recording runs still running",
            )
        stopped = call_with_deadline(self._mark_stopped, STOP_BUDGET, step="marking the worker stopped")
        if not left and stopped:
            self.run_db.close()
            self.db.close()
        logger.info(
            "worker %s stopped",
            self.instance_id,
            extra={"event": "worker_stopped", "instance_id": self.instance_id, "abandoned_runs": len(left)},
        )
        return not left and stopped

    def _write_instance_file(self) -> None:
        try:
            path = write_instance_file(self.settings.data_dir, self.instance_id)
        except OSError as exc:
            logger.error(
                "cannot write the instance file in %s (%s); `coda-sync health` will report this "
                "worker as unhealthy; make CODA_SYNC_DATA_DIR writable",
                self.settings.data_dir,
                exc.strerror,
                extra={"event": "instance_file_failed"},
            )
            return
        logger.debug("instance id written to %s", path, extra={"event": "instance_file_written"})

    def _mark_stopped(self) -> None:
        with self.db.connection() as conn:
            mark_stopped(conn, self.instance_id)

    def _schedule_if_enabled(
        self, job: Job, state: dict[str, Any] | None, now: datetime, *, warn: bool
    ) -> None:
        if state is not None and not state["enabled"]:
            self._unschedule(job.name)
            if warn:
                logger.warning(
                    "job %s is disabled and will not run: %s; re-enable with `coda-sync enable %s`",
                    job.name,
                    state["disabled_reason"],
                    job.name,
                    extra={"event": "job_skipped", "job": job.name},
                )
            return
        last_success = state["last_success_at"] if state is not None else None
        self._schedule(job, last_success, now)

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

    def _scheduled(self, name: str) -> bool:
        return self.scheduler.get_job(name) is not None

    def _unschedule(self, name: str) -> None:
        try:
            self.scheduler.remove_job(name)
        except JobLookupError:
            pass

    def _run_job(self, name: str) -> None:
        if self.stopping.is_set():
            return
        with self._lock:
            job = next((job for job in self.config.jobs if job.name == name), None)
        if job is None:
            return  # removed by a reload after this run was submitted

        slot = last_fire_time(cron_trigger(job), datetime.now(UTC))
        with self.active.track(name, slot):
            # APScheduler has stored the following fire time by the time this thread runs.
            self._store_next_runs([name])
            result = self.runner.run(job, slot=slot)
        if result.outcome == "disabled":
            self._unschedule(name)

    def _store_next_runs(self, names: list[str] | None = None) -> None:
        selected = set(names) if names is not None else None
        scheduled = [
            job
            for job in self.scheduler.get_jobs()
            if job.id not in OWN_JOB_IDS and (selected is None or job.id in selected)
        ]
        try:
            with self.db.connection() as conn, conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (NEXT_RUN_LOCK_WAIT,))
                for job in scheduled:
                    status.set_next_run(conn, job.id, job.next_run_time)
        except SinkError as exc:
            logger.warning("could not store next run times: %s", exc, extra={"event": "status_write_failed"})

    def _beat(self) -> None:
        try:
            beat(self.db, self.identity)
        except SinkError as exc:
            if self._beat_failing_since is None:
                self._beat_failing_since = time.monotonic()
                logger.warning(
                    "heartbeat failed, retrying every %.0f s: %s",
                    self.settings.heartbeat_interval,
                    exc,
                    extra={"event": "heartbeat_failed", "instance_id": self.instance_id},
                )
            return
        self._last_beat = time.monotonic()
        if self._beat_failing_since is not None:
            logger.info(
                "heartbeat written again after %.0f s of failures",
                self._last_beat - self._beat_failing_since,
                extra={"event": "heartbeat_recovered", "instance_id": self.instance_id},
            )
            self._beat_failing_since = None

    def _maintain(self) -> None:
        """Schedule jobs enabled from outside this process and prune old history rows."""
        try:
            with self.db.connection() as conn:
                states = {row["job_name"]: row for row in status.list_status(conn)}
        except SinkError as exc:
            logger.warning("maintenance skipped: %s", exc, extra={"event": "maintenance_failed"})
            return

        now = datetime.now(UTC)
        with self._lock:
            for job in self.config.jobs:
                state = states.get(job.name)
                if state is None:
                    continue
                if state["enabled"] and not self._scheduled(job.name):
                    logger.info(
                        "job %s was re-enabled; scheduling it",
                        job.name,
                        extra={"event": "job_scheduled", "job": job.name},
                    )
                    self._schedule(job, state["last_success_at"], now)
                elif not state["enabled"] and self._scheduled(job.name):
                    self._unschedule(job.name)
        self._store_next_runs()
        self._prune_history()

    def _prune_history(self) -> None:
        if not prune_due(self._last_pruned, time.monotonic()):
            return
        self._last_pruned = time.monotonic()
        keep = timedelta(days=self.settings.history_days)
        try:
            with self.db.connection() as conn:
                runs = status.prune_runs(conn, keep)
                workers = prune_workers(conn, keep)
        except SinkError as exc:
            logger.warning("history not pruned: %s", exc, extra={"event": "prune_failed"})
            return
        if runs or workers:
            logger.info(
                "pruned %d runs and %d worker rows older than %g days",
                runs,
                workers,
                self.settings.history_days,
                extra={"event": "history_pruned", "runs": runs, "workers": workers},
            )
