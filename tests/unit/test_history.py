"""`coda-sync history` lines and the pruning interval."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.history import PRUNE_INTERVAL, format_run, jsonable_run, prune_due

STARTED = datetime(2025, 6, 10, 12, 0, 0, tzinfo=UTC)
SLOT = datetime(2025, 6, 10, 11, 59, 58, tzinfo=UTC)


def run_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": "r1",
        "job_name": "deals",
        "instance_id": "host-1-abc",
        "scheduled_for": SLOT,
        "started_at": STARTED,
        "outcome": "succeeded",
        "error_kind": None,
        "error": None,
        "rows_read": 10,
        "rows_inserted": 2,
        "rows_updated": 1,
        "rows_deleted": 0,
        "duration_seconds": 1.25,
    }
    row.update(overrides)
    return row


def test_prune_due_once_an_hour() -> None:
    assert prune_due(None, 100.0)
    assert not prune_due(100.0, 100.0 + PRUNE_INTERVAL - 1)
    assert prune_due(100.0, 100.0 + PRUNE_INTERVAL)


def test_format_run_success() -> None:
    line = format_run(run_row())

    assert line == (
        "2025-06-10T12:00:00+00:00  deals: succeeded in 1.2 s, 10 read, 2 inserted, 1 updated,"
        " 0 deleted, slot 2025-06-10T11:59:58+00:00, worker host-1-abc"
    )


def test_format_run_failure_shows_error() -> None:
    row = run_row(
        outcome="failed",
        rows_read=None,
        scheduled_for=None,
        error_kind="unavailable",
        error="Coda kept answering 503",
    )

    assert format_run(row) == (
        "2025-06-10T12:00:00+00:00  deals: failed in 1.2 s, worker host-1-abc\n"
        "    unavailable: Coda kept answering 503"
    )


def test_jsonable_run_formats_timestamps() -> None:
    row = jsonable_run(run_row())

    assert row["started_at"] == "2025-06-10T12:00:00+00:00"
    assert row["rows_read"] == 10
