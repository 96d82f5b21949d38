"""Runs of one job from the emulator over HTTP into a real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.integration.conftest import DOC, JobFactory, add_rows, fetch_rows, fetch_status
from worker import status
from worker.database import Database
from worker.emulator import CodaEmulator, Column, Fault
from worker.sync import JobRunner


def expected_rows(coda: CodaEmulator, table_id: str = "grid-T1") -> dict[str, dict[str, object]]:
    return {
        row["id"]: {"name": row["name"], "index": row["index"], "values": row["values"]}
        for row in coda.rows(DOC, table_id)
    }


def stored_rows(db: Database, table: str = "tasks") -> dict[str, dict[str, object]]:
    return {
        row_id: {"name": row["name"], "index": row["index"], "values": row["values"]}
        for row_id, row in fetch_rows(db, table).items()
    }


def test_sync_copies_table_exactly(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 5)

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert stored_rows(db) == expected_rows(coda)


def test_sync_applies_inserts_updates_deletes(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner.run(make_job())
    coda.add_row(DOC, "grid-T1", {"c-name": "Omega", "c-qty": 99}, row_id="i-r9")
    coda.update_row(DOC, "grid-T1", "i-r2", {"c-qty": 50})
    coda.delete_row(DOC, "grid-T1", "i-r3")

    result = runner.run(make_job())

    assert result.counts is not None
    assert (result.counts.inserted, result.counts.deleted) == (1, 1)
    assert result.counts.updated >= 1
    assert stored_rows(db) == expected_rows(coda)


def test_unchanged_resync_writes_no_tuple(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 6)
    runner.run(make_job())
    before = fetch_rows(db, "tasks")

    result = runner.run(make_job())

    assert result.counts is not None
    assert (result.counts.inserted, result.counts.updated, result.counts.deleted) == (0, 0, 0)
    assert fetch_rows(db, "tasks") == before  # same xmin and synced_at: no new row versions


def test_sync_records_status_counts(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)

    runner.run(make_job())

    row = fetch_status(db, "tasks")
    assert row["last_outcome"] == "succeeded"
    assert row["rows_total"] == 3
    assert row["rows_inserted"] == 3
    assert row["consecutive_failures"] == 0
    assert row["last_success_at"] is not None
    assert row["resolved_table_id"] == "grid-T1"


def test_sync_stores_rich_values_of_every_type(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    from worker.emulator import currency, lookup, person

    coda.add_table(
        DOC,
        "grid-T3",
        name="Deals",
        columns=[
            Column("c-name", "Name", "text", display=True),
            Column("c-price", "Price", "currency"),
            Column("c-owner", "Owner", "person"),
            Column("c-client", "Client", "lookup"),
            Column("c-tags", "Tags", "select", is_array=True),
            Column("c-hidden", "Secret note", "text", hidden=True),
        ],
    )
    coda.add_row(
        DOC,
        "grid-T3",
        {
            "c-name": "Zürich – 東京 🚀\nsecond line",
            "c-price": currency("USD", 1234.5),
            "c-owner": person("Ada Example", "ada@example.test"),
            "c-client": lookup("Acme", table_id="grid-T9", row_id="i-c7", doc_id=DOC),
            "c-tags": ["Acme, Inc.", "VIP"],
            "c-hidden": "kept although hidden",
        },
        row_id="i-d1",
    )

    runner.run(make_job("deals", table_id="grid-T3"))

    assert stored_rows(db, "deals") == expected_rows(coda, "grid-T3")
    assert "c-hidden" in stored_rows(db, "deals")["i-d1"]["values"]  # type: ignore[operator]


def test_sync_page_token_never_outlives_run(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Large tables silently stopped syncing when a page token was kept between runs.
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    add_rows(coda, "grid-T1", 1, start=4)
    coda.expire_page_tokens()
    coda.clear_requests()

    result = runner.run(make_job())

    row_requests = [r for r in coda.requests if r.path.endswith("/rows")]
    assert "pageToken" not in row_requests[0].query
    assert result.outcome == "succeeded"
    assert len(fetch_rows(db, "tasks")) == 4


def test_sync_pages_by_token_not_page_size(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.column_page_cap = 2
    coda.row_page_cap = 200
    coda.add_table(
        DOC,
        "grid-T4",
        name="Wide",
        columns=[
            Column("c-name", "Name", "text", display=True),
            Column("c-qty", "Qty", "number"),
            Column("c-note", "Note", "text"),
        ],
    )
    for number in range(450):
        coda.add_row(DOC, "grid-T4", {"c-name": f"row {number}", "c-qty": number, "c-note": "hello"})

    runner.run(make_job("wide", table_id="grid-T4"))

    with db.connection() as conn:
        columns = [
            r[0] for r in conn.execute("SELECT column_id FROM coda_sync.table_columns ORDER BY position")
        ]
    assert columns == ["c-name", "c-qty", "c-note"]
    rows = fetch_rows(db, "wide")
    assert len(rows) == 450
    assert all("c-note" in row["values"] for row in rows.values())


def test_sync_keys_rows_by_id_not_position(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    coda.add_row(DOC, "grid-T1", {"c-name": "Alpha", "c-qty": 7}, row_id="i-r3")
    runner.run(make_job())
    values_before = {row_id: row["values"] for row_id, row in fetch_rows(db, "tasks").items()}
    coda.reorder_rows(DOC, "grid-T1", ["i-r3", "i-r1", "i-r2"])

    result = runner.run(make_job())

    assert result.counts is not None
    assert (result.counts.inserted, result.counts.deleted) == (0, 0)
    rows = fetch_rows(db, "tasks")
    assert {row_id: row["values"] for row_id, row in rows.items()} == values_before
    assert [rows[i]["name"] for i in ("i-r1", "i-r3")] == ["Alpha", "Alpha"]
    assert rows["i-r3"]["index"] == 1


def test_sync_deletes_only_after_complete_read(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 1
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    coda.delete_row(DOC, "grid-T1", "i-r2")
    coda.update_row(DOC, "grid-T1", "i-r3", {"c-qty": 8})
    coda.inject(
        Fault(
            endpoint="listRows",
            when_page_token=True,
            status=500,
            times=0,
            body={"statusCode": 500, "statusMessage": "Internal Server Error", "message": "boom"},
        )
    )

    failed = runner.run(make_job())

    assert failed.outcome == "failed"
    assert failed.error_kind == "server_error"
    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r2", "i-r3"]
    assert rows["i-r3"]["values"]["c-qty"] == 7  # type: ignore[index]


def test_sync_deletes_rows_gone_from_coda(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    coda.delete_row(DOC, "grid-T1", "i-r2")
    coda.update_row(DOC, "grid-T1", "i-r3", {"c-qty": 8})

    runner.run(make_job())

    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r3"]
    assert rows["i-r3"]["values"]["c-qty"] == 8  # type: ignore[index]


def test_sync_ignores_unknown_response_fields(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    table = coda.table_payload(DOC, "grid-T1") | {"viewId": "view-X1", "futureField": {"a": 1}}
    rows = [row | {"newRowField": True} for row in coda.rows(DOC, "grid-T1")]
    coda.inject(Fault(endpoint="getTable", status=200, body=table))
    coda.inject(
        Fault(endpoint="listRows", status=200, body={"items": rows, "href": "x", "nextSyncToken": "S1"})
    )

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2"]


def test_sync_survives_duplicate_row_across_pages(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    rows = coda.rows(DOC, "grid-T1")
    coda.inject(
        Fault(endpoint="listRows", status=200, body={"items": rows[:2], "href": "x", "nextPageToken": "P2"})
    )
    coda.inject(Fault(endpoint="listRows", status=200, body={"items": rows[1:], "href": "x"}))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3"]


def test_sync_fails_on_repeated_page_token(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 1
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    coda.inject(Fault(endpoint="listRows", action="repeat_page_token", times=0))

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert len(fetch_rows(db, "tasks")) == 3


def test_sync_retries_rate_limit_with_retry_after(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    coda.inject(
        Fault(
            endpoint="listRows",
            status=429,
            headers={"Retry-After": "1"},
            body={"statusCode": 429, "statusMessage": "Too Many Requests", "message": "Too Many Requests"},
        )
    )

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    row_requests = [r for r in coda.requests if r.path.endswith("/rows")]
    assert len(row_requests) == 2
    assert row_requests[1].at - row_requests[0].at >= 1.0
    assert fetch_status(db, "tasks")["last_retries"] == 1


def test_sync_resolves_table_name_to_id(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job(table_id="Tasks"))
    coda.rename_table(DOC, "grid-T1", "Tasks 2024")
    coda.clear_requests()

    result = runner.run(make_job(table_id="Tasks"))

    assert result.outcome == "succeeded"
    assert all("/tables/grid-T1" in r.path for r in coda.requests)
    assert fetch_status(db, "tasks")["resolved_table_id"] == "grid-T1"


def test_sync_rejects_view_naming_base_table(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    coda.add_table(DOC, "table-V1", name="Open tasks", table_type="view", parent_table_id="grid-T1")

    result = runner.run(make_job(table_id="table-V1"))

    assert result.outcome == "failed"
    assert result.error_kind == "config_error"
    assert result.message is not None
    assert "grid-T1" in result.message
    assert fetch_status(db, "tasks")["enabled"] is True


def test_sync_never_asks_visible_only(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)

    runner.run(make_job())

    for request in coda.requests:
        assert request.query.get("visibleOnly") in (None, "false")
        assert request.query.get("sortBy") != "natural"


def test_sync_missing_token_fails_only_its_job(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)

    broken = runner.run(make_job("broken", token=None))
    working = runner.run(make_job())

    assert broken.outcome == "failed"
    assert broken.error_kind == "config_error"
    assert "environment variable X" in (broken.message or "")
    assert working.outcome == "succeeded"


@pytest.mark.parametrize("deletes", ["soft"])
def test_sync_soft_delete_marks_and_revives(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, deletes: str
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job(deletes=deletes))
    coda.delete_row(DOC, "grid-T1", "i-r2")

    runner.run(make_job(deletes=deletes))

    with db.connection() as conn:
        marked = conn.execute(
            "SELECT _coda_row_id FROM coda.tasks WHERE _coda_deleted_at IS NOT NULL"
        ).fetchall()
    assert [row[0] for row in marked] == ["i-r2"]
    assert fetch_status(db, "tasks")["rows_total"] == 2


def test_status_register_reenables_on_config_change(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.add_token("tok-t2-only-0123", user="bob@example.test", scope=("table", DOC, "grid-T2"))
    job = make_job(token="tok-t2-only-0123")
    assert runner.run(job).outcome == "disabled"

    with db.connection() as conn:
        reenabled = status.register_jobs(conn, [make_job()])

    assert reenabled == ["tasks"]
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["reenabled_by"] == "config change"
