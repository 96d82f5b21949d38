"""SIGHUP makes `coda-sync run` re-read its jobs file."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from worker_processes import (
    EVERY_TWO_SECONDS,
    HOURLY,
    WorkerProcess,
    query,
    runs,
    wait_for,
    worker_env,
    write_config,
)

from worker.emulator import CodaEmulator


def status_row(database_url: str, job: str) -> tuple[bool, str | None]:
    rows = query(
        database_url, "SELECT in_config, last_outcome FROM coda_sync.job_status WHERE job_name = %s", [job]
    )
    return rows[0] if rows else (False, None)


def test_reload_applies_added_removed_and_rescheduled_jobs(
    coda: CodaEmulator, database_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "jobs.toml", [("tasks", "grid-T1", EVERY_TWO_SECONDS), ("stock", "grid-T2", HOURLY)]
    )
    env = worker_env(coda=coda, database_url=database_url, config=config, data_dir=tmp_path / "data")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: len(runs(database_url, "tasks")) >= 2, 30, "tasks did not run twice")
        wait_for(lambda: runs(database_url, "stock"), 30, "stock did not run at start")
        write_config(config, [("stock", "grid-T2", EVERY_TWO_SECONDS), ("extra", "grid-T1", HOURLY)])
        worker.send(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in worker.event_names(), 10, "no reload was logged")
        reloaded_at = time.time()
        tasks_runs = len(runs(database_url, "tasks"))
        wait_for(lambda: runs(database_url, "extra"), 10, "the added job did not run")

        def stock_runs_after_reload() -> int:
            return sum(1 for row in runs(database_url, "stock") if row[4].timestamp() > reloaded_at)

        wait_for(lambda: stock_runs_after_reload() >= 2, 10, "the new schedule of stock did not apply")
        time.sleep(2.5)
        tasks_runs_later = len(runs(database_url, "tasks"))
        code, _ = worker.stop()
    finally:
        worker.kill()

    reload_event = next(entry for entry in worker.events() if entry.get("event") == "config_reloaded")
    assert code == 0
    assert reload_event["added"] == ["extra"]
    assert reload_event["removed"] == ["tasks"]
    assert reload_event["rescheduled"] == ["stock"]
    assert tasks_runs_later <= tasks_runs + 1  # one run may have started before the reload
    assert status_row(database_url, "tasks") == (False, "succeeded")
    assert status_row(database_url, "extra") == (True, "succeeded")
    assert query(database_url, "SELECT count(*) FROM coda.tasks") == [(3,)]


def test_invalid_reload_keeps_previous_config(coda: CodaEmulator, database_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "jobs.toml", [("tasks", "grid-T1", EVERY_TWO_SECONDS)])
    env = worker_env(coda=coda, database_url=database_url, config=config, data_dir=tmp_path / "data")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_for(lambda: runs(database_url, "tasks"), 30, "tasks did not run")
        config.write_text('[[jobs]]\nname = "tasks"\nschedule = "every hour"\n', encoding="utf-8")
        worker.send(signal.SIGHUP)
        wait_for(lambda: "config_reload_failed" in worker.event_names(), 10, "no failed reload was logged")
        failed_at = time.time()

        def runs_after_failure() -> int:
            return sum(1 for row in runs(database_url, "tasks") if row[4].timestamp() > failed_at)

        wait_for(lambda: runs_after_failure() >= 2, 10, "the previous config stopped running")
        code, _ = worker.stop()
    finally:
        worker.kill()

    failure = next(entry for entry in worker.events() if entry.get("event") == "config_reload_failed")
    assert code == 0
    assert failure["level"] == "error"
    assert str(config) in failure["message"]
    assert status_row(database_url, "tasks") == (True, "succeeded")
