"""The PostgreSQL side under pressure: locks, timeouts, foreign tables, mode switches, renames."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from tests.integration.conftest import DOC, TOKEN_ALL, JobFactory, add_rows, fetch_rows, fetch_status
from worker import status
from worker.database import Database, SessionTimeouts, migrate
from worker.emulator import CodaEmulator, Fault
from worker.source import ClientOptions, CodaClient
from worker.sync import JobRunner, RunnerOptions

SERVER_ERROR = {"statusCode": 500, "statusMessage": "Internal Server Error", "message": "boom"}


@pytest.fixture
def short_db(database_url: str) -> Iterator[Database]:
    """A migrated pool on the test database: locks time out after 0.5 s, statements after 1.5 s."""
    database = Database(database_url, timeouts=SessionTimeouts(statement=1.5, lock=0.5))
    database.open()
    migrate(database)
    try:
        yield database
    finally:
        database.close()


def runner_for(db: Database, coda: CodaEmulator) -> JobRunner:
    """Build a runner on *db* whose clients skip backoff waits."""

    def factory(token: SecretStr, options: ClientOptions) -> CodaClient:
        options.sleep = lambda seconds: None
        return CodaClient(coda.base_url, token, options=options)

    options = RunnerOptions(base_url=coda.base_url, timeout=5.0, connect_timeout=2.0, max_retry_time=300.0)
    return JobRunner(db, options, client_factory=factory)


def start_slow_run(runner: JobRunner, coda: CodaEmulator, make_job: JobFactory) -> threading.Thread:
    """Start a run of 'tasks' whose second page takes 2.5 s, and return once it is reading."""
    coda.row_page_cap = 1
    coda.inject(Fault(endpoint="listRows", when_page_token=True, delay=2.5))
    thread = threading.Thread(target=runner.run, args=(make_job(),))
    thread.start()
    # The emulator logs a request only after its delay, so wait for the first page instead and
    # give the run a moment to send the slow second one.
    deadline = time.monotonic() + 5.0
    while not [r for r in coda.requests if r.path.endswith("/rows")] and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    return thread


def test_concurrent_run_of_job_skipped(short_db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    # A second run during a read must be skipped at once, not wait for lock_timeout and fail.
    add_rows(coda, "grid-T1", 3)
    runner = runner_for(short_db, coda)
    runner.run(make_job())
    coda.clear_requests()
    slow = start_slow_run(runner, coda, make_job)

    second = runner.run(make_job())
    slow.join()

    assert second.outcome == "skipped", second.message
    assert fetch_status(short_db, "tasks")["last_outcome"] == "succeeded"


def test_register_during_long_run(short_db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    # `coda-sync sync`, `enable` and a reload all register jobs while runs may be reading.
    add_rows(coda, "grid-T1", 3)
    runner = runner_for(short_db, coda)
    runner.run(make_job())
    coda.clear_requests()
    slow = start_slow_run(runner, coda, make_job)

    try:
        with short_db.connection() as conn:
            status.register_jobs(conn, [make_job(), make_job("stock", table_id="grid-T2")])
    finally:
        slow.join()

    assert fetch_status(short_db, "stock")["in_config"] is True


def test_status_row_locked_fails_run(
    short_db: Database, database_url: str, coda: CodaEmulator, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner = runner_for(short_db, coda)
    runner.run(make_job())
    coda.update_row(DOC, "grid-T1", "i-r1", {"c-qty": 30})

    with psycopg.connect(database_url) as other:
        other.execute("SELECT 1 FROM coda_sync.job_status WHERE job_name = 'tasks' FOR UPDATE")
        started = time.monotonic()
        result = runner.run(make_job())
        elapsed = time.monotonic() - started

    assert result.outcome == "failed"
    assert result.error_kind == "database_error"
    assert "lock timeout" in (result.message or "")
    assert elapsed < 3.0
    assert fetch_rows(short_db, "tasks")["i-r1"]["values"]["c-qty"] == 3  # type: ignore[index]


def test_statement_timeout_in_merge_rolls_back(
    short_db: Database, database_url: str, coda: CodaEmulator, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner = runner_for(short_db, coda)
    runner.run(make_job())
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION coda.slow_delete() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(3); RETURN OLD; END $$"
        )
        admin.execute(
            "CREATE TRIGGER slow_delete BEFORE DELETE ON coda.tasks"
            " FOR EACH ROW EXECUTE FUNCTION coda.slow_delete()"
        )
    coda.update_row(DOC, "grid-T1", "i-r1", {"c-qty": 30})
    coda.add_row(DOC, "grid-T1", {"c-name": "New", "c-qty": 1}, row_id="i-r9")
    coda.delete_row(DOC, "grid-T1", "i-r4")

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "database_error"
    assert "statement timeout" in (result.message or "")
    rows = fetch_rows(short_db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r2", "i-r3", "i-r4"]
    assert rows["i-r1"]["values"]["c-qty"] == 3  # type: ignore[index]
    row = fetch_status(short_db, "tasks")
    assert row["enabled"] is True
    assert row["last_outcome"] == "failed"
    assert row["rows_total"] == 4


def test_history_failure_rolls_back_data(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    with db.connection() as conn:
        conn.execute(
            "ALTER TABLE coda_sync.job_runs"
            " ADD CONSTRAINT no_success CHECK (outcome <> 'succeeded') NOT VALID"
        )
    coda.update_row(DOC, "grid-T1", "i-r1", {"c-qty": 30})
    coda.add_row(DOC, "grid-T1", {"c-name": "New", "c-qty": 1}, row_id="i-r9")

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "database_error"
    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r2", "i-r3"]
    assert rows["i-r1"]["values"]["c-qty"] == 3  # type: ignore[index]
    row = fetch_status(db, "tasks")
    assert row["last_outcome"] == "failed"
    assert row["rows_inserted"] == 3
    with db.connection() as conn:
        columns = conn.execute("SELECT count(*) FROM coda_sync.table_columns").fetchone()
    assert columns == (2,)


@pytest.mark.parametrize(
    "definition",
    [
        "_coda_row_id text PRIMARY KEY, _coda_row_name text, note text",
        "_coda_row_id integer PRIMARY KEY, _coda_values jsonb, _coda_synced_at timestamptz",
    ],
    ids=["no-values-column", "integer-id"],
)
def test_foreign_table_shape_fails_safely(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, definition: str
) -> None:
    with db.connection() as conn:
        conn.execute("CREATE SCHEMA coda")
        conn.execute(sql.SQL("CREATE TABLE coda.tasks ({})").format(sql.SQL(definition)))
        conn.execute("INSERT INTO coda.tasks (_coda_row_id) VALUES ('42')")
    add_rows(coda, "grid-T1", 2)

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "database_error"
    assert fetch_status(db, "tasks")["enabled"] is True
    with db.connection() as conn:
        assert conn.execute("SELECT _coda_row_id::text FROM coda.tasks").fetchall() == [("42",)]


def test_schema_of_other_role_fails_safely(
    database_url: str, coda: CodaEmulator, make_job: JobFactory
) -> None:
    role = f"qa_worker_{uuid.uuid4().hex[:8]}"
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(str(params["dbname"])), sql.Identifier(role)
            )
        )
        admin.execute("CREATE SCHEMA coda")
        admin.execute("CREATE TABLE coda.tasks (_coda_row_id text PRIMARY KEY)")
    params["user"] = role
    worker_db = Database(psycopg.conninfo.make_conninfo(**params))
    try:
        worker_db.open()
        migrate(worker_db)
        add_rows(coda, "grid-T1", 2)

        result = runner_for(worker_db, coda).run(make_job())

        assert result.outcome == "failed"
        assert result.error_kind == "database_error"
        assert "permission denied" in (result.message or "")
        row = fetch_status(worker_db, "tasks")
        assert row["enabled"] is True
        assert row["last_outcome"] == "failed"
    finally:
        worker_db.close()
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                    sql.Identifier(str(params["dbname"])), sql.Identifier(role)
                )
            )
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_deletes_switch_soft_hard_soft(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner.run(make_job(deletes="hard"))
    xmin = fetch_rows(db, "tasks")["i-r1"]["xmin"]
    coda.delete_row(DOC, "grid-T1", "i-r2")

    soft = runner.run(make_job(deletes="soft"))
    hard = runner.run(make_job(deletes="hard"))
    coda.add_row(DOC, "grid-T1", {"c-name": "Beta", "c-qty": 5}, row_id="i-r2")
    back = runner.run(make_job(deletes="soft"))
    again = runner.run(make_job(deletes="soft"))

    assert [r.outcome for r in (soft, hard, back, again)] == ["succeeded"] * 4
    assert soft.counts is not None
    assert soft.counts.deleted == 1
    assert hard.counts is not None
    assert hard.counts.deleted == 1
    assert back.counts is not None
    assert back.counts.inserted == 1
    assert again.counts is not None
    assert (again.counts.inserted, again.counts.updated, again.counts.deleted) == (0, 0, 0)
    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r2", "i-r3", "i-r4"]
    assert rows["i-r1"]["xmin"] == xmin
    with db.connection() as conn:
        assert conn.execute(
            "SELECT count(*) FROM coda.tasks WHERE _coda_deleted_at IS NOT NULL"
        ).fetchone() == (0,)
    assert fetch_status(db, "tasks")["rows_total"] == 4


def test_three_failures_keep_last_success(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    add_rows(coda, "grid-T1", 3)
    runner = runner_for(db, coda)
    runner.run(make_job())
    success = fetch_status(db, "tasks")
    coda.update_row(DOC, "grid-T1", "i-r1", {"c-qty": 30})
    coda.inject(Fault(endpoint="listRows", status=500, body=SERVER_ERROR, times=0))

    failures = [runner.run(make_job()) for _ in range(3)]

    assert [r.error_kind for r in failures] == ["server_error"] * 3
    row = fetch_status(db, "tasks")
    assert row["consecutive_failures"] == 3
    assert row["enabled"] is True
    assert row["needs_attention"] is True
    assert row["last_success_at"] == success["last_success_at"]
    for key in ("rows_total", "rows_read", "rows_inserted", "rows_updated", "rows_deleted"):
        assert row[key] == success[key], key
    assert fetch_rows(db, "tasks")["i-r1"]["values"]["c-qty"] == 3  # type: ignore[index]
    with db.connection() as conn:
        outcomes = conn.execute(
            "SELECT outcome, count(*) FROM coda_sync.job_runs GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert outcomes == [("failed", 3), ("succeeded", 1)]

    coda.clear_faults()
    recovered = runner.run(make_job())

    assert recovered.outcome == "succeeded"
    assert fetch_status(db, "tasks")["consecutive_failures"] == 0
    assert fetch_status(db, "tasks")["needs_attention"] is False


def test_renamed_job_writes_no_tuple(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 5)
    runner.run(make_job("tasks"))
    before = fetch_rows(db, "tasks")

    result = runner.run(make_job("todo", target_table="tasks"))

    assert result.counts is not None
    assert (result.counts.inserted, result.counts.updated, result.counts.deleted) == (0, 0, 0)
    assert fetch_rows(db, "tasks") == before
    assert fetch_status(db, "todo")["rows_total"] == 5


def test_second_job_on_same_table_withheld(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Two config files (or replicas with different configs) may point two jobs at one table.
    add_rows(coda, "grid-T1", 3)
    coda.add_row(DOC, "grid-T2", {"c-name": "Stock", "c-qty": 1}, row_id="i-s1")
    runner.run(make_job("tasks"))

    other = runner.run(make_job("stock", table_id="grid-T2", target_table="tasks"))

    assert other.attention is not None
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3", "i-s1"]


def test_enable_keeps_other_jobs_configured(
    db: Database, database_url: str, coda: CodaEmulator, make_job: JobFactory, tmp_path: Path
) -> None:
    # `coda-sync enable` registers one job, which must not mark the others as removed.
    jobs = [make_job("tasks"), make_job("stock", table_id="grid-T2")]
    with db.connection() as conn:
        status.register_jobs(conn, jobs)
    config = tmp_path / "jobs.toml"
    config.write_text(
        "".join(
            f'[[jobs]]\nname = "{job.name}"\ndoc_id = "{DOC}"\ntable_id = "{job.table_id}"\n'
            f'token = "{TOKEN_ALL}"\n\n'
            for job in jobs
        ),
        encoding="utf-8",
    )
    environ = dict(os.environ)
    environ.update(
        CODA_SYNC_CONFIG=str(config),
        CODA_SYNC_DATABASE_URL=database_url,
        CODA_API_BASE_URL=coda.base_url,
    )

    done = subprocess.run(
        [sys.executable, "-m", "worker", "enable", "tasks"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert fetch_status(db, "stock")["in_config"] is True
