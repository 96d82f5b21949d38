"""The values a Coda read produces, and their parsing from the API's JSON.

Parsing needs only the fields the worker uses (`id`, `values`, `nextPageToken` and the row's
metadata); unknown fields that Coda adds later are ignored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.errors import BadResponse

logger = logging.getLogger(__name__)

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?")


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
        raise BadResponse(f"{operation} response has no string {key!r}")
    return value


def parse_column(item: dict[str, Any], position: int) -> ColumnInfo:
    column_format = item.get("format")
    return ColumnInfo(
        id=storable_text(require_str(item, "id", "listColumns")),
        name=storable_text(str(item.get("name", ""))),
        position=position,
        format=storable_json(column_format) if isinstance(column_format, dict) else {},
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
        id=storable_text(require_str(item, "id", "listRows")),
        name=storable_text(name) if isinstance(name, str) else None,
        index=index if _is_bigint(index) else None,
        created_at=_timestamp(item.get("createdAt")),
        updated_at=_timestamp(item.get("updatedAt")),
        values=values,  # cleaned for PostgreSQL when serialised, see worker.sink.encode_values
    )


def storable_text(text: str) -> str:
    """Return *text* with what PostgreSQL cannot store replaced by U+FFFD.

    PostgreSQL's text and jsonb reject the NUL character, and UTF-8 cannot encode a lone
    surrogate (half of a character cut in two), so neither can reach the database as it is.
    """
    # NOTE: such a character is stored as U+FFFD, so the cell no longer matches Coda exactly.
    return UNSTORABLE.sub("\ufffd", text)


def storable_json(value: Any) -> Any:
    """Apply `storable_text` to every string and key inside a decoded JSON value."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    return value


def _is_bigint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _timestamp(value: object) -> str | None:
    """Keep an RFC 3339 timestamp for PostgreSQL; anything else becomes None.

    Python's `fromisoformat` alone accepts forms PostgreSQL rejects (week dates, hour-only
    times), so the shape is checked first and the values (month 13, hour 25) second.
    """
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value
