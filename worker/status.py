"""Read and write `coda_sync.job_status`, the table operators watch.

Every function takes a connection and runs in the caller's transaction, so a run's data and
its status commit together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from worker.config import Job
from worker.cron import cron_trigger, schedule_interval
from worker.records import ColumnInfo, RequestStats
from worker.sink import MergeCounts

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]

STATUS_COLUMNS = (
    "job_name",
    "doc_id",
    "table_id",
    "resolved_table_id",
    "target_table",
    "enabled",
    "disabled_reason",
    "disabled_at",
    "reenabled_at",
    "reenabled_by",
    "in_config",
    "last_outcome",
    "last_error_kind",
    "last_error",
    "needs_attention",
    "last_started_at",
    "last_finished_at",
    "last_success_at",
    "last_duration_seconds",
    "consecutive_failures",
    "rows_total",
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "deletes_withheld",
    "last_requests",
    "last_retries",
    "next_run_at",
    "token_fingerprint",
    "config_fingerprint",
    "updated_at",
)


@dataclass(frozen=True, kw_only=True)
class JobState:
    """The parts of a status row that decide what a run does."""

    enabled: bool
    disabled_reason: str | None
    last_success_at: datetime | None
    resolved_table_id: str | None


def register_jobs(conn: Connection, jobs: Iterable[Job], *, complete: bool = False) -> list[str]:
    """Create or refresh one status row per job; return the names re-enabled.

    A disabled job whose token, doc or table changed in the config is enabled again, because
    the problem that disabled it may be gone. With *complete*, *jobs* is the whole config, and
    jobs no longer in it keep their row and data, marked with `in_config = false`.
    """
    reenabled: list[str] = []
    names = []
    now = datetime.now(UTC)
    for job in jobs:
        names.append(job.name)
        row = conn.execute(
            "INSERT INTO coda_sync.job_status AS s"
            " (job_name, doc_id, table_id, target_table, token_fingerprint, config_fingerprint,"
            "  schedule, schedule_interval_seconds)"
            " VALUES (%(name)s, %(doc)s, %(table)s, %(target)s, %(token)s, %(config)s,"
            "  %(schedule)s, %(interval)s)"
            " ON CONFLICT (job_name) DO UPDATE SET"
            "  doc_id = excluded.doc_id, table_id = excluded.table_id,"
            "  schedule = excluded.schedule,"
            "  schedule_interval_seconds = excluded.schedule_interval_seconds,"
            "  target_table = excluded.target_table,"
            "  token_fingerprint = excluded.token_fingerprint,"
            "  config_fingerprint = excluded.config_fingerprint,"
            "  in_config = true,"
            "  resolved_table_id = CASE WHEN s.doc_id = excluded.doc_id"
            "   AND s.table_id = excluded.table_id THEN s.resolved_table_id END,"
            "  enabled = s.enabled OR s.config_fingerprint IS DISTINCT FROM excluded.config_fingerprint,"
            "  disabled_reason = CASE WHEN s.config_fingerprint IS DISTINCT FROM"
            "   excluded.config_fingerprint THEN NULL ELSE s.disabled_reason END,"
            "  reenabled_at = CASE WHEN NOT s.enabled AND s.config_fingerprint IS DISTINCT FROM"
            "   excluded.config_fingerprint THEN now() ELSE s.reenabled_at END,"
            "  reenabled_by = CASE WHEN NOT s.enabled AND s.config_fingerprint IS DISTINCT FROM"
            "   excluded.config_fingerprint THEN 'config change' ELSE s.reenabled_by END,"
            "  updated_at = now()"
            " RETURNING reenabled_by = 'config change' AND reenabled_at = now() AS reenabled",
            {
                "name": job.name,
                "doc": job.doc_id,
                "table": job.table_id,
                "target": f"{job.target_schema}.{job.target_table}",
                "token": job.token_fingerprint,
                "config": job.config_fingerprint,
                "schedule": f"{job.schedule} ({job.timezone})",
                "interval": schedule_interval(cron_trigger(job.schedule, job.timezone), now).total_seconds(),
            },
        ).fetchone()
        if row is not None and row[0]:
            reenabled.append(job.name)
    if complete:
        conn.execute(
            "UPDATE coda_sync.job_status SET in_config = false, next_run_at = NULL, updated_at = now()"
            " WHERE in_config AND NOT (job_name = ANY(%s))",
            (names,),
        )
    for name in reenabled:
        logger.info(
            "job %s re-enabled because its token, doc or table changed in the config",
            name,
            extra={"event": "job_reenabled", "job": name, "by": "config change"},
        )
    return reenabled


def load_state(conn: Connection, job_name: str, *, lock: bool = False) -> JobState | None:
    """Return the state of one job, optionally locking its row for this transaction."""
    query = (
        "SELECT enabled, disabled_reason, last_success_at, resolved_table_id"
        " FROM coda_sync.job_status WHERE job_name = %s"
    )
    row = conn.execute(query + (" FOR UPDATE" if lock else ""), (job_name,)).fetchone()
    if row is None:
        return None
    enabled, reason, last_success, resolved = row
    return JobState(
        enabled=bool(enabled),
        disabled_reason=reason if isinstance(reason, str) else None,
        last_success_at=last_success if isinstance(last_success, datetime) else None,
        resolved_table_id=resolved if isinstance(resolved, str) else None,
    )


def mark_started(conn: Connection, job_name: str) -> None:
    """Record that a run of the job started now."""
    conn.execute(
        "UPDATE coda_sync.job_status SET last_started_at = now(), updated_at = now() WHERE job_name = %s",
        (job_name,),
    )


def record_success(
    conn: Connection,
    job_name: str,
    *,
    counts: MergeCounts,
    stats: RequestStats,
    duration: float,
    resolved_table_id: str,
    attention: str | None,
) -> None:
    """Record a successful run; *attention* is a reason an operator should look at it."""
    conn.execute(
        "UPDATE coda_sync.job_status SET"
        " last_outcome = 'succeeded', last_error_kind = %(kind)s, last_error = %(attention)s,"
        " needs_attention = %(needs)s, last_finished_at = now(), last_success_at = now(),"
        " last_duration_seconds = %(duration)s, consecutive_failures = 0,"
        " rows_total = %(total)s, rows_read = %(read)s, rows_inserted = %(inserted)s,"
        " rows_updated = %(updated)s, rows_deleted = %(deleted)s, deletes_withheld = %(withheld)s,"
        " last_requests = %(requests)s, last_retries = %(retries)s,"
        " resolved_table_id = %(resolved)s, updated_at = now()"
        " WHERE job_name = %(name)s",
        {
            "name": job_name,
            "kind": "mass_delete_withheld" if attention else None,
            "attention": attention,
            "needs": attention is not None,
            "duration": duration,
            "total": counts.total,
            "read": counts.read,
            "inserted": counts.inserted,
            "updated": counts.updated,
            "deleted": counts.deleted,
            "withheld": counts.withheld,
            "requests": stats.requests,
            "retries": stats.retries,
            "resolved": resolved_table_id,
        },
    )


def record_failure(
    conn: Connection,
    job_name: str,
    *,
    outcome: str,
    kind: str,
    message: str,
    duration: float | None,
    stats: RequestStats | None,
    disable_reason: str | None = None,
    started_at: datetime | None = None,
) -> bool:
    """Record a failed, disabled or interrupted run; the job's data is left as it was.

    When a run that started after *started_at* has already succeeded (a replica that stalled
    and lost its session, say), the failure is stale: the job's data is fresh, so its outcome,
    alert and failure streak stay as the newer run left them, and this returns False.
    """
    if started_at is not None and disable_reason is None:
        row = conn.execute(
            "SELECT last_success_at > %s FROM coda_sync.job_status WHERE job_name = %s",
            (started_at, job_name),
        ).fetchone()
        if row is not None and row[0]:
            logger.info(
                "job %s: a newer run already succeeded; not recording this run's %s as the job's state",
                job_name,
                outcome,
                extra={"event": "stale_failure_ignored", "job": job_name},
            )
            return False
    conn.execute(
        "UPDATE coda_sync.job_status SET"
        " last_outcome = %(outcome)s, last_error_kind = %(kind)s, last_error = %(message)s,"
        " needs_attention = (%(outcome)s <> 'interrupted' OR needs_attention),"
        " last_finished_at = now(),"
        " last_duration_seconds = %(duration)s,"
        " consecutive_failures = consecutive_failures + (%(outcome)s <> 'interrupted')::int,"
        " last_requests = %(requests)s, last_retries = %(retries)s,"
        " enabled = CASE WHEN %(disable)s::text IS NULL THEN enabled ELSE false END,"
        " disabled_reason = COALESCE(%(disable)s, disabled_reason),"
        " disabled_at = CASE WHEN %(disable)s::text IS NULL THEN disabled_at ELSE now() END,"
        " next_run_at = CASE WHEN %(disable)s::text IS NULL THEN next_run_at END,"
        " updated_at = now()"
        " WHERE job_name = %(name)s",
        {
            "name": job_name,
            "outcome": outcome,
            "kind": kind,
            "message": message,
            "duration": duration,
            "requests": stats.requests if stats else None,
            "retries": stats.retries if stats else None,
            "disable": disable_reason,
        },
    )
    return True


def enable(conn: Connection, job_name: str, *, by: str) -> bool:
    """Enable a disabled job by hand; return False when it was not disabled."""
    cursor = conn.execute(
        "UPDATE coda_sync.job_status SET enabled = true, disabled_reason = NULL,"
        " reenabled_at = now(), reenabled_by = %s, needs_attention = false, updated_at = now()"
        " WHERE job_name = %s AND NOT enabled",
        (by, job_name),
    )
    return cursor.rowcount > 0


def set_next_run(conn: Connection, job_name: str, when: datetime | None) -> None:
    """Store when the scheduler will next run the job."""
    conn.execute(
        "UPDATE coda_sync.job_status SET next_run_at = %s WHERE job_name = %s"
        " AND next_run_at IS DISTINCT FROM %s",
        (when, job_name, when),
    )


def save_columns(conn: Connection, job_name: str, columns: Sequence[ColumnInfo]) -> None:
    """Replace the stored column metadata of the job's table."""
    conn.execute("DELETE FROM coda_sync.table_columns WHERE job_name = %s", (job_name,))
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO coda_sync.table_columns"
            " (job_name, column_id, name, position, format, display, calculated)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(job_name, c.id, c.name, c.position, Jsonb(c.format), c.display, c.calculated) for c in columns],
        )


