"""The values a Coda read produces, and their parsing from the API's JSON.

Parsing needs only the fields the worker uses (`id`, `values`, `nextPageToken` and the row's
metadata); unknown fields that Coda adds later are ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.errors import BadResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TableInfo:
    """The parts of Coda's `Table` object that a sync needs."""

    id: str
    name: str
    table_type: str
    row_count: int | None
    parent_table_id: str | None


@dataclass(frozen=True, kw_only=True)
class ColumnInfo:
    """One column of a table; `format` keeps Coda's format object as sent."""

    id: str
    name: str
    position: int
    format: dict[str, Any]
    display: bool
    calculated: bool


@dataclass(frozen=True, kw_only=True)
class RowRecord:
    """One row as `listRows` returns it with `valueFormat=rich`."""

    id: str
    name: str | None
    index: int | None
    created_at: str | None
    updated_at: str | None
    values: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Identity:
    """The user behind a token, from `/whoami`."""

    login_id: str
    name: str
    scoped: bool
    token_name: str


@dataclass
class RequestStats:
    """Counters of one run's requests, stored in its status."""

    requests: int = 0
    retries: int = 0
    pages: int = 0
    rate_limit_wait: float = 0.0  # seconds


def require_str(data: dict[str, Any], key: str, operation: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise BadResponse(f"{operation} answer has no string {key!r}")
    return value


def parse_column(item: dict[str, Any], position: int) -> ColumnInfo:
    column_format = item.get("format")
    return ColumnInfo(
        id=require_str(item, "id", "listColumns"),
        name=str(item.get("name", "")),
        position=position,
        format=column_format if isinstance(column_format, dict) else {},
        display=bool(item.get("display", False)),
        calculated=bool(item.get("calculated", False)),
    )


def parse_row(item: dict[str, Any]) -> RowRecord:
    values = item.get("values")
    if not isinstance(values, dict):
        raise BadResponse(f"listRows returned row {item.get('id')!r} without a 'values' object")
    index = item.get("index")
    name = item.get("name")
    return RowRecord(
        id=require_str(item, "id", "listRows"),
        name=name if isinstance(name, str) else None,
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        created_at=_timestamp(item.get("createdAt")),
        updated_at=_timestamp(item.get("updatedAt")),
        values=values,
    )


def _timestamp(value: object) -> str | None:
    """Keep an ISO 8601 timestamp for PostgreSQL; anything unparsable becomes None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value
