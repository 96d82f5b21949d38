"""Several `coda-sync run` replicas on one config and one database.

Each cron slot is claimed with a compare-and-set on `job_status.last_slot`, so one replica
runs it. The run's transaction holds the job's advisory lock, so a replica that died or
stalled cannot commit after another one took over.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_processes import (
    DOC,
    EVERY_TWO_SECONDS,
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
from worker.shutdown import application_name


@pytest.fixture
def coda() -> Iterator[CodaEmulator]:
    emulator = start_emulator(rows=3)
    emulator.row_page_cap = 1
    try:
        yield emulator
    finally:
        emulator.stop()


def start_replicas(
    count: int, *, coda: CodaEmulator, database_url: str, tmp_path: Path, **settings: str
) -> list[WorkerProcess]:
    config = write_config(tmp_path / "jobs.toml", [("tasks", "grid-T1", EVERY_TWO_SECONDS)])
    replicas = []
    for number in range(count):
        env = worker_env(
            coda=coda,
            database_url=database_url,
            config=config,
            data_dir=tmp_path / f"data-{number}",
            **settings,
        )
        replicas.append(WorkerProcess(env, tmp_path / f"replica-{number}.log"))
    return replicas


def stalled_run_owner(database_url: str) -> str | None:
    """Return the instance id whose run has been idle inside its transaction for a moment."""
    rows = query(
        database_url,
        "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name LIKE 'coda-sync run %%' AND state = 'idle in transaction'"
        " AND state_change < now() - interval '300 milliseconds'",
    )
    return str(rows[0][0]).removeprefix("coda-sync run ") if rows else None


def by_instance(replicas: list[WorkerProcess]) -> dict[str, WorkerProcess]:
    return {
        application_name(replica.instance_id()).removeprefix("coda-sync run "): replica
        for replica in replicas
    }


def data_values(database_url: str) -> dict[str, float]:
    rows = query(database_url, "SELECT _coda_row_id, (_coda_values->>'c-qty')::float8 FROM coda.tasks")
    return {row[0]: row[1] for row in rows}


@pytest.mark.parametrize("count", [2, 3], ids=["two", "three"])
def test_replicas_run_each_slot_once(
    count: int, coda: CodaEmulator, database_url: str, tmp_path: Path
) -> None:
    replicas = start_replicas(count, coda=coda, database_url=database_url, tmp_path=tmp_path)
    try:
        instances = {replica.instance_id() for replica in replicas}
        wait_for(lambda: len(runs(database_url, "tasks")) >= 5, 30, "fewer than 5 runs were recorded")
        codes = [replica.stop()[0] for replica in replicas]
    finally:
        for replica in replicas:
            replica.kill()

    recorded = runs(database_url, "tasks")
    per_slot = Counter(row[1] for row in recorded)
    assert codes == [0] * count
    assert all(slot is not None for slot in per_slot)
    assert max(per_slot.values()) == 1, per_slot
    assert {row[2] for row in recorded} == {"succeeded"}
    assert {row[3] for row in recorded} <= instances
    assert first_page_requests(coda, "grid-T1") == len(recorded)


def test_killed_replica_hands_next_slot_to_survivor(
    coda: CodaEmulator, database_url: str, tmp_path: Path
) -> None:
    replicas = start_replicas(2, coda=coda, database_url=database_url, tmp_path=tmp_path)
    try:
        owners = by_instance(replicas)
        wait_for(lambda: len(runs(database_url, "tasks")) >= 2, 30, "the replicas did not run the job")
        coda.add_row(DOC, "grid-T1", {"c-name": "row 4", "c-qty": 4}, row_id="i-4")
        coda.inject(Fault(endpoint="listRows", delay=20, times=1, when_page_token=True))
        victim_id = wait_for(lambda: stalled_run_owner(database_url), 20, "no run got stuck on its page")
        killed_at = time.time()
        owners[victim_id].send(signal.SIGKILL)
        owners[victim_id].wait(timeout=10)
        survivor_id = next(instance for instance in owners if instance != victim_id)

        def survivor_ran() -> bool:
            return any(
                row[3] == survivor_id and row[2] == "succeeded" and row[4].timestamp() > killed_at
                for row in runs(database_url, "tasks")
            )

        wait_for(survivor_ran, 20, "the survivor did not run the job after the kill")
        code, _ = owners[survivor_id].stop()
    finally:
        for replica in replicas:
            replica.kill()

    recorded = runs(database_url, "tasks")
    assert code == 0
    assert max(Counter(row[1] for row in recorded).values()) == 1
    assert all(row[2] == "succeeded" for row in recorded)
    assert data_values(database_url) == {"i-1": 1.0, "i-2": 2.0, "i-3": 3.0, "i-4": 4.0}


def test_stalled_replica_cannot_commit_over_newer_data(
    coda: CodaEmulator, database_url: str, tmp_path: Path
) -> None:
    replicas = start_replicas(
        2, coda=coda, database_url=database_url, tmp_path=tmp_path, idle_in_transaction_timeout="3"
    )
    try:
        owners = by_instance(replicas)
        wait_for(lambda: len(runs(database_url, "tasks")) >= 2, 30, "the replicas did not run the job")
        coda.inject(Fault(endpoint="listRows", delay=1, times=1, when_page_token=True))
        stalled_id = wait_for(lambda: stalled_run_owner(database_url), 20, "no run got stuck on its page")
        stalled = owners[stalled_id]
        stalled.send(signal.SIGSTOP)
        changed_at = time.time()
        coda.update_row(DOC, "grid-T1", "i-1", {"c-qty": 999})
        other_id = next(instance for instance in owners if instance != stalled_id)

        def other_committed() -> bool:
            return any(
                row[3] == other_id and row[2] == "succeeded" and row[4].timestamp() > changed_at
                for row in runs(database_url, "tasks")
            )

        wait_for(other_committed, 20, "the other replica did not commit while the first was stopped")
        stalled.send(signal.SIGCONT)

        def stalled_run_failed() -> bool:
            return any(row[3] == stalled_id and row[2] == "failed" for row in runs(database_url, "tasks"))

        wait_for(stalled_run_failed, 20, "the resumed replica did not record its run as failed")
        time.sleep(1)
        values_after = data_values(database_url)
        errors = query(
            database_url,
            "SELECT error_kind, error FROM coda_sync.job_runs WHERE instance_id = %s AND outcome = 'failed'",
            [stalled_id],
        )
        codes = [replica.stop()[0] for replica in replicas]
    finally:
        for replica in replicas:
            replica.kill()

    assert codes == [0, 0]
    assert values_after == {"i-1": 999.0, "i-2": 2.0, "i-3": 3.0}
    assert len(errors) == 1
    # The resumed run stops either at its own deadline, checked while a page arrives, or at its
    # next statement on the session PostgreSQL ended; both roll back.
    kind, message = errors[0]
    assert kind in ("database_error", "timeout")
    if kind == "database_error":
        assert "idle-in-transaction" in message
