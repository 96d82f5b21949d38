"""Worker heartbeats in `coda_sync.workers` and the `coda-sync health` probe.

The worker upserts its row at start, refreshes `beat_at` from an APScheduler interval job and
sets `stopped_at` when it stops. It also writes its instance id to a file in
`CODA_SYNC_DATA_DIR`, so that `coda-sync health`, which the container's health check runs in
the same container, checks the row of this worker and not the row of a replica.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from worker import __version__
from worker.database import Database, SessionTimeouts, describe_db_error
from worker.errors import SinkError
from worker.settings import Settings

logger = logging.getLogger(__name__)

INSTANCE_FILE_NAME = "worker-instance"
BEAT_TIMEOUT = 3.0  # seconds a heartbeat waits for a pooled connection
PROBE_TIMEOUT = 5.0  # seconds `coda-sync health` waits for PostgreSQL to connect or respond

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, kw_only=True)
class WorkerIdentity:
    """The values of this process's row in `coda_sync.workers`."""

    instance_id: str
    host: str
    pid: int
    version: str

    @classmethod
    def current(cls, instance_id: str) -> WorkerIdentity:
        """Describe the running process."""
        return cls(instance_id=instance_id, host=socket.gethostname(), pid=os.getpid(), version=__version__)


def instance_file(data_dir: Path) -> Path:
    """Return the path of the file that contains the running worker's instance id."""
    return data_dir / INSTANCE_FILE_NAME


def write_instance_file(data_dir: Path, instance_id: str) -> Path:
    """Write *instance_id* to the instance file, replacing it atomically; return its path."""
    path = instance_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{INSTANCE_FILE_NAME}.{os.getpid()}")
    partial.write_text(instance_id + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def read_instance_file(data_dir: Path) -> str | None:
    """Return the instance id the last worker started here wrote, or None when there is none."""
    try:
        text = instance_file(data_dir).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def beat(db: Database, identity: WorkerIdentity) -> None:
    """Insert or refresh this worker's row, raising `SinkError` when PostgreSQL fails.

    The wait for a pooled connection is short, so that an outage fails the beat quickly instead
    of holding the heartbeat job until the pool gives up.
    """
    try:
        with db.pool.connection(timeout=BEAT_TIMEOUT) as conn:
            conn.execute(
                "INSERT INTO coda_sync.workers (instance_id, host, pid, version)"
                " VALUES (%(id)s, %(host)s, %(pid)s, %(version)s)"
                " ON CONFLICT (instance_id) DO UPDATE SET beat_at = now(), stopped_at = NULL",
                {
                    "id": identity.instance_id,
                    "host": identity.host,
                    "pid": identity.pid,
                    "version": identity.version,
                },
            )
    except PoolTimeout:
        raise SinkError(f"no PostgreSQL connection within {BEAT_TIMEOUT:.0f} s") from None
    except psycopg.Error as exc:
        raise SinkError(f"PostgreSQL error: {describe_db_error(exc)}") from exc


def mark_stopped(conn: Connection, instance_id: str) -> None:
    """Record that the worker stopped."""
    conn.execute("UPDATE coda_sync.workers SET stopped_at = now() WHERE instance_id = %s", (instance_id,))


def prune_workers(conn: Connection, keep: timedelta) -> int:
    """Delete rows of workers that stopped or went silent more than *keep* ago; return the count."""
    cursor = conn.execute(
        "DELETE FROM coda_sync.workers WHERE COALESCE(stopped_at, beat_at) < now() - %s", (keep,)
    )
    return max(cursor.rowcount, 0)


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """This instance's row as the probe reads it; the age comes from the database's clock."""

    age: float  # seconds since beat_at
    stopped_at: datetime | None


def heartbeat_problem(instance_id: str, heartbeat: Heartbeat | None, max_age: float) -> str | None:
    """Return why the worker is unhealthy, or None when its heartbeat is fresh."""
    if heartbeat is None:
        return f"worker {instance_id} has no row in coda_sync.workers"
    if heartbeat.stopped_at is not None:
        return f"worker {instance_id} stopped at {heartbeat.stopped_at.isoformat(timespec='seconds')}"
    if heartbeat.age > max_age:
        return (
            f"the heartbeat of worker {instance_id} is {heartbeat.age:.0f} s old (limit "
            f"{max_age:.0f} s): its scheduler is stuck or it cannot write to PostgreSQL"
        )
    return None


def describe_stale_job(row: dict[str, Any]) -> str:
    """Return the line `coda-sync health --jobs` prints for a stale job."""
    success = row["last_success_at"]
    since = success.isoformat(timespec="seconds") if success else "never"
    return f"stale job {row['job_name']}: last success {since}, schedule {row['schedule']}"


def probe(settings: Settings, *, max_age: float, jobs: bool) -> tuple[bool, list[str]]:
    """Check this container's worker; return whether it is healthy and the lines to print."""
    instance_id = read_instance_file(settings.data_dir)
    if instance_id is None:
        path = instance_file(settings.data_dir)
        return False, [
            f"no worker has started here: {path} does not exist; check that `coda-sync run` "
            "runs with the same CODA_SYNC_DATA_DIR"
        ]

    db = _open_probe_database(settings)
    try:
        with db.connection() as conn:
            heartbeat = _read_heartbeat(conn, instance_id)
            stale = _stale_jobs(conn) if jobs else []
    finally:
        db.close()

    problem = heartbeat_problem(instance_id, heartbeat, max_age)
    lines = [problem] if problem else []
    lines.extend(describe_stale_job(row) for row in stale)
    if lines:
        return False, lines
    assert heartbeat is not None
    return True, [f"ok: worker {instance_id} beat {heartbeat.age:.0f} s ago"]


def _open_probe_database(settings: Settings) -> Database:
    url = settings.resolved_database_url()
    if url is None:
        from worker.embedded import is_running, start_embedded

        # A probe must not start the server it checks.
        if not is_running(settings.data_dir):
            raise SinkError(f"the embedded PostgreSQL in {settings.data_dir} is not running")
        url_text = start_embedded(settings.data_dir)
    else:
        url_text = url.get_secret_value()
    timeouts = SessionTimeouts(statement=PROBE_TIMEOUT, lock=PROBE_TIMEOUT, idle_in_transaction=60.0)
    db = Database(url_text, max_size=1, timeouts=timeouts, open_timeout=PROBE_TIMEOUT)
    db.open(timeout=PROBE_TIMEOUT)
    return db


def _read_heartbeat(conn: Connection, instance_id: str) -> Heartbeat | None:
    row = conn.execute(
        "SELECT extract(epoch FROM now() - beat_at)::float8, stopped_at"
        " FROM coda_sync.workers WHERE instance_id = %s",
        (instance_id,),
    ).fetchone()
    if row is None:
        return None
    return Heartbeat(age=float(row[0]), stopped_at=row[1])


def _stale_jobs(conn: Connection) -> Sequence[dict[str, Any]]:
    cursor = conn.execute(
        "SELECT job_name, last_success_at, schedule FROM coda_sync.job_health WHERE stale ORDER BY job_name"
    )
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
