"""Failure handling: retries, deadlines, pagination defences, the delete guard and error kinds."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from pydantic import SecretStr

from tests.integration.conftest import DOC, JobFactory, add_rows, fetch_rows, fetch_status
from worker.cli import run_jobs
from worker.database import Database, open_database
from worker.emulator import CodaEmulator, Column, Fault
from worker.errors import SinkError
from worker.pacing import PacerRegistry
from worker.source import ClientOptions, CodaClient
from worker.sync import JobRunner, RunnerOptions

TOO_MANY = {"statusCode": 429, "statusMessage": "Too Many Requests", "message": "Too Many Requests"}


def recording_runner(db: Database, coda: CodaEmulator, delays: list[float], **options: float) -> JobRunner:
    """A runner whose clients record each backoff wait instead of sleeping."""

    def factory(token: SecretStr, client_options: ClientOptions) -> CodaClient:
        client_options.sleep = delays.append
        return CodaClient(coda.base_url, token, options=client_options)

    runner_options = RunnerOptions(base_url=coda.base_url, timeout=5.0, connect_timeout=2.0, **options)
    return JobRunner(db, runner_options, client_factory=factory)


def rows_requests(coda: CodaEmulator) -> list[object]:
    return [r for r in coda.requests if r.path.endswith("/rows")]


def test_rate_limit_honours_retry_after(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 3)
    coda.inject(
        Fault(
            endpoint="listRows", when_page_token=True, status=429, headers={"Retry-After": "3"}, body=TOO_MANY
        )
    )
    delays: list[float] = []

    result = recording_runner(db, coda, delays).run(make_job())

    assert result.outcome == "succeeded"
    assert delays == [3.0]
    assert len(rows_requests(coda)) == 3
    assert fetch_status(db, "tasks")["last_retries"] == 1
    assert len(fetch_rows(db, "tasks")) == 3


def test_rate_limit_without_retry_after_backs_off(
    db: Database, coda: CodaEmulator, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    coda.inject(Fault(endpoint="listRows", status=429, body=TOO_MANY, times=2))
    delays: list[float] = []

    result = recording_runner(db, coda, delays).run(make_job())

    assert result.outcome == "succeeded"
    assert len(delays) == 2
    assert 0.5 <= delays[0] <= 1.0
    assert 0.5 <= delays[1] <= 2.0


def test_rate_limit_every_attempt_fails_run(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    add_rows(coda, "grid-T1", 3)
    runner = recording_runner(db, coda, [])
    runner.run(make_job())
    coda.delete_row(DOC, "grid-T1", "i-r1")
    coda.inject(Fault(endpoint="listRows", status=429, body=TOO_MANY, times=0))

    result = runner.run(make_job())

    row = fetch_status(db, "tasks")
    assert result.outcome == "failed"
    assert row["last_error_kind"] == "rate_limited"
    assert row["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 3
    assert len(rows_requests(coda)) == 1 + 6  # the first run, then the whole retry budget


def test_pacing_shares_budget_per_user(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    # Three jobs of one user, 60 pages each, against a server that allows 100 reads per 6 s
    # per user and sends no Retry-After.
    coda.rate_limit = (100, 6.0)
    coda.rate_limit_retry_after = None
    coda.row_page_cap = 5
    jobs = []
    for number, table_id in enumerate(("grid-T1", "grid-T2", "grid-T3"), start=1):
        if table_id == "grid-T3":
            coda.add_table(
                DOC,
                table_id,
                name="Third",
                columns=[Column("c-name", "Name", "text", display=True), Column("c-qty", "Qty", "number")],
            )
        for row in range(300):
            coda.add_row(DOC, table_id, {"c-name": f"row {row}", "c-qty": row})
        token = f"tok-alice-{number}-0123456"
        coda.add_token(token, user="alice@example.test", scope=None)
        jobs.append(make_job(f"job{number}", table_id=table_id, token=token))
    options = RunnerOptions(base_url=coda.base_url, timeout=5.0, connect_timeout=2.0, max_retry_time=60.0)
    runner = JobRunner(db, options, pacers=PacerRegistry(100, 6.0))

    started = time.monotonic()
    results = run_jobs(runner, jobs, parallel=3)
    elapsed = time.monotonic() - started

    assert [r.outcome for r in results] == ["succeeded"] * 3
    assert all(len(fetch_rows(db, f"job{n}")) == 300 for n in (1, 2, 3))
    assert {runner.pacers.user_of(job.token_fingerprint or "") for job in jobs} == {"alice@example.test"}
    limited = [r for r in coda.requests if r.status == 429]
    times = sorted(r.at for r in coda.requests if r.status != 429)
    busiest = max(sum(1 for t in times if start <= t < start + 6.0) for start in times)
    print(
        f"\npacing: {len(times)} requests in {elapsed:.1f} s, at most {busiest} in any 6 s, "
        f"{len(limited)} answered 429"
    )
    assert busiest <= 100
    assert limited == []


def test_hung_server_times_out_without_blocking_others(
    db: Database, coda: CodaEmulator, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    add_rows(coda, "grid-T2", 2)
    coda.inject(
        Fault(
            endpoint=r"/tables/grid-T1/rows", delay=3.0, times=0, status=200, body={"items": [], "href": "x"}
        )
    )
    options = RunnerOptions(base_url=coda.base_url, timeout=0.5, connect_timeout=0.5, max_retry_time=1.0)
    runner = JobRunner(db, options)

    results = run_jobs(runner, [make_job("tasks"), make_job("stock", table_id="grid-T2")], parallel=2)

    hung, other = results
    assert hung.outcome == "failed"
    assert hung.error_kind == "timeout"
    assert other.outcome == "succeeded"
    assert other.duration < 2.0
    assert fetch_status(db, "tasks")["enabled"] is True


def test_run_deadline_stops_slow_run(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    coda.row_page_cap = 1
    add_rows(coda, "grid-T1", 5)
    coda.inject(Fault(endpoint="listRows", when_page_token=True, delay=0.6, times=0))
    options = RunnerOptions(base_url=coda.base_url, timeout=5.0, connect_timeout=1.0, max_retry_time=1.0)

    result = JobRunner(db, options).run(make_job(run_timeout=1.5))

    assert result.outcome == "failed"
    assert result.error_kind == "timeout"
    assert result.duration < 3.0


def test_empty_pages_with_token_stop(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    coda.inject(Fault(endpoint="listRows", action="empty_page_with_token", times=0))

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert "empty pages" in (result.message or "")
    assert len(fetch_rows(db, "tasks")) == 3


def test_rejected_page_token_restarts_once(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 3)
    coda.inject(Fault(endpoint="listRows", action="reject_page_token", times=1))

    result = runner.run(make_job())

    first_pages = [r for r in rows_requests(coda) if "pageToken" not in r.query]
    assert result.outcome == "succeeded"
    assert len(first_pages) == 2
    assert len(fetch_rows(db, "tasks")) == 3


def test_rejected_page_token_twice_fails(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 5)
    runner.run(make_job())
    coda.delete_row(DOC, "grid-T1", "i-r5")
    coda.inject(Fault(endpoint="listRows", action="reject_page_token", times=0))

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_request"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 5


def test_delete_guard_withholds_mass_delete(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner.run(make_job())
    for row_id in ("i-r1", "i-r2", "i-r3"):
        coda.delete_row(DOC, "grid-T1", row_id)
    coda.update_row(DOC, "grid-T1", "i-r4", {"c-qty": 90})
    coda.add_row(DOC, "grid-T1", {"c-name": "New", "c-qty": 1}, row_id="i-r9")

    result = runner.run(make_job())

    row = fetch_status(db, "tasks")
    assert result.outcome == "succeeded"
    assert row["needs_attention"] is True
    assert row["last_error_kind"] == "mass_delete_withheld"
    assert row["deletes_withheld"] == 3
    assert row["enabled"] is True
    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r2", "i-r3", "i-r4", "i-r9"]
    assert rows["i-r4"]["values"]["c-qty"] == 90  # type: ignore[index]


def test_delete_guard_override_deletes(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner.run(make_job())
    for row_id in ("i-r1", "i-r2", "i-r3"):
        coda.delete_row(DOC, "grid-T1", row_id)

    by_flag = runner.run(make_job(), allow_mass_delete=True)

    assert by_flag.counts is not None
    assert by_flag.counts.deleted == 3
    assert fetch_status(db, "tasks")["needs_attention"] is False
    assert sorted(fetch_rows(db, "tasks")) == ["i-r4"]


def test_delete_guard_job_setting_allows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job(allow_mass_delete=True))
    coda.delete_row(DOC, "grid-T1", "i-r1")
    coda.delete_row(DOC, "grid-T1", "i-r2")

    runner.run(make_job(allow_mass_delete=True))

    assert fetch_rows(db, "tasks") == {}


def test_delete_guard_empty_read_keeps_rows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    coda.inject(Fault(endpoint="listRows", status=200, body={"items": [], "href": "x"}))

    result = runner.run(make_job(max_delete_fraction=1.0))

    assert result.attention is not None
    assert "no rows" in result.attention
    assert len(fetch_rows(db, "tasks")) == 3


def test_delete_guard_checks_row_count(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner.run(make_job())
    coda.delete_row(DOC, "grid-T1", "i-r1")
    table = coda.table_payload(DOC, "grid-T1") | {"rowCount": 4}
    coda.inject(Fault(endpoint="getTable", status=200, body=table))

    result = runner.run(make_job())

    assert result.attention is not None
    assert "rowCount 4" in result.attention
    assert len(fetch_rows(db, "tasks")) == 4


def test_soft_delete_revives_returning_row(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job(deletes="soft"))
    stored = coda.rows(DOC, "grid-T1")[1]
    coda.delete_row(DOC, "grid-T1", "i-r2")
    runner.run(make_job(deletes="soft"))
    coda.add_row(
        DOC,
        "grid-T1",
        {"c-name": "Beta", "c-qty": 5},
        row_id="i-r2",
        created_at=stored["createdAt"],
        updated_at=stored["updatedAt"],
    )

    runner.run(make_job(deletes="soft"))

    with db.connection() as conn:
        marked = conn.execute("SELECT count(*) FROM coda.tasks WHERE _coda_deleted_at IS NOT NULL").fetchone()
    assert marked == (0,)
    assert fetch_status(db, "tasks")["rows_total"] == 3


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"items": [{"id": "i-r1", "values": {}', "application/json"),
        ("not json at all", "application/json"),
        ("<html><body>Bad gateway</body></html>", "text/html"),
        ('["a", "list"]', "application/json"),
    ],
    ids=["truncated", "garbage", "html", "not-object"],
)
def test_bad_response_fails_without_disabling(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, body: str, content_type: str
) -> None:
    add_rows(coda, "grid-T1", 2)
    coda.inject(Fault(endpoint="listRows", status=200, body=body, content_type=content_type, times=0))

    result = runner.run(make_job())

    row = fetch_status(db, "tasks")
    assert result.outcome == "failed"
    assert row["last_error_kind"] == "bad_response"
    assert row["enabled"] is True


@pytest.mark.parametrize("status_code", [400, 403, 503], ids=["400", "403", "503"])
def test_doc_too_large_needs_attention(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, status_code: int
) -> None:
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job())
    body = {"statusCode": status_code, "statusMessage": "Error", "message": "Doc is too large for API access"}
    coda.inject(Fault(endpoint="listRows", status=status_code, body=body, times=0))

    result = runner.run(make_job())

    row = fetch_status(db, "tasks")
    assert result.outcome == "failed"
    assert row["last_error_kind"] == "doc_too_large"
    assert row["enabled"] is True
    assert row["needs_attention"] is True
    assert "size limit" in row["last_error"]
    assert len(fetch_rows(db, "tasks")) == 2


def test_server_error_retried_then_succeeds(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    add_rows(coda, "grid-T1", 2)
    coda.inject(
        Fault(endpoint="listRows", status=502, body="bad gateway", content_type="text/plain", times=2)
    )
    delays: list[float] = []

    result = recording_runner(db, coda, delays).run(make_job())

    assert result.outcome == "succeeded"
    assert len(delays) == 2


def test_freshness_header_not_sent(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # With X-Coda-Doc-Version: latest, Coda returns 400 while its snapshot lags the editor; an
    # hourly job takes the snapshot and sees recent edits on its next run instead.
    add_rows(coda, "grid-T1", 1)

    runner.run(make_job())

    assert all("x-coda-doc-version" not in {k.lower() for k in r.headers} for r in coda.requests)
    assert all(
        r.headers.get("User-Agent", r.headers.get("user-agent", "")).startswith("coda-sync/")
        for r in coda.requests
    )


def test_database_restart_fails_one_run_only(
    db: Database, database_url: str, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 1
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    coda.add_row(DOC, "grid-T1", {"c-name": "New", "c-qty": 1}, row_id="i-r9")
    coda.inject(Fault(endpoint="listRows", when_page_token=True, delay=1.0))

    def terminate_sessions() -> None:
        time.sleep(0.5)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'coda-sync' AND pid <> pg_backend_pid()"
            )

    killer = threading.Thread(target=terminate_sessions)
    killer.start()
    failed = runner.run(make_job())
    killer.join()
    recovered = runner.run(make_job())

    assert failed.outcome == "failed"
    assert failed.error_kind == "database_error"
    assert recovered.outcome == "succeeded"
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3", "i-r9"]


def test_sessions_have_timeouts(db: Database) -> None:
    with db.connection() as conn:
        settings = {
            name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]  # type: ignore[index]
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        }
    assert all(value not in ("0", "") for value in settings.values()), settings


def test_database_down_at_start_retries_then_fails() -> None:
    sleeps: list[float] = []

    with pytest.raises(SinkError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:9/"):
        open_database(
            "postgresql://coda@127.0.0.1:9/none?connect_timeout=1",
            wait=5.0,
            sleep=sleeps.append,
            attempt_timeout=1.0,
        )

    assert sleeps[:1] == [1.0]


@pytest.mark.parametrize(
    ("column_id", "value"),
    [
        ('c-ü/"quoted" & <b>', "Zürich – 東京 🚀\nzweite Zeile"),
        ("c-long", "x" * 1_000_000),
        ("c-nested", {"a": [1, 2.5, None, True, {"b": "ö"}]}),
        ("c-empty", ""),
    ],
    ids=["odd-id", "one-megabyte", "nested", "empty"],
)
def test_hostile_values_round_trip(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, column_id: str, value: object
) -> None:
    add_rows(coda, "grid-T1", 1)
    row = coda.rows(DOC, "grid-T1")[0]
    row["values"][column_id] = value
    coda.inject(Fault(endpoint="listRows", status=200, body={"items": [row], "href": "x"}))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert fetch_rows(db, "tasks")["i-r1"]["values"][column_id] == value  # type: ignore[index]


def test_nul_character_stored_as_replacement(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 1)
    row = coda.rows(DOC, "grid-T1")[0]
    row["values"]["c-name"] = "a\x00b"
    coda.inject(Fault(endpoint="listRows", status=200, body={"items": [row], "href": "x"}))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert fetch_rows(db, "tasks")["i-r1"]["values"]["c-name"] == "a\ufffdb"  # type: ignore[index]


def test_stale_failure_keeps_newer_success(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # A replica whose run stalled and lost its session reports its failure after a newer run
    # succeeded; the newer success stays the job's state.
    from datetime import UTC, datetime, timedelta

    from worker import status

    add_rows(coda, "grid-T1", 2)
    runner.run(make_job())
    stalled_start = datetime.now(UTC) - timedelta(minutes=5)

    with db.connection() as conn:
        status.record_failure(
            conn,
            "tasks",
            outcome="failed",
            kind="database_error",
            message="terminating connection due to idle-in-transaction timeout",
            duration=300.0,
            stats=None,
            started_at=stalled_start,
        )

    row = fetch_status(db, "tasks")
    assert row["last_outcome"] == "succeeded"
    assert row["consecutive_failures"] == 0
    assert row["needs_attention"] is False
