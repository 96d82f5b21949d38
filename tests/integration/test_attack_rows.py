"""Hostile row and column content: odd ids, names, indexes, timestamps and sizes in listRows."""

from __future__ import annotations

import json
import time
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.conftest import DOC, JobFactory, add_rows, fetch_rows, fetch_status
from worker.database import Database
from worker.emulator import CodaEmulator, Fault
from worker.sync import JobRunner


def serve_rows(coda: CodaEmulator, rows: list[dict[str, Any]]) -> None:
    """Serve *rows* as one final page to the next listRows request."""
    coda.inject(Fault(endpoint="listRows", status=200, body={"items": rows, "href": "x"}))


def first_row(coda: CodaEmulator, **changes: Any) -> dict[str, Any]:
    """Add one row to grid-T1 and return its listRows payload with *changes* applied."""
    add_rows(coda, "grid-T1", 1)
    row = coda.rows(DOC, "grid-T1")[0]
    row.update(changes)
    return row


def serve_raw_row(coda: CodaEmulator, row: dict[str, Any], cell: str) -> None:
    """Serve *row* to the next listRows request, with the raw JSON text *cell* as its c-name cell."""
    row["values"]["c-name"] = "CELL"
    text = json.dumps({"items": [row], "href": "x"}).replace('"CELL"', cell)
    coda.inject(Fault(endpoint="listRows", status=200, body=text))


def stored_timestamps(db: Database, row_id: str) -> tuple[datetime | None, datetime | None]:
    with db.connection() as conn:
        found = conn.execute(
            "SELECT _coda_created_at, _coda_updated_at FROM coda.tasks WHERE _coda_row_id = %s", (row_id,)
        ).fetchone()
    assert found is not None, f"row {row_id} was not stored"
    return found[0], found[1]


