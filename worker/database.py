"""PostgreSQL connections and schema migrations.

The worker keeps a small `psycopg_pool.ConnectionPool`, checks each connection before handing
it out (so a database restart costs one failed run, not a restart of the worker), and sets
statement, lock and idle-in-transaction timeouts on every session it opens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from worker.errors import SinkError

logger = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 0x636F6461  # an arbitrary advisory lock key: "coda" in ASCII
APPLICATION_NAME = "coda-sync"


@dataclass(frozen=True, kw_only=True)
class SessionTimeouts:
    """Server-side limits set on each session, in seconds."""

    statement: float = 300.0
    lock: float = 30.0
    idle_in_transaction: float = 3600.0


class Database:
    """A pool of connections to the worker's PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        max_size: int = 8,
        timeouts: SessionTimeouts | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.timeouts = timeouts or SessionTimeouts()
        self._url = url
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            check=ConnectionPool.check_connection,
            configure=self._configure,
            kwargs={"autocommit": True, "application_name": APPLICATION_NAME},
            timeout=open_timeout,
            name="coda-sync",
        )

    def open(self, *, timeout: float = 10.0) -> None:
        """Open the pool, raising `SinkError` when no connection succeeds within *timeout*."""
        try:
            self.pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            self.pool.close()
            raise SinkError(
                f"cannot connect to PostgreSQL at {describe_url(self._url)} within {timeout:.0f} s; "
                "check CODA_SYNC_DATABASE_URL and that the server is running"
            ) from None

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """Lend a checked connection in autocommit mode; database errors become `SinkError`."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise SinkError(
                f"no PostgreSQL connection available from {describe_url(self._url)}; "
                "the server may be down or overloaded"
            ) from None
        except psycopg.Error as exc:
            raise SinkError(f"PostgreSQL error: {describe_db_error(exc)}") from exc

    def _configure(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        timeouts = self.timeouts
        settings = {
            "statement_timeout": _milliseconds(timeouts.statement),
            "lock_timeout": _milliseconds(timeouts.lock),
            "idle_in_transaction_session_timeout": _milliseconds(timeouts.idle_in_transaction),
            "timezone": "UTC",
        }
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def describe_url(url: str) -> str:
    """Describe a libpq URL or DSN by host, port and database, leaving out the password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unparsable database URL)"
    host = str(params.get("host") or "localhost").rsplit("@", 1)[-1]  # never part of a password
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or "postgres"
    return f"{host}:{port}/{dbname}"


def describe_db_error(exc: psycopg.Error) -> str:
    """Return one line about a psycopg error, with its SQLSTATE when there is one."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = exc.sqlstate
    return f"{message} (SQLSTATE {code})" if code else message


def _milliseconds(seconds: float) -> str:
    return str(int(seconds * 1000))


def migration_scripts() -> list[tuple[int, str, str]]:
    """Return (version, name, SQL) of every bundled migration, in order."""
    folder = resources.files("worker") / "sql" / "migrations"
    scripts = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            scripts.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(scripts)


def migrate(db: Database) -> list[str]:
    """Apply the migrations this database lacks; return the names applied.

    Replicas starting together serialise on an advisory lock, so each migration runs once.
    """
    applied: list[str] = []
    with db.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS coda_sync")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS coda_sync.schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = conn.execute("SELECT version FROM coda_sync.schema_migrations").fetchall()
        done = {row[0] for row in rows}
        for version, name, script in migration_scripts():
            if version in done:
                continue
            conn.execute(sql.SQL(script))
            conn.execute(
                "INSERT INTO coda_sync.schema_migrations (version, name) VALUES (%s, %s)",
                (version, name),
            )
            applied.append(name)
    for name in applied:
        logger.info("applied migration %s", name, extra={"event": "migration_applied"})
    return applied


def open_database(
    url: str,
    *,
    wait: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    max_size: int = 8,
    attempt_timeout: float = 3.0,
    timeouts: SessionTimeouts | None = None,
) -> Database:
    """Open a pool and migrate, retrying with a logged backoff for up to *wait* seconds.

    Each attempt waits at most *attempt_timeout* seconds for a first connection.
    """
    deadline = time.monotonic() + wait
    delay = 1.0
    while True:
        db = Database(url, max_size=max_size, timeouts=timeouts)
        try:
            db.open(timeout=attempt_timeout)
            migrate(db)
            return db
        except SinkError as exc:
            db.close()
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "database not ready, retrying in %.0f s: %s",
                delay,
                exc,
                extra={"event": "database_retry", "delay": delay},
            )
            sleep(delay)
            delay = min(delay * 2, 30.0)
