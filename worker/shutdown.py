"""Runs that outlive the shutdown grace period of `coda-sync run`.

A run stops at its next page once the runner's cancel event is set, but a request or a SQL
statement in flight can take longer than the container's stop timeout. After the grace period
the main thread ends the PostgreSQL sessions of those runs (the server rolls their
transactions back and releases their locks), records each run as 'interrupted', and the
process exits without joining the run threads.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from worker import status
from worker.database import Database, SessionTimeouts

logger = logging.getLogger(__name__)

ABANDONED_MESSAGE = "the worker stopped before the run finished; its transaction was rolled back"
LOCK_WAIT = "2000"  # milliseconds to wait for a job's status row lock while recording abandoned runs

Connection = psycopg.Connection[tuple[Any, ...]]


def application_name(instance_id: str) -> str:
    """Return the `application_name` of run sessions, cut to PostgreSQL's 63 bytes."""
    return f"coda-sync run {instance_id}"[:63]


class RunDatabase(Database):
    """The pool that runs use, which tracks the connections each thread has borrowed.

    Runs get a pool of their own, so a heartbeat never waits behind runs for a connection, and
    their sessions carry the worker's instance id in `application_name` for `pg_stat_activity`.
    """

    def __init__(self, url: str, *, instance_id: str, max_size: int, timeouts: SessionTimeouts) -> None:
        super().__init__(url, max_size=max_size, timeouts=timeouts)
        kwargs = self.pool.kwargs
        assert isinstance(kwargs, dict)  # `Database` passes a dict; the pool opens lazily
        self.pool.kwargs = {**kwargs, "application_name": application_name(instance_id)}
        self._borrowed: dict[int, list[Connection]] = {}
        self._lock = threading.Lock()
        self._closed_to_runs = threading.Event()
        self._never = threading.Event()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """Lend a connection as `Database.connection` does and remember the borrowing thread."""
        if self._closed_to_runs.is_set():
            # See `close_to_runs`: this thread's run was already recorded by the main thread.
            self._never.wait()
        thread_id = threading.get_ident()
        with super().connection() as conn:
            with self._lock:
                self._borrowed.setdefault(thread_id, []).append(conn)
            try:
                yield conn
            finally:
                with self._lock:
                    borrowed = self._borrowed.get(thread_id, [])
                    if conn in borrowed:
                        borrowed.remove(conn)

    def close_to_runs(self) -> None:
        """Make every later request for a connection wait until the process exits.

        Once the main thread has recorded an abandoned run, the run's own thread must not
        overwrite that record with the error it gets from its ended session.
        """
        self._closed_to_runs.set()

    def backend_pids(self, thread_ids: Iterable[int]) -> list[int]:
        """Return the server process ids of the connections the given threads hold."""
        with self._lock:
            return [
                conn.info.backend_pid
                for thread_id in thread_ids
                for conn in self._borrowed.get(thread_id, [])
                if not conn.closed
            ]


@dataclass(frozen=True, kw_only=True)
class ActiveRun:
    """A run that a scheduler thread is executing."""

    job_name: str
    slot: datetime | None
    started_at: datetime
    started: float  # monotonic seconds
    thread_id: int


@dataclass
class ActiveRuns:
    """The runs in progress, with a way to wait until none is left."""

    _runs: dict[int, ActiveRun] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @contextmanager
    def track(self, job_name: str, slot: datetime | None) -> Iterator[ActiveRun]:
        """Register the calling thread's run for the duration of the `with` block."""
        run = ActiveRun(
            job_name=job_name,
            slot=slot,
            started_at=datetime.now(UTC),
            started=time.monotonic(),
            thread_id=threading.get_ident(),
        )
        with self._changed:
            self._runs[run.thread_id] = run
        try:
            yield run
        finally:
            with self._changed:
                self._runs.pop(run.thread_id, None)
                self._changed.notify_all()

    def snapshot(self) -> list[ActiveRun]:
        """Return the runs in progress now."""
        with self._changed:
            return list(self._runs.values())

    def wait_until_empty(self, timeout: float) -> list[ActiveRun]:
        """Wait up to *timeout* seconds for every run to end; return those still running."""
        with self._changed:
            self._changed.wait_for(lambda: not self._runs, timeout=timeout)
            return list(self._runs.values())


def record_abandoned(
    db: Database, run_db: RunDatabase, runs: Iterable[ActiveRun], *, instance_id: str
) -> None:
    """End the sessions of *runs* and record each run as 'interrupted'."""
    runs = list(runs)
    run_db.close_to_runs()
    pids = run_db.backend_pids(run.thread_id for run in runs)
    with db.connection() as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    for run in runs:
        duration = time.monotonic() - run.started
        with db.connection() as conn, conn.transaction():
            # Another process may be updating the status row: wait briefly, not for the session's
            # lock timeout, because the process must exit within its stop timeout.
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_WAIT,))
            recorded = status.record_failure(
                conn,
                run.job_name,
                outcome="interrupted",
                kind="interrupted",
                message=ABANDONED_MESSAGE,
                duration=duration,
                stats=None,
                started_at=run.started_at,
            )
            if not recorded:
                # The run committed between the grace period's end and now; it succeeded.
                continue
            status.record_run(
                conn,
                status.RunRecord(
                    run_id=uuid.uuid4().hex,
                    job_name=run.job_name,
                    instance_id=instance_id,
                    scheduled_for=run.slot,
                    started_at=run.started_at,
                    outcome="interrupted",
                    error_kind="interrupted",
                    error=ABANDONED_MESSAGE,
                    duration=duration,
                ),
            )
        logger.warning(
            "job %s interrupted after %.1f s: %s",
            run.job_name,
            duration,
            ABANDONED_MESSAGE,
            extra={"event": "run_abandoned", "job": run.job_name, "kind": "interrupted"},
        )


def call_with_deadline(function: Callable[[], None], timeout: float, *, step: str) -> bool:
    """Call *function* in a daemon thread and wait up to *timeout* seconds; return if it ended.

    Shutdown steps that talk to PostgreSQL go through here, so an unreachable server cannot
    hold the process past its stop timeout. A failure is logged once, with the step's name.
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            function()
        except Exception as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"coda-sync {step}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        logger.error(
            "%s did not finish within %.1f s; giving up on it",
            step,
            timeout,
            extra={"event": "shutdown_step_timeout", "step": step},
        )
        return False
    if failure:
        logger.error("%s failed: %s", step, failure[0], extra={"event": "shutdown_step_failed", "step": step})
        return False
    return True