def test_row_name_nul_is_replaced(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Coda derives the name from the display column, so a NUL in that cell reaches both fields.
    row = first_row(coda, name="a\x00b")
    row["values"]["c-name"] = "a\x00b"
    serve_rows(coda, [row])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    assert fetch_rows(db, "tasks")["i-r1"]["name"] == "a\ufffdb"


def test_cell_lone_surrogate_replaced(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Text cut in the middle of an emoji (a formula such as Left()) leaves half a surrogate pair,
    # which JSON.stringify writes as a \ud83d escape.
    serve_raw_row(coda, first_row(coda), '"cut \\ud83d"')

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    assert fetch_rows(db, "tasks")["i-r1"]["values"]["c-name"] == "cut \ufffd"  # type: ignore[index]


def test_cell_number_beyond_double_kept(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    serve_raw_row(coda, first_row(coda), "1e400")

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    with db.connection() as conn:
        stored = conn.execute("SELECT _coda_values->>'c-name' FROM coda.tasks").fetchone()
    assert stored is not None
    assert float(stored[0]) > 1e308


def test_column_name_nul_is_replaced(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 1)
    column = {"id": "c-name", "type": "column", "name": "Na\x00me", "href": "x", "format": {"type": "text"}}
    coda.inject(Fault(endpoint="listColumns", status=200, body={"items": [column], "href": "x"}))

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message


def test_row_index_beyond_bigint_dropped(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    serve_rows(coda, [first_row(coda, index=2**70)])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    assert fetch_rows(db, "tasks")["i-r1"]["index"] is None


@pytest.mark.parametrize(
    "index", [1.5, True, "3", None, -1], ids=["float", "bool", "string", "null", "negative"]
)
def test_row_index_odd_types(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, index: object
) -> None:
    serve_rows(coda, [first_row(coda, index=index)])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    assert fetch_rows(db, "tasks")["i-r1"]["index"] == (-1 if index == -1 else None)


@pytest.mark.parametrize(
    "created_at",
    ["2024-W09-5T10:00:00", "2024-03-01T10", "2024-03-01T10:00:00,5+00:00"],
    ids=["week-date", "hour-only", "comma-fraction"],
)
def test_row_timestamp_python_only_dropped(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, created_at: str
) -> None:
    serve_rows(coda, [first_row(coda, createdAt=created_at)])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    assert stored_timestamps(db, "i-r1")[0] is None


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00+02:00", datetime(2024, 3, 1, 8, tzinfo=UTC)),
        ("2024-03-01T10:00:00.1234567Z", datetime(2024, 3, 1, 10, 0, 0, 123457, tzinfo=UTC)),
        ("0001-01-01T00:00:00.000Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999Z", datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("", None),
        ("yesterday", None),
        (1709287200, None),
    ],
    ids=["no-ms", "offset", "seven-digits", "year-1", "year-9999", "empty", "word", "number"],
)
def test_row_timestamp_formats(
    db: Database,
    coda: CodaEmulator,
    runner: JobRunner,
    make_job: JobFactory,
    created_at: object,
    expected: datetime | None,
) -> None:
    serve_rows(coda, [first_row(coda, createdAt=created_at)])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    assert stored_timestamps(db, "i-r1")[0] == expected


def test_row_ids_case_and_form_distinct(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    template = first_row(coda)
    composed = unicodedata.normalize("NFC", "i-é")
    decomposed = unicodedata.normalize("NFD", "i-é")
    ids = ["i-AbC", "i-abc", composed, decomposed]
    serve_rows(coda, [template | {"id": row_id, "values": {"c-qty": n}} for n, row_id in enumerate(ids)])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == sorted(ids)
    assert rows[decomposed]["values"] == {"c-qty": 3}


def test_row_id_repeated_within_page_last_wins(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    row = first_row(coda)
    serve_rows(coda, [row | {"values": {"c-qty": 1}}, row | {"values": {"c-qty": 2}}])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    assert fetch_rows(db, "tasks")["i-r1"]["values"] == {"c-qty": 2}
    assert fetch_status(db, "tasks")["rows_total"] == 1


@pytest.mark.parametrize(
    "broken",
    [{"values": None}, {"values": ["a"]}, {"id": None}, {"id": ""}, {"id": 7}],
    ids=["values-null", "values-list", "id-null", "id-empty", "id-number"],
)
def test_row_malformed_fails_and_keeps_rows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, broken: dict[str, Any]
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    rows = coda.rows(DOC, "grid-T1")
    coda.delete_row(DOC, "grid-T1", "i-r3")
    serve_rows(coda, [rows[0], rows[1] | broken])

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3"]


def test_row_id_key_missing_fails(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    row = first_row(coda)
    del row["id"]
    serve_rows(coda, [row])

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"


def test_column_ids_odd_round_trip(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    odd_ids = ['c-"quoted"', "c-a.b.c", "c-'; DROP TABLE coda.tasks; --", "c-" + "x" * 10_000, "c-\x00nul"]
    columns = [{"id": column_id, "type": "column", "name": "n", "href": "x"} for column_id in odd_ids]
    coda.inject(Fault(endpoint="listColumns", status=200, body={"items": columns[:-1], "href": "x"}))
    row = first_row(coda, values={column_id: n for n, column_id in enumerate(odd_ids)})
    serve_rows(coda, [row])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    values = fetch_rows(db, "tasks")["i-r1"]["values"]
    assert values['c-"quoted"'] == 0
    assert values["c-" + "x" * 10_000] == 3
    assert values["c-\ufffdnul"] == 4
    with db.connection() as conn:
        stored = {r[0] for r in conn.execute("SELECT column_id FROM coda_sync.table_columns").fetchall()}
    assert stored == set(odd_ids[:-1])


def test_page_of_fifty_thousand_rows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    template = first_row(coda)
    rows = [template | {"id": f"i-{n}", "index": n, "values": {"c-qty": n}} for n in range(50_000)]
    serve_rows(coda, rows)

    started = time.monotonic()
    result = runner.run(make_job())
    elapsed = time.monotonic() - started

    assert result.outcome == "succeeded", result.message
    assert result.counts is not None
    assert result.counts.total == 50_000
    print(f"\n50,000-row page synced in {elapsed:.1f} s")


def test_value_of_twenty_megabytes(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    big = "é" * 10_000_000  # 20 MB of UTF-8
    serve_rows(coda, [first_row(coda, values={"c-name": big})])

    result = runner.run(make_job())

    assert result.outcome == "succeeded", result.message
    with db.connection() as conn:
        length = conn.execute("SELECT length(_coda_values->>'c-name') FROM coda.tasks").fetchone()
    assert length == (10_000_000,)
