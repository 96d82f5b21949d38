"""`coda-sync health`, the heartbeat behind it, and the worker's reaction to a lost database."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from worker_processes import (
    HOURLY,
    DatabaseProxy,
    WorkerProcess,
    free_port,
    query,
    runs,
    wait_for,
    worker_env,
    write_config,
)

from worker.emulator import CodaEmulator

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(coda: CodaEmulator, database_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    config = write_config(tmp_path / "jobs.toml", [("tasks", "grid-T1", HOURLY)])
    started: list[WorkerProcess] = []

    def start(url: str = database_url, **settings: str) -> WorkerProcess:
        env = worker_env(coda=coda, database_url=url, config=config, data_dir=tmp_path / "data", **settings)
        process = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()


def health(worker: WorkerProcess, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(worker.env)
    if url is not None:
        env["CODA_SYNC_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "worker", "health", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_health_without_worker_fails(start_worker: StartWorker, database_url: str, tmp_path: Path) -> None:
    worker = start_worker()
    worker.kill()
    (tmp_path / "data" / "worker-instance").unlink(missing_ok=True)

    result = health(worker)

    assert result.returncode == 1
    assert "no worker has started here" in result.stderr
    assert "CODA_SYNC_DATA_DIR" in result.stderr


def test_health_follows_heartbeat(start_worker: StartWorker) -> None:
    worker = start_worker()
    instance = worker.instance_id()

    healthy = health(worker)
    worker.send(signal.SIGSTOP)
    time.sleep(2.5)
    frozen = health(worker, "--max-age", "2")
    worker.send(signal.SIGCONT)
    time.sleep(1.5)
    thawed = health(worker, "--max-age", "2")
    code, _ = worker.stop()
    stopped = health(worker)

    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith(f"ok: worker {instance} beat")
    assert frozen.returncode == 1
    assert f"the heartbeat of worker {instance} is" in frozen.stderr
    assert thawed.returncode == 0, thawed.stderr
    assert code == 0
    assert stopped.returncode == 1
    assert f"worker {instance} stopped at" in stopped.stderr


def test_health_jobs_lists_stale_job(start_worker: StartWorker, database_url: str) -> None:
    worker = start_worker()
    wait_for(lambda: runs(database_url, "tasks"), 30, "the first run was not recorded")
    query(
        database_url,
        "UPDATE coda_sync.job_status SET last_success_at = now() - interval '3 hours'"
        " WHERE job_name = 'tasks'",
    )

    plain = health(worker)
    with_jobs = health(worker, "--jobs")

    assert plain.returncode == 0, plain.stderr
    assert with_jobs.returncode == 1
    assert "stale job tasks: last success" in with_jobs.stderr
    assert "schedule 0 * * * * (UTC)" in with_jobs.stderr


def test_health_unreachable_database_fails_fast(start_worker: StartWorker) -> None:
    worker = start_worker()
    worker.instance_id()
    closed = DatabaseProxy("host=127.0.0.1 port=5432 user=postgres dbname=none", port=free_port())

    started = time.monotonic()
    result = health(worker, url=closed.url)
    elapsed = time.monotonic() - started

    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert elapsed < 10


def test_worker_exits_after_database_give_up(start_worker: StartWorker, database_url: str) -> None:
    proxy = DatabaseProxy(database_url).start()
    worker = start_worker(proxy.url, database_give_up="6")
    worker.instance_id()
    wait_for(lambda: runs(database_url, "tasks"), 30, "the first run was not recorded")

    proxy.cut()
    started = time.monotonic()
    code = worker.wait(timeout=30)
    elapsed = time.monotonic() - started

    assert code == 1
    assert 6 <= elapsed < 12
    events = worker.event_names()
    assert events.count("heartbeat_failed") == 1
    assert events.count("worker_giving_up") == 1


def test_worker_waits_for_database_at_start(start_worker: StartWorker, database_url: str) -> None:
    proxy = DatabaseProxy(database_url)
    worker = start_worker(proxy.url)
    wait_for(lambda: "database_retry" in worker.event_names(), 20, "no retry was logged")
    assert worker.process.poll() is None

    proxy.start()
    instance = worker.instance_id(timeout=30)
    try:
        assert query(
            database_url, "SELECT count(*) FROM coda_sync.workers WHERE instance_id = %s", [instance]
        ) == [(1,)]
    finally:
        worker.stop()
        proxy.cut()
