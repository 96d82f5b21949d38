"""Fixtures for tests that sync from the emulator into a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg import sql
from pydantic import SecretStr

from worker.config import Job
from worker.database import Database
from worker.emulator import CodaEmulator, Column
from worker.sync import JobRunner, RunnerOptions

DOC = "FakeDoc01"
TOKEN_ALL = "tok-all-0123456789"

JobFactory = Callable[..., Job]


@pytest.fixture
def coda() -> Iterator[CodaEmulator]:
    """A running emulator with doc FakeDoc01, tables grid-T1 and grid-T2 and an open token."""
    emulator = CodaEmulator()
    emulator.start()
    emulator.add_doc(DOC, name="Ops tracker")
    for table_id, name in (("grid-T1", "Tasks"), ("grid-T2", "Stock")):
        emulator.add_table(
            DOC,
            table_id,
            name=name,
            columns=[
                Column("c-name", "Name", "text", display=True),
                Column("c-qty", "Qty", "number"),
            ],
        )
    emulator.add_token(TOKEN_ALL, user="alice@example.test", scope=None)
    try:
        yield emulator
    finally:
        emulator.stop()


def add_rows(coda: CodaEmulator, table_id: str, count: int, *, start: int = 1) -> list[str]:
    """Add rows named Alpha, Beta, … as in the failure cases: r1 qty 3, r2 qty 5, …"""
    names = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta"]
    ids = []
    for number in range(start, start + count):
        name = names[(number - 1) % len(names)]
        ids.append(
            coda.add_row(
                DOC,
                table_id,
                {"c-name": name, "c-qty": 1 + 2 * number},
                row_id=f"i-r{number}",
                created_at=f"2024-03-01T10:{number % 60:02d}:00.000Z",
                updated_at=f"2024-03-01T10:{number % 60:02d}:00.000Z",
            )
        )
    return ids


@pytest.fixture
def make_job() -> JobFactory:
    """Build a `Job` for the emulator's doc; keyword arguments override the defaults."""

    def build(name: str = "tasks", **overrides: Any) -> Job:
        token = overrides.pop("token", TOKEN_ALL)
        fields: dict[str, Any] = {
            "name": name,
            "doc_id": DOC,
            "table_id": "grid-T1",
            "token": SecretStr(token) if token is not None else None,
            "token_problem": None if token is not None else "environment variable X is not set",
            "schedule": "0 * * * *",
            "timezone": "UTC",
            "target_schema": "coda",
            "target_table": name.replace("-", "_"),
            "deletes": "hard",
            "max_delete_fraction": 0.5,
            "allow_mass_delete": False,
            "run_timeout": 60.0,
        }
        fields.update(overrides)
        return Job(**fields)

    return build


@pytest.fixture
def runner(db: Database, coda: CodaEmulator) -> JobRunner:
    """A runner against the emulator with short retry budgets, so failing tests end fast."""
    options = RunnerOptions(base_url=coda.base_url, timeout=5.0, connect_timeout=2.0, max_retry_time=3.0)
    return JobRunner(db, options)


def fetch_rows(db: Database, table: str, schema: str = "coda") -> dict[str, dict[str, Any]]:
    """Return the data table's rows keyed by row id."""
    query = sql.SQL(
        "SELECT _coda_row_id, _coda_row_name, _coda_row_index, _coda_values, xmin::text,"
        " _coda_synced_at FROM {} ORDER BY 1"
    ).format(sql.Identifier(schema, table))
    with db.connection() as conn, conn.cursor() as cursor:
        cursor.execute(query)
        return {
            row[0]: {"name": row[1], "index": row[2], "values": row[3], "xmin": row[4], "synced_at": row[5]}
            for row in cursor.fetchall()
        }


def fetch_status(db: Database, job_name: str) -> dict[str, Any]:
    """Return the job's status row as a dictionary."""
    from worker import status

    with db.connection() as conn:
        rows = status.list_status(conn, [job_name])
    assert rows, f"no status row for {job_name}"
    return rows[0]
