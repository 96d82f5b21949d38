"""Failures that people hit when reading Coda tables through the API, replayed against the emulator.

Each test reproduces a reported failure with the requests and responses it involved, and asserts
the behaviour the worker must show: which jobs stay enabled, which rows stay in PostgreSQL, and
what the status row says.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import pytest
from pydantic import SecretStr

from tests.integration.conftest import DOC, TOKEN_ALL, JobFactory, add_rows, fetch_rows, fetch_status
from worker import status
from worker.database import Database
from worker.emulator import CodaEmulator, Column, Fault
from worker.source import COLUMN_PAGE_LIMIT, ROW_PAGE_LIMIT, ClientOptions, CodaClient
from worker.sync import JobRunner, RunnerOptions

TOKEN_T1 = "tok-scoped-T1-0123"
ROW_TIME = "2024-03-01T10:00:00.000Z"
UNAUTHORIZED = {"statusCode": 401, "statusMessage": "Unauthorized", "message": "Unauthorized"}
FORBIDDEN = {"statusCode": 403, "statusMessage": "Forbidden", "message": "Forbidden"}
NOT_FOUND = {"statusCode": 404, "statusMessage": "Not Found", "message": "Not Found"}
TOO_MANY = {"statusCode": 429, "statusMessage": "Too Many Requests", "message": "Too Many Requests"}
NATURAL_SORT_400 = {
    "statusCode": 400,
    "statusMessage": "Bad Request",
    "message": "Natural sort requires visible rows",
}
MONEY = {"@context": "http://schema.org", "@type": "MonetaryAmount", "currency": "USD", "amount": 1234.5}
PERSON = {
    "@context": "http://schema.org",
    "@type": "Person",
    "name": "Ada Example",
    "email": "ada@example.test",
}
LOOKUP = {
    "@context": "http://schema.org",
    "@type": "StructuredValue",
    "additionalType": "row",
    "name": "Acme",
    "rowId": "i-c7",
    "tableId": "grid-T9",
    "tableUrl": "https://coda.example/d/_dFakeDoc01/grid-T9",
    "url": "https://coda.example/d/_dFakeDoc01/grid-T9#_ri-c7",
}


def coda_row(
    coda: CodaEmulator,
    number: int,
    values: dict[str, Any],
    *,
    name: str | None = None,
    index: int | None = None,
    table_id: str = "grid-T1",
) -> dict[str, Any]:
    """Build row `i-r<number>` of a `listRows` response, with Coda's fields and the given cells."""
    row_id = f"i-r{number}"
    return {
        "id": row_id,
        "type": "row",
        "href": f"{coda.base_url}/docs/{DOC}/tables/{table_id}/rows/{row_id}",
        "browserLink": f"https://coda.example/d/_d{DOC}#_tu{table_id}/_r{row_id}",
        "name": name if name is not None else str(values.get("c-name", "")),
        "index": index if index is not None else number,
        "createdAt": ROW_TIME,
        "updatedAt": ROW_TIME,
        "values": values,
    }


