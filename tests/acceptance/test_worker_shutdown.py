"""How `coda-sync run` stops on SIGTERM: idle, between pages, and with a request stuck."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from worker_processes import (
    HOURLY,
    WorkerProcess,
    first_page_requests,
    query,
    runs,
    start_emulator,
    wait_for,
    worker_env,
    write_config,
)

from worker.emulator import CodaEmulator, Fault
from worker.shutdown import ABANDONED_MESSAGE

StartWorker = Callable[[], WorkerProcess]

ROWS = 40
PAGE_SIZE = 2


@pytest.fixture
def coda() -> Iterator[CodaEmulator]:
    emulator = start_emulator(rows=ROWS)
    emulator.row_page_cap = PAGE_SIZE
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def worker_factory(coda: CodaEmulator, database_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    config = write_config(tmp_path / "jobs.toml", [("tasks", "grid-T1", HOURLY)])
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        env = worker_env(coda=coda, database_url=database_url, config=config, data_dir=tmp_path / "data")
        process = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()


def page_requests(coda: CodaEmulator) -> int:
    return sum(
        1 for request in coda.requests if request.path.endswith("/rows") and "pageToken" in request.query
    )


def wait_until_second_page_requested(coda: CodaEmulator) -> None:
    # The emulator logs a request once it has responded to it, so a delayed request shows up late:
    # wait for the first page instead, then give the worker time to ask for the second.
    wait_for(lambda: first_page_requests(coda) >= 1, 30, "the run did not ask for its first page")
    time.sleep(0.5)


def status_of(database_url: str, job: str) -> tuple[str, str | None]:
    rows = query(
        database_url, "SELECT last_outcome, last_error FROM coda_sync.job_status WHERE job_name = %s", [job]
    )
    return rows[0][0], rows[0][1]


def data_rows(database_url: str) -> int:
    return int(query(database_url, "SELECT count(*) FROM coda.tasks")[0][0])


def test_idle_worker_stops_within_one_second(worker_factory: StartWorker, database_url: str) -> None:
    worker = worker_factory()
    instance = worker.instance_id()
    wait_for(lambda: runs(database_url, "tasks"), 30, "the first run was not recorded")
    time.sleep(0.5)

    code, elapsed = worker.stop()

    assert code == 0, worker.log()[-2000:]
    assert elapsed < 1.0
    stopped = query(
        database_url, "SELECT stopped_at FROM coda_sync.workers WHERE instance_id = %s", [instance]
    )
    assert stopped[0][0] is not None
    assert worker.event_names()[-2:] == ["worker_stopping", "worker_stopped"]


def test_run_between_pages_rolls_back(
    worker_factory: StartWorker, coda: CodaEmulator, database_url: str
) -> None:
    coda.inject(Fault(endpoint="listRows", delay=0.3, times=0, when_page_token=True))
    worker = worker_factory()
    wait_for(lambda: page_requests(coda) >= 3, 30, "the run did not reach its third page")

    code, elapsed = worker.stop()

    assert code == 0, worker.log()[-2000:]
    assert elapsed < 2.0
    assert [row[2] for row in runs(database_url, "tasks")] == ["interrupted"]
    assert status_of(database_url, "tasks")[0] == "interrupted"
    assert data_rows(database_url) == 0
    assert "run_interrupted" in worker.event_names()


def test_stuck_request_recorded_after_grace(
    worker_factory: StartWorker, coda: CodaEmulator, database_url: str
) -> None:
    coda.inject(Fault(endpoint="listRows", delay=30, times=1, when_page_token=True))
    worker = worker_factory()
    instance = worker.instance_id()
    wait_until_second_page_requested(coda)

    code, elapsed = worker.stop()

    assert code == 0, worker.log()[-2000:]
    assert 5.5 < elapsed < 8.0
    recorded = runs(database_url, "tasks")
    assert [(row[2], row[3]) for row in recorded] == [("interrupted", instance)]
    assert status_of(database_url, "tasks") == ("interrupted", ABANDONED_MESSAGE)
    assert data_rows(database_url) == 0
    events = worker.event_names()
    assert events.count("run_abandoned") == 1
    assert "run_failed" not in events
    stopped = query(
        database_url, "SELECT stopped_at FROM coda_sync.workers WHERE instance_id = %s", [instance]
    )
    assert stopped[0][0] is not None


def test_second_signal_exits_at_once(worker_factory: StartWorker, coda: CodaEmulator) -> None:
    coda.inject(Fault(endpoint="listRows", delay=30, times=1, when_page_token=True))
    worker = worker_factory()
    wait_until_second_page_requested(coda)
    worker.send(signal.SIGTERM)
    time.sleep(0.5)

    code, elapsed = worker.stop()

    assert code == 1
    assert elapsed < 1.0
    assert "second signal, exiting at once" in worker.log()