def list_status(conn: Connection, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Return status rows as dictionaries keyed by column name, ordered by job name."""
    with conn.cursor(row_factory=dict_row) as cursor:
        if names:
            cursor.execute(
                "SELECT * FROM coda_sync.job_health WHERE job_name = ANY(%s) ORDER BY job_name",
                (list(names),),
            )
        else:
            cursor.execute("SELECT * FROM coda_sync.job_health ORDER BY job_name")
        return cursor.fetchall()


def try_lock_job(conn: Connection, job_name: str) -> bool:
    """Take the job's advisory lock for this transaction; False when another session holds it.

    The lock lives exactly as long as the run's data transaction, so a worker that dies
    releases it with its connection, and one whose connection was closed cannot commit.
    """
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('coda-sync job ' || %s, 0))",
        (job_name,),
    ).fetchone()
    return bool(row and row[0])


def claim_slot(conn: Connection, job_name: str, slot: datetime) -> bool:
    """Claim the scheduled run at *slot* for this worker; False when a replica already did.

    The compare-and-set on `last_slot` lets exactly one of several replicas that fire the same
    cron slot run it. The claim commits on its own, so a replica that dies mid-run does not
    hand the slot to another one; the job's next slot runs as usual.
    """
    row = conn.execute(
        "UPDATE coda_sync.job_status SET last_slot = %s"
        " WHERE job_name = %s AND (last_slot IS NULL OR last_slot < %s) RETURNING 1",
        (slot, job_name, slot),
    ).fetchone()
    return row is not None


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One row of `coda_sync.job_runs`."""

    run_id: str
    job_name: str
    instance_id: str
    scheduled_for: datetime | None
    started_at: datetime
    outcome: str
    error_kind: str | None = None
    error: str | None = None
    counts: MergeCounts | None = None
    stats: RequestStats | None = None
    duration: float | None = None


def record_run(conn: Connection, run: RunRecord) -> None:
    """Append a finished run to the history."""
    counts, stats = run.counts, run.stats
    conn.execute(
        "INSERT INTO coda_sync.job_runs (run_id, job_name, instance_id, scheduled_for, started_at,"
        " outcome, error_kind, error, rows_read, rows_inserted, rows_updated, rows_deleted,"
        " requests, retries, duration_seconds)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            run.run_id,
            run.job_name,
            run.instance_id,
            run.scheduled_for,
            run.started_at,
            run.outcome,
            run.error_kind,
            run.error,
            counts.read if counts else None,
            counts.inserted if counts else None,
            counts.updated if counts else None,
            counts.deleted if counts else None,
            stats.requests if stats else None,
            stats.retries if stats else None,
            run.duration,
        ),
    )


