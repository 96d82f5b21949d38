"""`coda-sync history`: recent runs from `coda_sync.job_runs`, and when to prune them."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0  # seconds between two prunings of the history by one worker


def prune_due(last_pruned: float | None, now: float) -> bool:
    """Return True when the history was never pruned by this worker or an hour has passed."""
    return last_pruned is None or now - last_pruned >= PRUNE_INTERVAL


def format_run(row: dict[str, Any]) -> str:
    """Return the line `coda-sync history` prints for one row of `coda_sync.job_runs`."""
    line = f"{_timestamp(row['started_at'])}  {row['job_name']}: {row['outcome']}"
    if row["duration_seconds"] is not None:
        line += f" in {row['duration_seconds']:.1f} s"
    if row["rows_read"] is not None:
        line += (
            f", {row['rows_read']} read, {row['rows_inserted']} inserted,"
            f" {row['rows_updated']} updated, {row['rows_deleted']} deleted"
        )
    if row["scheduled_for"] is not None:
        line += f", slot {_timestamp(row['scheduled_for'])}"
    if row["instance_id"]:
        line += f", worker {row['instance_id']}"
    if row["error"]:
        line += f"\n    {row['error_kind']}: {row['error']}"
    return line


def jsonable_run(row: dict[str, Any]) -> dict[str, Any]:
    """Return the row with timestamps as ISO 8601 strings, for `coda-sync history --json`."""
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}


def _timestamp(value: datetime) -> str:
    return value.isoformat(timespec="seconds")
