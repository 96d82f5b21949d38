"""Query parameters, row selection and paging of the list endpoints.

A page token names a :class:`Cursor` kept server-side: the listing's parameters and the offset
of the next page. Offsets are taken over the live, re-sorted row list, so rows added or deleted
while a client pages can be skipped or repeated, as the real API allows.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from worker.emulator.model import Column, Store, StoredRow
from worker.emulator.render import VALUE_FORMATS, is_empty, simple_value
from worker.emulator.routes import ACCEPTED_PARAMETERS

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 25
ROW_SORTS = ("createdAt", "natural", "updatedAt")
NATURAL_SORT_MESSAGE = (
    "Natural sorting is only available for visible rows. When using sortBy=natural, pass "
    "visibleOnly=true or omit the visibleOnly param which has the same effect.(The natural "
    "ordering of a table is only meaningfully defined for visible rows.)"
)

T = TypeVar("T")


class ApiError(Exception):
    """An error status and message that the emulator returns in Coda's error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass(frozen=True)
class RowQuery:
    """The parameters of a ``listRows`` listing. ``since_version`` comes from a sync token."""

    limit: int = DEFAULT_LIMIT
    value_format: str = "simple"
    sort_by: str = "createdAt"
    visible_only: bool = False
    use_column_names: bool = False
    filter_column: str | None = None
    filter_value: Any = None
    since_version: int | None = None


@dataclass(frozen=True)
class Cursor:
    """The listing state behind a page token: one listing of one resource, from ``offset`` on.

    ``started_version`` is the store's change number when the listing began, which the
    ``nextSyncToken`` on its last page carries.
    """

    operation: str
    resource: tuple[str, ...]
    query: Any
    offset: int
    started_version: int


class TokenStore(Generic[T]):
    """Opaque random tokens mapped to server-side values."""

    def __init__(self) -> None:
        self._values: dict[str, T] = {}

    def mint(self, value: T) -> str:
        token = secrets.token_urlsafe(24)
        self._values[token] = value
        return token

    def get(self, token: str) -> T | None:
        return self._values.get(token)

    def clear(self) -> None:
        self._values.clear()


def check_parameters(operation: str, params: Mapping[str, str]) -> None:
    """Raise a 400 for query parameters the spec does not declare for ``operation``."""
    unknown = sorted(set(params) - ACCEPTED_PARAMETERS[operation])
    if unknown:
        accepted = ", ".join(sorted(ACCEPTED_PARAMETERS[operation])) or "none"
        raise bad_request(f"Unknown query parameter(s) {', '.join(unknown)}; accepted: {accepted}")


def parse_bool(params: Mapping[str, str], name: str) -> bool | None:
    """Return a boolean query parameter, None when absent; raise a 400 when not true/false."""
    raw = params.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise bad_request(f"Invalid value for {name}: {raw!r}; expected true or false")


def parse_limit(params: Mapping[str, str]) -> int:
    """Return ``limit`` (default 25); raise a 400 unless it is an integer of at least 1."""
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value for limit: {raw!r}; expected an integer") from None
    if limit < 1:
        raise bad_request(f"Invalid value for limit: {limit}; the minimum is 1")
    return limit


def parse_row_query(params: Mapping[str, str], columns: list[Column]) -> RowQuery:
    """Parse the ``listRows`` parameters other than ``pageToken`` and ``syncToken``."""
    value_format = params.get("valueFormat", "simple")
    if value_format not in VALUE_FORMATS:
        raise bad_request(f"Invalid value for valueFormat: {value_format!r}; expected one of {VALUE_FORMATS}")
    sort_by = params.get("sortBy", "createdAt")
    if sort_by not in ROW_SORTS:
        raise bad_request(f"Invalid value for sortBy: {sort_by!r}; expected one of {ROW_SORTS}")

    visible_only = parse_bool(params, "visibleOnly")
    if sort_by == "natural":
        if visible_only is False:
            raise bad_request(NATURAL_SORT_MESSAGE)
        visible_only = True

    filter_column, filter_value = parse_filter(params.get("query"), columns)
    return RowQuery(
        limit=parse_limit(params),
        value_format=value_format,
        sort_by=sort_by,
        visible_only=bool(visible_only),
        use_column_names=bool(parse_bool(params, "useColumnNames")),
        filter_column=filter_column,
        filter_value=filter_value,
    )


def parse_filter(raw: str | None, columns: list[Column]) -> tuple[str | None, Any]:
    """Parse ``query=<columnId>:<json>`` or ``query="<column name>":<json>``.

    Returns the column id and the JSON value, or ``(None, None)`` without a query.
    """
    if raw is None:
        return None, None

    if raw.startswith('"'):
        end = raw.find('"', 1)
        if end < 0 or raw[end + 1 : end + 2] != ":":
            raise bad_request(f'Invalid query {raw!r}; expected "<column name>":<JSON value>')
        key, value_text = raw[1:end], raw[end + 2 :]
        column = next((c for c in columns if key in (c.name, c.id)), None)
    else:
        key, separator, value_text = raw.partition(":")
        if not separator:
            raise bad_request(f"Invalid query {raw!r}; expected <column id>:<JSON value>")
        column = next((c for c in columns if c.id == key), None)

    if column is None:
        raise bad_request(f"Invalid query {raw!r}: no column {key!r} in this table")
    try:
        return column.id, json.loads(value_text)
    except json.JSONDecodeError:
        raise bad_request(f"Invalid query {raw!r}: the value is not JSON (quote strings)") from None


def select_rows(store: Store, doc_id: str, table_id: str, query: RowQuery) -> list[StoredRow]:
    """Return the rows a listing covers, filtered and in the requested order."""
    rows = store.visible_rows(doc_id, table_id)
    if query.visible_only:
        rows = [row for row in rows if not row.hidden]
    if query.since_version is not None:
        since = query.since_version
        rows = [row for row in rows if row.version > since]
    if query.filter_column is not None:
        column_id, expected = query.filter_column, query.filter_value
        rows = [row for row in rows if cell_matches(row.values.get(column_id), expected)]

    if query.sort_by == "createdAt":
        rows.sort(key=lambda row: row.created_at)
    elif query.sort_by == "updatedAt":
        rows.sort(key=lambda row: row.updated_at)
    return rows


def cell_matches(stored: Any, expected: Any) -> bool:
    """Return whether a cell equals a ``query`` value, comparing simple values."""
    if is_empty(stored):
        return bool(expected == "")
    items = stored if isinstance(stored, list | tuple) else [stored]
    return any(not is_empty(item) and simple_value(item) == expected for item in items)


def shown_columns(columns: list[Column], visible_only: bool) -> list[Column]:
    """Return the columns a response includes; ``visibleOnly`` drops hidden ones."""
    return [column for column in columns if not (visible_only and column.hidden)]


def page_slice(items: list[T], offset: int, limit: int) -> tuple[list[T], int | None]:
    """Return one page and the offset of the next, or None when this page is the last."""
    page = items[offset : offset + limit]
    end = offset + len(page)
    return page, (end if end < len(items) else None)
