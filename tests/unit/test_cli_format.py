"""The one-line views that `coda-sync status` prints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.cli import format_status_row


def status_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "job_name": "deals",
        "enabled": True,
        "in_config": True,
        "last_outcome": "succeeded",
        "last_success_at": datetime(2026, 12, 4, 10, 0, tzinfo=UTC),
        "next_run_at": datetime(2026, 12, 4, 11, 0, tzinfo=UTC),
        "rows_total": 3,
        "target_table": "coda.deals",
        "needs_attention": False,
        "last_error": None,
        "last_error_kind": None,
        "disabled_reason": None,
        "stale": False,
    }
    row.update(overrides)
    return row


def test_status_row_shows_next_run() -> None:
    assert "next run 2026-12-04T11:00:00+00:00" in format_status_row(status_row())


def test_status_row_hides_next_run_without_worker() -> None:
    line = format_status_row(status_row(), worker_running=False)

    assert "next run - (no worker running)" in line
    assert "11:00" not in line


def test_status_row_disabled_shows_reason() -> None:
    line = format_status_row(
        status_row(enabled=False, disabled_reason="scope: 403", last_error_kind="token_out_of_scope")
    )

    assert line.startswith("deals: DISABLED")
    assert "disabled (token_out_of_scope): scope: 403" in line