def prune_runs(conn: Connection, keep: timedelta) -> int:
    """Delete history rows older than *keep*; return how many went."""
    cursor = conn.execute("DELETE FROM coda_sync.job_runs WHERE started_at < now() - %s", (keep,))
    return max(cursor.rowcount, 0)


def list_runs(conn: Connection, job_name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Return the newest runs, optionally of one job, newest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "SELECT * FROM coda_sync.job_runs WHERE %(job)s::text IS NULL OR job_name = %(job)s"
            " ORDER BY started_at DESC LIMIT %(limit)s",
            {"job": job_name, "limit": limit},
        )
        return cursor.fetchall()


def relabel_if_all_not_found(conn: Connection, message: str) -> list[str]:
    """Relabel 404 failures as one API-wide problem when every configured job has one.

    Returns the relabelled job names, or an empty list when at least one configured, enabled
    job did not end in a 404, or when fewer than two jobs are configured (one job's 404 tells
    nothing about the base URL).
    """
    rows = conn.execute(
        "SELECT job_name, last_error_kind FROM coda_sync.job_status WHERE in_config AND enabled"
    ).fetchall()
    kinds = {row[1] for row in rows}
    if len(rows) < 2 or not kinds <= {"not_found", "api_not_found"}:
        return []
    conn.execute(
        "UPDATE coda_sync.job_status SET last_error_kind = 'api_not_found', last_error = %s,"
        " updated_at = now() WHERE in_config AND enabled",
        (message,),
    )
    return [row[0] for row in rows]


def live_workers(conn: Connection, *, max_age: float) -> int:
    """Count running workers whose heartbeat is younger than *max_age* seconds."""
    row = conn.execute(
        "SELECT count(*) FROM coda_sync.workers"
        " WHERE stopped_at IS NULL AND beat_at > now() - make_interval(secs => %s)",
        (max_age,),
    ).fetchone()
    return int(row[0]) if row else 0
