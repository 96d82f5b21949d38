"""Catch-up after downtime, run history and its pruning, stale jobs and JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from worker_processes import (
    HOURLY,
    TOKEN,
    WorkerProcess,
    query,
    runs,
    wait_for,
    worker_env,
    write_config,
)

from worker.emulator import CodaEmulator


@pytest.fixture
def env(coda: CodaEmulator, database_url: str, tmp_path: Path) -> dict[str, str]:
    config = write_config(
        tmp_path / "jobs.toml", [("tasks", "grid-T1", HOURLY), ("stock", "grid-T2", HOURLY)]
    )
    return worker_env(coda=coda, database_url=database_url, config=config, data_dir=tmp_path / "data")


def coda_sync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_overdue_job_runs_once_after_start(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    assert coda_sync("sync", env=env).returncode == 0
    query(
        database_url,
        "UPDATE coda_sync.job_status SET last_success_at = now() - interval '2 hours'"
        " WHERE job_name = 'tasks'",
    )
    started_at = time.time()

    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_for(
            lambda: any(row[4].timestamp() > started_at for row in runs(database_url, "tasks")),
            30,
            "the overdue job did not run after start",
        )
        time.sleep(2)
        code, _ = worker.stop()
    finally:
        worker.kill()

    after_start = [row for row in runs(database_url) if row[4].timestamp() > started_at]
    assert code == 0
    assert [(row[0], row[2]) for row in after_start] == [("tasks", "succeeded")]


def test_history_prints_recent_runs(env: dict[str, str]) -> None:
    coda_sync("sync", env=env)
    coda_sync("sync", "tasks", env=env)

    text = coda_sync("history", env=env)
    one = coda_sync("history", "tasks", "--limit", "1", env=env)
    as_json = coda_sync("history", "--json", env=env)
    none = coda_sync("history", "nope", env=env)

    assert text.returncode == 0, text.stderr
    assert text.stdout.count("tasks: succeeded") == 2
    assert text.stdout.count("stock: succeeded") == 1
    assert ", 3 read, 3 inserted, 0 updated, 0 deleted" in text.stdout
    assert one.stdout.count("\n") == 1
    assert "tasks: succeeded in" in one.stdout
    rows = json.loads(as_json.stdout)
    # The first sync runs both jobs at once, so only the newest run has a fixed place.
    assert rows[0]["job_name"] == "tasks"
    assert sorted(row["job_name"] for row in rows) == ["stock", "tasks", "tasks"]
    assert rows[0]["rows_read"] == 3
    assert none.stdout == "no runs of job 'nope' are recorded in coda_sync.job_runs\n"


def test_history_rejects_zero_limit(env: dict[str, str]) -> None:
    result = coda_sync("history", "--limit", "0", env=env)

    assert result.returncode == 2
    assert "expected a number of at least 1" in result.stderr


def test_worker_prunes_old_history(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    coda_sync("sync", env=env)
    query(
        database_url,
        "INSERT INTO coda_sync.job_runs (run_id, job_name, started_at, outcome)"
        " VALUES ('old', 'tasks', now() - interval '40 days', 'succeeded'),"
        " ('recent', 'tasks', now() - interval '20 days', 'succeeded')",
    )

    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: "history_pruned" in worker.event_names(), 20, "the history was not pruned")
        code, _ = worker.stop()
    finally:
        worker.kill()

    kept = {row[0] for row in query(database_url, "SELECT run_id FROM coda_sync.job_runs")}
    assert code == 0
    assert "old" not in kept
    assert "recent" in kept


def test_status_marks_stale_job(env: dict[str, str], database_url: str) -> None:
    coda_sync("sync", env=env)
    query(
        database_url,
        "UPDATE coda_sync.job_status SET last_success_at = now() - interval '3 hours'"
        " WHERE job_name = 'stock'",
    )

    result = coda_sync("status", env=env)

    lines = result.stdout.splitlines()
    assert lines[0].startswith("stock: enabled, STALE, last run succeeded")
    assert lines[1].startswith("tasks: enabled, last run succeeded")


def test_json_logs_one_object_per_line(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    config = Path(env["CODA_SYNC_CONFIG"])
    config.write_text(
        config.read_text() + '\n[[jobs]]\nname = "broken"\ndoc_id = "NoSuchDoc"\n'
        'table_id = "grid-T1"\ntoken = "${CODA_TOKEN}"\n',
        encoding="utf-8",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(runs(database_url)) >= 3, 30, "the three jobs did not run")
        code, _ = worker.stop()
    finally:
        worker.kill()

    entries = worker.events()
    events = [entry.get("event") for entry in entries]
    succeeded = [entry for entry in entries if entry.get("event") == "run_succeeded"]
    assert code == 0
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert events.count("worker_started") == 1
    assert events.count("worker_stopping") == 1
    assert events.count("worker_stopped") == 1
    assert {entry["job"] for entry in succeeded} == {"tasks", "stock"}
    assert all(entry["run_id"] and entry["rows_read"] == 3 for entry in succeeded)
    failures = [entry for entry in entries if entry["level"] == "error"]
    assert [(entry["event"], entry["job"]) for entry in failures] == [("run_failed", "broken")]
    assert TOKEN not in worker.log()