def rows_page(coda: CodaEmulator, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Build a `listRows` response for grid-T1 that has no next page unless `extra` adds a token."""
    return {"items": items, "href": f"{coda.base_url}/docs/{DOC}/tables/grid-T1/rows"} | extra


def two_columns(coda: CodaEmulator, table_id: str) -> dict[str, Any]:
    """Build the `listColumns` response of a table with a Name and a Qty column."""
    href = f"{coda.base_url}/docs/{DOC}/tables/{table_id}/columns"
    return {
        "items": [
            {
                "id": "c-name",
                "type": "column",
                "href": f"{href}/c-name",
                "name": "Name",
                "display": True,
                "format": {"type": "text", "isArray": False},
            },
            {
                "id": "c-qty",
                "type": "column",
                "href": f"{href}/c-qty",
                "name": "Qty",
                "format": {"type": "number", "isArray": False},
            },
        ],
        "href": href,
    }


def recording_runner(
    db: Database, coda: CodaEmulator, delays: list[float], *, base_url: str = ""
) -> JobRunner:
    """Build a runner whose clients record each backoff wait in `delays` instead of sleeping."""
    url = base_url or coda.base_url

    def factory(token: SecretStr, client_options: ClientOptions) -> CodaClient:
        client_options.sleep = delays.append
        return CodaClient(url, token, options=client_options)

    options = RunnerOptions(base_url=url, timeout=5.0, connect_timeout=2.0)
    return JobRunner(db, options, client_factory=factory)


def register(db: Database, jobs: list[Any]) -> None:
    """Register the configured jobs, as the command line does before it runs any of them."""
    with db.connection() as conn:
        status.register_jobs(conn, jobs)


def requests_under(coda: CodaEmulator, fragment: str) -> list[Any]:
    return [r for r in coda.requests if fragment in r.path]


def rows_requests(coda: CodaEmulator, table_id: str = "grid-T1") -> list[Any]:
    return [r for r in coda.requests if r.path.endswith(f"/tables/{table_id}/rows")]


def qty_by_row(db: Database, table: str = "tasks") -> dict[str, object]:
    return {row_id: row["values"]["c-qty"] for row_id, row in fetch_rows(db, table).items()}


# -- refused and scoped tokens ----------------------------------------------------------------


def test_docs_refusal_leaves_job_enabled(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # A table-scoped token gets 401 from /docs although it reads its own table.
    coda.legacy_401 = True
    coda.row_page_cap = 2
    coda.add_token(TOKEN_T1, user="bob@example.test", scope=("table", DOC, "grid-T1"))
    add_rows(coda, "grid-T1", 2)
    for endpoint in ("listDocs", "getDoc"):
        coda.inject(Fault(endpoint=endpoint, status=401, body=UNAUTHORIZED, times=0))

    result = runner.run(make_job(token=TOKEN_T1))

    api = "/apis/v1"
    assert result.outcome == "succeeded"
    assert [r.path for r in coda.requests if r.path in (f"{api}/docs", f"{api}/docs/{DOC}")] == []
    outside = [
        r.path
        for r in coda.requests
        if r.path != f"{api}/whoami" and not r.path.startswith(f"{api}/docs/{DOC}/tables/grid-T1")
    ]
    assert outside == []
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2"]


def test_whoami_refusal_leaves_job_enabled(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # /whoami is outside the job's table, so a 401 there must not disable the job.
    add_rows(coda, "grid-T1", 2)
    coda.inject(Fault(endpoint="whoami", status=401, body=UNAUTHORIZED, times=0))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["last_error_kind"] is None
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2"]


def sync_t1_then_t2_with_rows_answer(
    db: Database, coda: CodaEmulator, make_job: JobFactory, fault: Fault, delays: list[float]
) -> tuple[Any, Any]:
    """Sync grid-T1 and then grid-T2 with one token scoped to grid-T1.

    grid-T2 already has 3 stored rows. Its table and columns are readable, and its rows
    request gets `fault`. Returns the results of the grid-T1 and grid-T2 runs.
    """
    add_rows(coda, "grid-T1", 2)
    add_rows(coda, "grid-T2", 3)
    register(db, [make_job("tasks"), make_job("stock", table_id="grid-T2")])
    recording_runner(db, coda, []).run(make_job("stock", table_id="grid-T2"))
    coda.add_token(TOKEN_T1, user="bob@example.test", scope=("table", DOC, "grid-T1"))
    coda.inject(Fault(endpoint=r"/tables/grid-T2$", status=200, body=coda.table_payload(DOC, "grid-T2")))
    coda.inject(Fault(endpoint=r"/tables/grid-T2/columns$", status=200, body=two_columns(coda, "grid-T2")))
    coda.inject(fault)
    coda.clear_requests()

    runner = recording_runner(db, coda, delays)
    t1 = runner.run(make_job("tasks", token=TOKEN_T1))
    t2 = runner.run(make_job("stock", table_id="grid-T2", token=TOKEN_T1))
    return t1, t2


def test_rows_403_disables_only_that_job(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    delays: list[float] = []

    t1, t2 = sync_t1_then_t2_with_rows_answer(db, coda, make_job, Fault(endpoint="listRows"), delays)

    assert t2.outcome == "disabled"
    assert [r.status for r in rows_requests(coda, "grid-T2")] == [403]  # one request, no retry
    assert delays == []
    stock = fetch_status(db, "stock")
    assert stock["enabled"] is False
    assert stock["last_error_kind"] == "token_out_of_scope"
    assert stock["disabled_reason"].startswith("scope: 403 on rows of grid-T2")
    assert sorted(fetch_rows(db, "stock")) == ["i-r1", "i-r2", "i-r3"]
    assert t1.outcome == "succeeded"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2"]


def test_rows_404_needs_attention_not_disable(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    delays: list[float] = []
    not_found = Fault(endpoint=r"/tables/grid-T2/rows$", status=404, body=NOT_FOUND, times=0)

    t1, t2 = sync_t1_then_t2_with_rows_answer(db, coda, make_job, not_found, delays)

    assert t2.outcome == "failed"
    assert t2.error_kind == "not_found"
    assert len(rows_requests(coda, "grid-T2")) == 1
    assert delays == []
    stock = fetch_status(db, "stock")
    assert stock["enabled"] is True
    assert stock["disabled_reason"] is None
    assert stock["needs_attention"] is True
    assert stock["last_error_kind"] == "not_found"
    assert "cannot see" in stock["last_error"]
    assert sorted(fetch_rows(db, "stock")) == ["i-r1", "i-r2", "i-r3"]
    assert t1.outcome == "succeeded"
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2"]


def test_not_found_reason_names_table(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    not_found = Fault(endpoint=r"/tables/grid-T2/rows$", status=404, body=NOT_FOUND, times=0)

    sync_t1_then_t2_with_rows_answer(db, coda, make_job, not_found, [])

    assert "grid-T2" in fetch_status(db, "stock")["last_error"]


def test_token_revoked_mid_read_keeps_rows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    before = fetch_rows(db, "tasks")
    first_success = fetch_status(db, "tasks")["last_success_at"]
    coda.update_row(DOC, "grid-T1", "i-r3", {"c-qty": 70})
    # The emulator delays page 2 by one second, and the token is revoked once page 1 is served.
    coda.inject(Fault(endpoint="listRows", when_page_token=True, delay=1.0))
    coda.clear_requests()

    def revoke_after_first_page() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if rows_requests(coda):
                coda.revoke_token(TOKEN_ALL)
                return
            time.sleep(0.01)

    revoker = threading.Thread(target=revoke_after_first_page)
    revoker.start()
    result = runner.run(make_job())
    revoker.join()

    assert result.outcome == "disabled"
    assert [r.status for r in rows_requests(coda)] == [200, 401]  # no retry after the 401
    row = fetch_status(db, "tasks")
    assert row["enabled"] is False
    assert row["last_error_kind"] == "token_invalid"
    assert row["disabled_reason"].startswith("auth: 401 on rows of grid-T1")
    assert row["last_outcome"] != "succeeded"
    assert row["consecutive_failures"] == 1
    assert row["last_success_at"] == first_success
    assert fetch_rows(db, "tasks") == before  # r3 keeps qty 7, and no row was rewritten


# -- tables that return 404 ---------------------------------------------------------------------


def test_rename_keeps_rows_by_id(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job(table_id="Tasks"))
    coda.rename_table(DOC, "grid-T1", "Tasks 2024")
    coda.clear_requests()

    result = runner.run(make_job(table_id="Tasks"))

    assert result.outcome == "succeeded"
    assert requests_under(coda, "/tables/Tasks") == []
    assert [r.path for r in coda.requests if r.path.endswith("/tables")] == []
    assert len(requests_under(coda, "/tables/grid-T1")) >= 3
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["resolved_table_id"] == "grid-T1"
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2"]


def test_table_id_404_keeps_rows(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    add_rows(coda, "grid-T1", 2)
    add_rows(coda, "grid-T2", 2)
    delays: list[float] = []
    runner = recording_runner(db, coda, delays)
    register(db, [make_job("tasks"), make_job("stock", table_id="grid-T2")])
    runner.run(make_job("tasks"))
    runner.run(make_job("stock", table_id="grid-T2"))
    before = fetch_rows(db, "tasks")
    coda.inject(Fault(endpoint=r"/tables/grid-T1", status=404, body=NOT_FOUND, times=0))
    coda.clear_requests()

    failed = runner.run(make_job("tasks"))

    assert failed.outcome == "failed"
    assert failed.error_kind == "not_found"
    assert len(requests_under(coda, "/tables/grid-T1")) == 1  # no retry loop
    assert delays == []
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert row["needs_attention"] is True
    assert row["last_error_kind"] == "not_found"
    assert "does not exist" in row["last_error"]
    assert fetch_rows(db, "tasks") == before

    coda.clear_faults()
    assert runner.run(make_job("tasks")).outcome == "succeeded"


@pytest.mark.parametrize("json_body", [False, True], ids=["plain-text-404", "json-404"])
def test_retired_api_path_one_error(
    db: Database,
    coda: CodaEmulator,
    make_job: JobFactory,
    caplog: pytest.LogCaptureFixture,
    json_body: bool,
) -> None:
    # Every request under a retired base path such as /apis/v1beta1 gets 404.
    add_rows(coda, "grid-T1", 2)
    add_rows(coda, "grid-T2", 3)
    jobs = [make_job("tasks"), make_job("stock", table_id="grid-T2")]
    register(db, jobs)
    good = recording_runner(db, coda, [])
    for job in jobs:
        good.run(job)
    before = {job.name: fetch_rows(db, job.target_table) for job in jobs}
    if json_body:
        coda.inject(Fault(endpoint=r"^/apis/v1beta1/", status=404, body=NOT_FOUND, times=0))
    retired = recording_runner(db, coda, [], base_url=coda.base_url.replace("/apis/v1", "/apis/v1beta1"))

    with caplog.at_level(logging.ERROR, logger="worker.sync"):
        results = [retired.run(job) for job in jobs]

    assert [r.outcome for r in results] == ["failed", "failed"]
    assert results[-1].error_kind == "api_not_found"
    assert "CODA_API_BASE_URL" in (results[-1].message or "")
    for job in jobs:
        row = fetch_status(db, job.name)
        assert row["last_error_kind"] == "api_not_found"
        assert row["enabled"] is True
        assert row["disabled_reason"] is None
        assert fetch_rows(db, job.target_table) == before[job.name]
    reports = [r for r in caplog.records if getattr(r, "event", None) == "api_not_found"]
    assert len(reports) == 1


# -- paging -----------------------------------------------------------------------------------


def test_each_run_starts_at_first_page(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    first_run_tokens = {r.query["pageToken"] for r in rows_requests(coda) if "pageToken" in r.query}
    add_rows(coda, "grid-T1", 1, start=4)
    coda.expire_page_tokens()  # the server rejects page tokens minted in an earlier run
    coda.clear_requests()

    result = runner.run(make_job())

    assert len(first_run_tokens) == 1
    second_run = rows_requests(coda)
    assert "pageToken" not in second_run[0].query
    assert second_run[0].query.get("valueFormat") == "rich"
    assert [r.query["pageToken"] for r in second_run if r.query.get("pageToken") in first_run_tokens] == []
    assert [r.status for r in second_run] == [200, 200]
    assert result.outcome == "succeeded"
    rows = fetch_rows(db, "tasks")
    assert {row_id: row["name"] for row_id, row in rows.items()} == {
        "i-r1": "Alpha",
        "i-r2": "Beta",
        "i-r3": "Gamma",
        "i-r4": "Delta",
    }
    assert qty_by_row(db) == {"i-r1": 3, "i-r2": 5, "i-r3": 7, "i-r4": 9}


def test_page_token_400_never_disables(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    before = fetch_rows(db, "tasks")
    coda.inject(Fault(endpoint="listRows", action="reject_page_token", times=0))
    coda.clear_requests()

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_request"
    first_pages = [r for r in rows_requests(coda) if "pageToken" not in r.query]
    assert len(first_pages) == 2  # the read restarted from page 1 exactly once
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert fetch_rows(db, "tasks") == before


def test_columns_follow_token_past_cap(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.column_page_cap = 2
    coda.add_table(
        DOC,
        "grid-T4",
        name="Notes",
        columns=[
            Column("c-name", "Name", "text", display=True),
            Column("c-qty", "Qty", "number"),
            Column("c-note", "Note", "text"),
        ],
    )
    coda.add_row(DOC, "grid-T4", {"c-name": "Alpha", "c-qty": 3, "c-note": "hello"}, row_id="i-r1")

    result = runner.run(make_job("notes", table_id="grid-T4"))

    assert result.outcome == "succeeded"
    column_requests = [r for r in coda.requests if r.path.endswith("/columns")]
    assert len(column_requests) == 2
    assert column_requests[0].query.get("limit") == str(COLUMN_PAGE_LIMIT)
    assert "pageToken" in column_requests[1].query
    with db.connection() as conn:
        columns = conn.execute(
            "SELECT column_id, format FROM coda_sync.table_columns WHERE job_name = 'notes' ORDER BY position"
        ).fetchall()
    assert [column[0] for column in columns] == ["c-name", "c-qty", "c-note"]
    assert columns[2][1] == {"type": "text", "isArray": False}
    assert fetch_rows(db, "notes")["i-r1"]["values"]["c-note"] == "```hello```"


def test_full_page_without_token_ends_read(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # A page exactly as large as the requested limit without a nextPageToken completes the read.
    coda.row_page_cap = ROW_PAGE_LIMIT
    coda.column_page_cap = COLUMN_PAGE_LIMIT
    columns = [Column(f"c-{number}", f"Column {number}", "number") for number in range(COLUMN_PAGE_LIMIT)]
    coda.add_table(DOC, "grid-T5", name="Full", columns=columns)
    for number in range(ROW_PAGE_LIMIT):
        coda.add_row(DOC, "grid-T5", {"c-0": number}, row_id=f"i-f{number}")

    result = runner.run(make_job("full", table_id="grid-T5"))

    assert result.outcome == "succeeded"
    column_requests = [r for r in coda.requests if r.path.endswith("/columns")]
    assert len(column_requests) == 1
    row_requests = rows_requests(coda, "grid-T5")
    assert len(row_requests) == 1
    assert row_requests[0].query.get("limit") == str(ROW_PAGE_LIMIT)
    assert len(fetch_rows(db, "full")) == ROW_PAGE_LIMIT
    with db.connection() as conn:
        stored_columns = conn.execute(
            "SELECT count(*) FROM coda_sync.table_columns WHERE job_name = 'full'"
        ).fetchone()
    assert stored_columns == (COLUMN_PAGE_LIMIT,)


# -- row identity ------------------------------------------------------------------------------


def test_resort_keeps_rows_by_id(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Two rows share the display name "Alpha", and the table is then re-sorted without other changes.
    add_rows(coda, "grid-T1", 2)
    coda.add_row(DOC, "grid-T1", {"c-name": "Alpha", "c-qty": 7}, row_id="i-r3")
    r1 = {"c-name": "Alpha", "c-qty": 3}
    r2 = {"c-name": "Beta", "c-qty": 5}
    r3 = {"c-name": "Alpha", "c-qty": 7}
    first = [coda_row(coda, 1, r1), coda_row(coda, 2, r2), coda_row(coda, 3, r3)]
    resorted = [
        coda_row(coda, 3, r3, index=1),
        coda_row(coda, 1, r1, index=2),
        coda_row(coda, 2, r2, index=3),
    ]
    coda.inject(Fault(endpoint="listRows", status=200, body=rows_page(coda, first)))
    runner.run(make_job())
    coda.inject(Fault(endpoint="listRows", status=200, body=rows_page(coda, resorted)))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert result.counts is not None
    assert result.counts.inserted == 0
    assert result.counts.deleted == 0
    rows = fetch_rows(db, "tasks")
    assert {row_id: row["values"] for row_id, row in rows.items()} == {"i-r1": r1, "i-r2": r2, "i-r3": r3}
    assert {row_id: row["name"] for row_id, row in rows.items()} == {
        "i-r1": "Alpha",
        "i-r2": "Beta",
        "i-r3": "Alpha",
    }
    assert {row_id: row["index"] for row_id, row in rows.items()} == {"i-r1": 2, "i-r2": 3, "i-r3": 1}
    assert fetch_status(db, "tasks")["rows_total"] == 3


# -- rate limits --------------------------------------------------------------------------------


def test_rate_limit_exhausted_changes_nothing(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 4)
    delays: list[float] = []
    runner = recording_runner(db, coda, delays)
    runner.run(make_job())
    before = fetch_rows(db, "tasks")
    first_success = fetch_status(db, "tasks")["last_success_at"]
    coda.update_row(DOC, "grid-T1", "i-r1", {"c-qty": 30})
    coda.delete_row(DOC, "grid-T1", "i-r4")
    coda.inject(Fault(endpoint="listRows", when_page_token=True, status=429, body=TOO_MANY, times=0))
    coda.clear_requests()

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "rate_limited"
    page_two = [r for r in rows_requests(coda) if "pageToken" in r.query]
    assert len(page_two) == 6  # the retry budget of one request
    # Backoff without Retry-After: at least half the base delay, at most a doubling ceiling.
    assert len(delays) == 5
    for attempt, delay in enumerate(delays, start=1):
        assert 0.5 <= delay <= 2 ** (attempt - 1), delays
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert row["needs_attention"] is True
    assert row["last_error_kind"] == "rate_limited"
    assert row["last_success_at"] == first_success
    # Page 1 with r1's new qty was not applied, and r4, which Coda no longer has, is kept.
    assert fetch_rows(db, "tasks") == before


# -- docs over the API size limit ---------------------------------------------------------------


@pytest.mark.parametrize("status_code", [400, 403, 503], ids=["400", "403", "503"])
def test_oversized_doc_keeps_rows_and_job(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, status_code: int
) -> None:
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job())
    before = fetch_rows(db, "tasks")
    coda.update_row(DOC, "grid-T1", "i-r1", {"c-qty": 30})
    coda.oversize_status = status_code
    coda.set_over_api_size_limit(DOC)

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "doc_too_large"
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert row["needs_attention"] is True
    assert row["last_error_kind"] == "doc_too_large"
    assert "API size limit" in row["last_error"]
    assert fetch_rows(db, "tasks") == before

    coda.set_over_api_size_limit(DOC, False)
    assert runner.run(make_job()).outcome == "succeeded"
    assert qty_by_row(db) == {"i-r1": 30, "i-r2": 5}


@pytest.mark.xfail(
    strict=True,
    reason="the worker never calls GET /docs/{docId}, so the reason cannot carry docSize numbers",
)
def test_oversized_doc_reason_has_doc_size(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.add_doc(
        "FakeDoc02",
        name="Big ops tracker",
        size_override={"totalRowCount": 412000, "tableAndViewCount": 57, "pageCount": 30},
    )
    coda.add_table(
        "FakeDoc02",
        "grid-T1",
        name="Tasks",
        columns=[Column("c-name", "Name", "text", display=True), Column("c-qty", "Qty", "number")],
    )
    coda.add_row("FakeDoc02", "grid-T1", {"c-name": "Alpha", "c-qty": 3}, row_id="i-r1")
    runner.run(make_job(doc_id="FakeDoc02"))
    coda.set_over_api_size_limit("FakeDoc02")

    runner.run(make_job(doc_id="FakeDoc02"))

    row = fetch_status(db, "tasks")
    assert row["last_error_kind"] == "doc_too_large"
    assert "412000" in row["last_error"]


@pytest.mark.xfail(
    strict=True,
    reason="a 403 whose message does not mention the size is treated as a refused token, and "
    "the worker does not read docSize.overApiSizeLimit before disabling the job",
)
def test_oversized_doc_403_not_scope_error(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # The token is unrestricted, so it could read GET /docs/{docId} and its overApiSizeLimit.
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job())
    coda.set_over_api_size_limit(DOC)
    coda.inject(Fault(endpoint="listRows", status=403, body=FORBIDDEN, times=0))

    result = runner.run(make_job())

    assert result.error_kind == "doc_too_large"
    assert fetch_status(db, "tasks")["enabled"] is True


# -- freshness, deletes and response shapes ---------------------------------------------------


def test_edit_appears_on_next_run(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # While the API's snapshot lags the editor, requests with X-Coda-Doc-Version: latest get 400.
    coda.set_doc_stale(DOC)
    add_rows(coda, "grid-T1", 2)
    first = runner.run(make_job())
    synced_before = {row_id: row["synced_at"] for row_id, row in fetch_rows(db, "tasks").items()}
    coda.update_row(DOC, "grid-T1", "i-r1", {"c-qty": 30})

    started = dt.datetime.now(dt.UTC)
    second = runner.run(make_job())
    finished = dt.datetime.now(dt.UTC)

    assert first.outcome == "succeeded"
    assert second.outcome == "succeeded"
    assert [r.path for r in coda.requests if r.status == 400] == []
    assert [r.path for r in coda.requests if "x-coda-doc-version" in r.headers] == []
    rows = fetch_rows(db, "tasks")
    assert qty_by_row(db) == {"i-r1": 30, "i-r2": 5}
    assert started <= rows["i-r1"]["synced_at"] <= finished
    assert rows["i-r2"]["synced_at"] == synced_before["i-r2"]


@pytest.mark.parametrize("deletes", ["hard", "soft"])
def test_full_scan_removes_deleted_rows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, deletes: str
) -> None:
    # Coda's sync tokens report changed rows but never deleted ones.
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job(deletes=deletes))
    coda.delete_row(DOC, "grid-T1", "i-r2")
    coda.update_row(DOC, "grid-T1", "i-r3", {"c-qty": 8}, updated_at="2024-03-02T08:00:00.000Z")

    second = runner.run(make_job(deletes=deletes))
    third = runner.run(make_job(deletes=deletes))

    assert [r.query for r in coda.requests if "syncToken" in r.query] == []
    assert second.counts is not None
    assert second.counts.deleted == 1
    assert third.counts is not None
    assert (third.counts.inserted, third.counts.updated, third.counts.deleted) == (0, 0, 0)
    assert fetch_status(db, "tasks")["rows_total"] == 2
    with db.connection() as conn:
        if deletes == "soft":
            live = conn.execute(
                "SELECT _coda_row_id FROM coda.tasks WHERE _coda_deleted_at IS NULL ORDER BY 1"
            ).fetchall()
        else:
            live = conn.execute("SELECT _coda_row_id FROM coda.tasks ORDER BY 1").fetchall()
    assert [row[0] for row in live] == ["i-r1", "i-r3"]
    assert qty_by_row(db)["i-r3"] == 8
    if deletes == "soft":
        assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3"]


def test_new_api_fields_are_ignored(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    table = coda.table_payload(DOC, "grid-T1") | {"viewId": "view-X1", "futureField": {"a": 1}}
    columns = two_columns(coda, "grid-T1")
    for column in columns["items"]:
        column.update(formula="thisRow.Qty * 2", futureField=[1, 2])
    r1 = coda_row(coda, 1, {"c-name": "Alpha", "c-qty": 3}) | {"newRowField": True}
    # A row with only the fields the worker uses: id, values and updatedAt.
    r2 = {"id": "i-r2", "values": {"c-name": "Beta", "c-qty": 5}, "updatedAt": ROW_TIME, "newRowField": True}
    coda.inject(Fault(endpoint="getTable", status=200, body=table))
    coda.inject(Fault(endpoint="listColumns", status=200, body=columns))
    coda.inject(Fault(endpoint="listRows", status=200, body=rows_page(coda, [r1, r2], nextSyncToken="S1")))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["last_error_kind"] is None
    rows = fetch_rows(db, "tasks")
    assert {row_id: stored["values"] for row_id, stored in rows.items()} == {
        "i-r1": {"c-name": "Alpha", "c-qty": 3},
        "i-r2": {"c-name": "Beta", "c-qty": 5},
    }
    with db.connection() as conn:
        stored_columns = conn.execute(
            "SELECT column_id FROM coda_sync.table_columns WHERE job_name = 'tasks' ORDER BY position"
        ).fetchall()
    assert [column[0] for column in stored_columns] == ["c-name", "c-qty"]


# -- rich values ------------------------------------------------------------------------------


def test_rich_text_stored_unchanged(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Rich text arrives fenced in triple backticks when it is plain, and as Markdown otherwise.
    notes = {"i-r1": "```Call the supplier back```", "i-r2": "**Urgent** call", "i-r3": "```\nSELECT 1;"}
    items = [coda_row(coda, n, {"c-note": notes[f"i-r{n}"]}, name=f"row {n}") for n in (1, 2, 3)]
    coda.inject(Fault(endpoint="listRows", status=200, body=rows_page(coda, items)))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    stored = {row_id: row["values"] for row_id, row in fetch_rows(db, "tasks").items()}
    assert stored == {row_id: {"c-note": note} for row_id, note in notes.items()}


def test_rich_objects_stored_unchanged(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    full = {
        "c-tags": ["Acme, Inc.", "VIP"],
        "c-price": MONEY,
        "c-owner": PERSON,
        "c-client": LOOKUP,
        "c-due": "",
    }
    without_due = {key: value for key, value in full.items() if key != "c-due"}
    display_price = full | {"c-price": "$1,234.50"}  # a currency cell that arrived as text
    items = [
        coda_row(coda, 1, full, name="Acme deal"),
        coda_row(coda, 2, without_due, name="Acme renewal"),
        coda_row(coda, 3, display_price, name="Acme upsell"),
    ]
    coda.inject(Fault(endpoint="listRows", status=200, body=rows_page(coda, items)))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    stored = {row_id: row["values"] for row_id, row in fetch_rows(db, "tasks").items()}
    assert stored == {"i-r1": full, "i-r2": without_due, "i-r3": display_price}
    assert "c-due" not in stored["i-r2"]


def test_rows_always_requested_as_rich(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 5)

    runner.run(make_job())
    runner.run(make_job())

    requests = rows_requests(coda)
    first_pages = [r for r in requests if "pageToken" not in r.query]
    assert len(first_pages) == 2
    assert [r.query.get("valueFormat") for r in first_pages] == ["rich", "rich"]
    # Continuation pages send the pageToken alone, so the token carries the first page's format,
    # and the fenced text stored from the last page shows that it arrived rich.
    assert all(set(r.query) == {"pageToken"} for r in requests if "pageToken" in r.query)
    stored = {row_id: row["values"]["c-name"] for row_id, row in fetch_rows(db, "tasks").items()}
    assert stored == {row["id"]: row["values"]["c-name"] for row in coda.rows(DOC, "grid-T1")}
    assert stored["i-r5"] == "```Epsilon```"


# -- hidden rows and views --------------------------------------------------------------------


def test_hidden_rows_are_kept(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Natural sort or visibleOnly would return only the rows the current UI filter shows.
    add_rows(coda, "grid-T1", 3)
    coda.hide_row(DOC, "grid-T1", "i-r2")
    runner.run(make_job())
    coda.hide_row(DOC, "grid-T1", "i-r3")

    result = runner.run(make_job())

    for request in coda.requests:
        assert request.query.get("sortBy") != "natural"
        assert request.query.get("visibleOnly", "false") == "false"
    assert result.counts is not None
    assert result.counts.deleted == 0
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3"]


def test_natural_sort_400_fails_loudly(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    before = fetch_rows(db, "tasks")
    coda.inject(Fault(endpoint="listRows", status=400, body=NATURAL_SORT_400, times=0))
    coda.clear_requests()

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_request"
    assert "Natural sort requires visible rows" in (result.message or "")
    assert len(rows_requests(coda)) == 1
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert row["needs_attention"] is True
    assert fetch_rows(db, "tasks") == before


def test_view_id_rejected_names_base_table(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    before = fetch_rows(db, "tasks")
    coda.add_table(
        DOC,
        "table-V1",
        name="Open tasks",
        parent_table_id="grid-T1",
        view_filter=lambda values: values.get("c-qty") != 5,
    )
    view_job = make_job(table_id="table-V1")
    with db.connection() as conn:
        status.register_jobs(conn, [view_job])  # the config now names the view
    coda.clear_requests()

    result = runner.run(view_job)

    assert result.outcome == "failed"
    assert result.error_kind == "config_error"
    assert "'grid-T1'" in (result.message or "")
    assert rows_requests(coda, "table-V1") == []
    row = fetch_status(db, "tasks")
    assert row["enabled"] is True
    assert row["disabled_reason"] is None
    assert fetch_rows(db, "tasks") == before
