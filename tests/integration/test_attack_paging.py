"""Paging, rowCount, Retry-After and connection faults thrown at a run."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from tests.integration.conftest import DOC, JobFactory, add_rows, fetch_rows, fetch_status
from worker.database import Database
from worker.emulator import CodaEmulator, Fault
from worker.source import ClientOptions, CodaClient
from worker.sync import JobRunner, RunnerOptions

TOO_MANY = {"statusCode": 429, "statusMessage": "Too Many Requests", "message": "Too Many Requests"}


def sleepless_runner(db: Database, coda: CodaEmulator, delays: list[float]) -> JobRunner:
    """Build a runner whose clients record each backoff wait in *delays* instead of sleeping."""

    def factory(token: SecretStr, options: ClientOptions) -> CodaClient:
        options.sleep = delays.append
        return CodaClient(coda.base_url, token, options=options)

    options = RunnerOptions(base_url=coda.base_url, timeout=5.0, connect_timeout=2.0, max_retry_time=300.0)
    return JobRunner(db, options, client_factory=factory)


def page(rows: list[dict[str, Any]], token: object = None) -> dict[str, Any]:
    body: dict[str, Any] = {"items": rows, "href": "x"}
    if token is not None:
        body["nextPageToken"] = token
    return body


def test_page_token_number_fails(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    rows = coda.rows(DOC, "grid-T1")
    coda.delete_row(DOC, "grid-T1", "i-r3")
    coda.inject(Fault(endpoint="listRows", status=200, body=page(rows[:1], token=2)))

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3"]


def test_page_token_empty_keeps_unread_rows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # An empty token ends the read, so only rowCount keeps a cut read from deleting rows.
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    rows = coda.rows(DOC, "grid-T1")
    coda.inject(Fault(endpoint="listRows", status=200, body=page(rows[:1], token="")))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert result.attention is not None
    assert "rowCount 3" in result.attention
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3"]


def test_page_token_echoes_request_fails(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    rows = coda.rows(DOC, "grid-T1")
    coda.inject(Fault(endpoint="listRows", status=200, body=page(rows[:1], token="P1")))
    coda.inject(Fault(endpoint="listRows", status=200, body=page(rows[1:2], token="P2")))
    coda.inject(Fault(endpoint="listRows", status=200, body=page(rows[2:], token="P1")))

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert len(fetch_rows(db, "tasks")) == 3


@pytest.mark.parametrize("row_count", ["3", -1, None, 2.0], ids=["string", "negative", "null", "float"])
def test_row_count_odd_falls_back_to_fraction(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, row_count: object
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner.run(make_job())
    for row_id in ("i-r1", "i-r2", "i-r3"):
        coda.delete_row(DOC, "grid-T1", row_id)
    table = coda.table_payload(DOC, "grid-T1") | {"rowCount": row_count}
    coda.inject(Fault(endpoint="getTable", status=200, body=table))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert result.attention is not None
    assert fetch_status(db, "tasks")["deletes_withheld"] == 3
    assert len(fetch_rows(db, "tasks")) == 4


def test_row_count_absent_allows_small_delete(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 4)
    runner.run(make_job())
    coda.delete_row(DOC, "grid-T1", "i-r4")
    table = coda.table_payload(DOC, "grid-T1")
    del table["rowCount"]
    coda.inject(Fault(endpoint="getTable", status=200, body=table))

    result = runner.run(make_job())

    assert result.counts is not None
    assert result.counts.deleted == 1
    assert sorted(fetch_rows(db, "tasks")) == ["i-r1", "i-r2", "i-r3"]


def test_retry_after_http_date(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    add_rows(coda, "grid-T1", 2)
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    coda.inject(Fault(endpoint="listRows", status=429, headers={"Retry-After": when}, body=TOO_MANY))
    delays: list[float] = []

    result = sleepless_runner(db, coda, delays).run(make_job())

    assert result.outcome == "succeeded"
    assert len(delays) == 1
    assert 1.0 <= delays[0] <= 3.0


@pytest.mark.parametrize("header", ["-5", "1.5", "soon", ""], ids=["negative", "fraction", "word", "empty"])
def test_retry_after_odd_uses_backoff(
    db: Database, coda: CodaEmulator, make_job: JobFactory, header: str
) -> None:
    add_rows(coda, "grid-T1", 2)
    coda.inject(Fault(endpoint="listRows", status=429, headers={"Retry-After": header}, body=TOO_MANY))
    delays: list[float] = []

    result = sleepless_runner(db, coda, delays).run(make_job())

    assert result.outcome == "succeeded"
    assert len(delays) == 1
    assert 0.5 <= delays[0] <= 1.0


def test_retry_after_hour_fails_fast(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job())
    coda.inject(
        Fault(endpoint="listRows", status=429, headers={"Retry-After": "3600"}, body=TOO_MANY, times=0)
    )

    started = time.monotonic()
    result = runner.run(make_job())

    assert time.monotonic() - started < 2.0
    assert result.outcome == "failed"
    assert result.error_kind == "rate_limited"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 2


def test_server_error_then_changed_page(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 4)
    coda.inject(
        Fault(
            endpoint="listRows",
            when_page_token=True,
            status=500,
            body={"statusCode": 500, "statusMessage": "Internal Server Error", "message": "boom"},
        )
    )
    coda.update_row(DOC, "grid-T1", "i-r3", {"c-qty": 40})

    result = sleepless_runner(db, coda, []).run(make_job())

    assert result.outcome == "succeeded"
    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r2", "i-r3", "i-r4"]
    assert rows["i-r3"]["values"]["c-qty"] == 40  # type: ignore[index]


def test_dropped_connection_mid_read_retried(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    coda.row_page_cap = 1
    add_rows(coda, "grid-T1", 3)
    coda.inject(Fault(endpoint="listRows", when_page_token=True, action="drop_connection"))
    delays: list[float] = []

    result = sleepless_runner(db, coda, delays).run(make_job())

    assert result.outcome == "succeeded"
    assert len(delays) == 1
    assert len(fetch_rows(db, "tasks")) == 3


def test_dropped_connection_always_fails(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    coda.row_page_cap = 1
    add_rows(coda, "grid-T1", 3)
    runner = sleepless_runner(db, coda, [])
    runner.run(make_job())
    coda.delete_row(DOC, "grid-T1", "i-r3")
    coda.inject(Fault(endpoint="listRows", when_page_token=True, action="drop_connection", times=0))

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "unavailable"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 3


def test_number_over_digit_limit_fails_run(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Python's json rejects integers of more than 4300 digits with a plain ValueError.
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job())
    body = '{"items": [], "href": "x", "total": ' + "9" * 5000 + "}"
    coda.inject(Fault(endpoint="listRows", status=200, body=body))

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert len(fetch_rows(db, "tasks")) == 2
