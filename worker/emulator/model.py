"""In-memory docs, tables, columns, rows and API tokens of the emulator.

Pure data and bookkeeping: no I/O and no locking. :class:`CodaEmulator` serialises access with
its own lock. Rows live in their base table; a view (``table_type="view"``) shows the rows of its
parent table that pass its filter, with the parent's columns.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.emulator.render import is_empty, simple_value

logger = logging.getLogger(__name__)

# The 24 values of ColumnFormatType in Coda's OpenAPI spec 1.5.0.
COLUMN_TYPES = frozenset(
    {
        "text",
        "person",
        "lookup",
        "number",
        "percent",
        "currency",
        "date",
        "dateTime",
        "time",
        "duration",
        "email",
        "link",
        "slider",
        "scale",
        "image",
        "imageReference",
        "attachments",
        "button",
        "checkbox",
        "select",
        "packObject",
        "reaction",
        "canvas",
        "other",
    }
)
TABLE_TYPES = ("table", "view")
ID_ALPHABET = string.ascii_letters + string.digits
ViewFilter = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Column:
    """A column of a base table. ``ref_table`` is the target table id of lookup/person columns."""

    id: str
    name: str
    type: str = "text"
    display: bool = False
    is_array: bool = False
    hidden: bool = False
    formula: str | None = None
    ref_table: str | None = None
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.id!r}: unknown type {self.type!r}")


@dataclass
class StoredRow:
    """A row with its cells stored in rich form. ``version`` orders changes for sync tokens."""

    id: str
    values: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    hidden: bool = False
    name: str | None = None


@dataclass
class Table:
    """A base table (``grid-…``) or a view (``table-…``) and, for base tables, its rows."""

    id: str
    name: str
    table_type: str
    columns: list[Column]
    page_id: str
    page_name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    parent_table_id: str | None = None
    view_filter: ViewFilter | None = None
    rows: dict[str, StoredRow] = field(default_factory=dict)
    # Row ids in the order the table shows them (``sortBy=natural`` and ``index``).
    order: list[str] = field(default_factory=list)


@dataclass
class Doc:
    """A doc and its tables. ``size_override`` replaces computed ``docSize`` numbers."""

    id: str
    name: str
    owner: str
    owner_name: str
    over_api_size_limit: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    tables: dict[str, Table] = field(default_factory=dict)
    size_override: dict[str, int] = field(default_factory=dict)
    # True while the API's snapshot of the doc lags the editor, so that requests with
    # ``X-Coda-Doc-Version: latest`` get 400.
    stale: bool = False


@dataclass
class ApiToken:
    """An API token. ``scope`` is None, ``("doc", docId)`` or ``("table", docId, tableId)``."""

    user: str
    user_name: str
    token_name: str
    scope: tuple[str, ...] | None
    revoked: bool = False


def parse_timestamp(value: dt.datetime | str) -> dt.datetime:
    """Return an aware UTC datetime truncated to milliseconds, from a datetime or ISO string."""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def utc_now() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.UTC)


class Store:
    """All docs and tokens of one emulator, with lookups, a clock, id and change-number sources."""

    def __init__(self, clock: Callable[[], dt.datetime] = utc_now, seed: int = 0) -> None:
        self.docs: dict[str, Doc] = {}
        self.tokens: dict[str, ApiToken] = {}
        self._clock = clock
        self._random = random.Random(seed)
        self._version = 0
        self._last_stamp = dt.datetime.min.replace(tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        """Return the clock's time, made strictly later than the previous call by 1 ms if needed.

        Distinct timestamps keep ``sortBy=createdAt`` and ``updatedAt`` orders stable.
        """
        moment = parse_timestamp(self._clock())
        if moment <= self._last_stamp:
            moment = self._last_stamp + dt.timedelta(milliseconds=1)
        self._last_stamp = moment
        return moment

    def next_version(self) -> int:
        """Return a new change number; sync tokens report rows changed after a given number."""
        self._version += 1
        return self._version

    @property
    def version(self) -> int:
        """The latest change number handed out."""
        return self._version

    def new_id(self, prefix: str) -> str:
        """Return a new id such as ``i-Ab3dE6gH9j`` (10 random letters and digits)."""
        return prefix + "".join(self._random.choice(ID_ALPHABET) for _ in range(10))

    def doc(self, doc_id: str) -> Doc:
        """Return a doc, raising KeyError with the id when it does not exist."""
        try:
            return self.docs[doc_id]
        except KeyError:
            raise KeyError(f"doc {doc_id!r} does not exist") from None

    def table(self, doc_id: str, table_id: str) -> Table:
        """Return a table or view by id, raising KeyError when it does not exist."""
        tables = self.doc(doc_id).tables
        try:
            return tables[table_id]
        except KeyError:
            raise KeyError(f"table {table_id!r} does not exist in doc {doc_id!r}") from None

    def base_table(self, doc_id: str, table_id: str) -> Table:
        """Return the table itself, or the parent table when ``table_id`` is a view."""
        table = self.table(doc_id, table_id)
        if table.parent_table_id is None:
            return table
        return self.table(doc_id, table.parent_table_id)

    def stored_row(self, doc_id: str, table_id: str, row_id: str) -> StoredRow:
        """Return a row of a base table, raising KeyError when it does not exist."""
        table = self.base_table(doc_id, table_id)
        try:
            return table.rows[row_id]
        except KeyError:
            raise KeyError(f"row {row_id!r} does not exist in table {table.id!r}") from None

    def find_table(self, doc: Doc, id_or_name: str) -> Table | None:
        """Look a table up by id first and then by name, as ``tableIdOrName`` allows."""
        if id_or_name in doc.tables:
            return doc.tables[id_or_name]
        return next((t for t in doc.tables.values() if t.name == id_or_name), None)

    def columns(self, doc_id: str, table_id: str) -> list[Column]:
        """Return the columns of a table; a view shows the columns of its parent table."""
        return self.base_table(doc_id, table_id).columns

    def visible_rows(self, doc_id: str, table_id: str) -> list[StoredRow]:
        """Return the rows a table or view contains, in natural order; hidden rows included."""
        table = self.table(doc_id, table_id)
        base = self.base_table(doc_id, table_id)
        rows = [base.rows[row_id] for row_id in base.order]
        if table.view_filter is not None:
            rows = [row for row in rows if table.view_filter(row.values)]
        return rows

    def row_indexes(self, doc_id: str, table_id: str) -> dict[str, int]:
        """Map each row id of the base table to its 1-based position in natural order."""
        base = self.base_table(doc_id, table_id)
        return {row_id: position for position, row_id in enumerate(base.order, start=1)}

    def row_name(self, doc_id: str, table_id: str, row: StoredRow) -> str:
        """Return a row's display name: the explicit name, else the display column's text."""
        if row.name is not None:
            return row.name
        column = display_column(self.columns(doc_id, table_id))
        if column is None or is_empty(row.values.get(column.id)):
            return ""
        cell = row.values[column.id]
        items = cell if isinstance(cell, list | tuple) else [cell]
        return ", ".join(str(simple_value(item)) for item in items if not is_empty(item))

    def check_values(self, table: Table, values: Mapping[str, Any]) -> None:
        """Raise ValueError when ``values`` names a column the table does not have."""
        known = {column.id for column in table.columns}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"table {table.id!r} has no columns {unknown}; known: {sorted(known)}")

    def reorder(self, table: Table, row_ids: Iterable[str]) -> None:
        """Set a table's natural order, raising ValueError unless ``row_ids`` lists every row once."""
        new_order = list(row_ids)
        if sorted(new_order) != sorted(table.order):
            raise ValueError(
                f"reorder of table {table.id!r} must list each of its {len(table.order)} rows once"
            )
        table.order = new_order


def display_column(columns: list[Column]) -> Column | None:
    """Return the display column: the one flagged ``display``, else the first column."""
    flagged = [column for column in columns if column.display]
    if flagged:
        return flagged[0]
    return columns[0] if columns else None
