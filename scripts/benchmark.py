"""Measure one full sync: rows per second and the worker's peak memory, per table size.

The emulator caps pages at 200 rows; it serves pages in time that grows with the table, so
the largest sizes measure the emulator as much as the worker.

Each size runs in a fresh subprocess so that its peak resident set size (ru_maxrss) is its own.
The emulator runs in a separate process too, so its memory is not counted. Usage:

    .venv/bin/python scripts/benchmark.py                 # 1,000, 10,000 and 50,000 rows
    .venv/bin/python scripts/benchmark.py 200000          # other sizes

It uses CODA_SYNC_DATABASE_URL when set, else an embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from worker.database import Database

DOC = "BenchDoc01"
TABLE = "grid-Bench"
TOKEN = "bench-token-0123456789"
DEFAULT_SIZES = (1_000, 10_000, 50_000)


def serve_emulator(rows: int, ready: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Run an emulator with one table of *rows* rich rows until killed."""
    from worker.emulator import CodaEmulator, Column, currency, person

    emulator = CodaEmulator()
    emulator.start()
    emulator.add_doc(DOC, name="Benchmark")
    emulator.add_table(
        DOC,
        TABLE,
        name="Bench",
        columns=[
            Column("c-name", "Name", "text", display=True),
            Column("c-qty", "Qty", "number"),
            Column("c-price", "Price", "currency"),
            Column("c-owner", "Owner", "person"),
            Column("c-note", "Note", "text"),
        ],
    )
    for number in range(rows):
        emulator.add_row(
            DOC,
            TABLE,
            {
                "c-name": f"Row {number}",
                "c-qty": number,
                "c-price": currency("EUR", number / 100),
                "c-owner": person(f"Person {number % 50}", f"p{number % 50}@example.test"),
                "c-note": "Zürich – 東京 " * 5,
            },
        )
    emulator.add_token(TOKEN, user="bench@example.test", scope=None)
    ready.put(emulator.base_url)
    while True:
        time.sleep(3600)


def sync_once(base_url: str, database_url: str) -> None:
    """Run one sync in this process and print its numbers as JSON."""
    from worker.config import Job
    from worker.database import open_database
    from worker.pacing import PacerRegistry
    from worker.sync import JobRunner, RunnerOptions

    job = Job(
        name="bench",
        doc_id=DOC,
        table_id=TABLE,
        token=SecretStr(TOKEN),
        token_problem=None,
        schedule="0 * * * *",
        timezone="UTC",
        target_schema="bench",
        target_table="bench",
        deletes="hard",
        max_delete_fraction=0.5,
        allow_mass_delete=False,
        run_timeout=3600.0,
    )
    db = open_database(database_url)
    try:
        # Unpaced to measure the worker itself. The table's lower bound under Coda's read
        # limit is printed separately.
        runner = JobRunner(db, RunnerOptions(base_url=base_url), pacers=PacerRegistry(limit=10**9))
        started = time.perf_counter()
        first = runner.run(job)
        first_seconds = time.perf_counter() - started
        first_requests = _requests_of_last_run(db)
        started = time.perf_counter()
        second = runner.run(job)
        second_seconds = time.perf_counter() - started
    finally:
        db.close()
    assert first.counts is not None and second.counts is not None, (first, second)
    print(
        json.dumps(
            {
                "rows": first.counts.total,
                "first_seconds": first_seconds,
                "unchanged_seconds": second_seconds,
                "unchanged_writes": second.counts.inserted + second.counts.updated + second.counts.deleted,
                "requests": first_requests,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _requests_of_last_run(db: Database) -> int:
    with db.connection() as conn:
        query = "SELECT last_requests FROM coda_sync.job_status WHERE job_name = 'bench'"
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def measure(rows: int, database_url: str) -> dict[str, float]:
    """Start an emulator with *rows* rows and run `sync_once` in a fresh interpreter."""
    ready: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    server = multiprocessing.Process(target=serve_emulator, args=(rows, ready), daemon=True)
    server.start()
    try:
        base_url = ready.get(timeout=300)
        output = subprocess.run(
            [sys.executable, __file__, "--sync-once", base_url, database_url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        server.kill()
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    if argv[:1] == ["--sync-once"]:
        sync_once(argv[1], argv[2])
        return 0

    sizes = [int(arg) for arg in argv] or list(DEFAULT_SIZES)
    folder = None
    database_url = os.environ.get("CODA_SYNC_DATABASE_URL")
    if not database_url:
        from worker.embedded import start_embedded

        folder = Path(tempfile.mkdtemp(prefix="coda-sync-bench-"))
        database_url = start_embedded(folder)
    try:
        print(
            f"{'rows':>8} {'first sync':>11} {'rows/s':>8} {'unchanged':>10} {'writes':>7} "
            f"{'peak RSS':>9} {'requests':>9} {'at 100/6s':>10}"
        )
        for rows in sizes:
            if folder is not None:
                _reset(database_url)
            numbers = measure(rows, database_url)
            print(
                f"{int(numbers['rows']):>8} {numbers['first_seconds']:>10.2f}s "
                f"{numbers['rows'] / numbers['first_seconds']:>8.0f} {numbers['unchanged_seconds']:>9.2f}s "
                f"{int(numbers['unchanged_writes']):>7} {numbers['peak_rss_mib']:>7.0f}MiB "
                f"{int(numbers['requests']):>9} {numbers['requests'] / 100 * 6:>9.1f}s"
            )
        print(
            "first sync and unchanged: seconds for a full read and merge, unpaced; writes: rows the "
            "unchanged re-sync inserted, updated or deleted; at 100/6s: the least time Coda's "
            "published read limit allows for that many requests"
        )
    finally:
        if folder is not None:
            from worker.embedded import stop_embedded

            stop_embedded(folder)
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def _reset(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS coda_sync CASCADE")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
