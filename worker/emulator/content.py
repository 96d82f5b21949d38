"""Content operations of the emulator: docs, tables, views and rows, as tests set them up."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from worker.emulator.model import (
    TABLE_TYPES,
    Column,
    Doc,
    Store,
    StoredRow,
    Table,
    ViewFilter,
    parse_timestamp,
)
from worker.emulator.payloads import row_payload, table_payload

logger = logging.getLogger(__name__)

Timestamp = dt.datetime | str


class ContentMixin:
    """The methods of :class:`CodaEmulator` that add and change docs, tables and rows.

    Each takes the emulator's lock, so tests may change content while clients read.
    """

    lock: threading.RLock
    store: Store

    @property
    def base_url(self) -> str:
        """The API root that row and table links point to; the emulator class defines it."""
        raise NotImplementedError

    # -- docs and tables -------------------------------------------------------------------

    def add_doc(
        self,
        doc_id: str,
        *,
        name: str = "Untitled doc",
        over_api_size_limit: bool = False,
        owner: str = "owner@example.test",
        owner_name: str = "Example Owner",
        created_at: Timestamp | None = None,
        size_override: Mapping[str, int] | None = None,
    ) -> str:
        """Add a doc. ``size_override`` replaces computed ``docSize`` fields, e.g. totalRowCount."""
        with self.lock:
            if doc_id in self.store.docs:
                raise ValueError(f"doc {doc_id!r} already exists")
            created = parse_timestamp(created_at) if created_at else self.store.now()
            self.store.docs[doc_id] = Doc(
                doc_id,
                name,
                owner,
                owner_name,
                over_api_size_limit,
                created,
                created,
                size_override=dict(size_override or {}),
            )
        return doc_id

    def set_over_api_size_limit(self, doc_id: str, over_limit: bool = True) -> None:
        """Set the doc's ``docSize.overApiSizeLimit``. While true, listRows responds ``oversize_status``."""
        with self.lock:
            self.store.doc(doc_id).over_api_size_limit = over_limit

    def set_doc_stale(self, doc_id: str, stale: bool = True) -> None:
        """Mark the doc stale, so requests with ``X-Coda-Doc-Version: latest`` get 400 until unmarked."""
        with self.lock:
            self.store.doc(doc_id).stale = stale

    def add_table(
        self,
        doc_id: str,
        table_id: str,
        *,
        name: str,
        columns: Iterable[Column] = (),
        table_type: str | None = None,
        parent_table_id: str | None = None,
        view_filter: ViewFilter | None = None,
        page_id: str | None = None,
        page_name: str | None = None,
        created_at: Timestamp | None = None,
    ) -> str:
        """Add a base table with its columns, or a view of ``parent_table_id``.

        A view has no columns of its own. It lists the parent's rows for which
        ``view_filter(values)`` is true, or all of them without a filter. ``values`` maps column
        ids to stored cells.
        """
        table_type = table_type or ("view" if parent_table_id else "table")
        column_list = list(columns)
        with self.lock:
            doc = self.store.doc(doc_id)
            _check_new_table(doc, table_id, table_type, column_list, parent_table_id)
            created = parse_timestamp(created_at) if created_at else self.store.now()
            # A view sits on its parent table's page unless page_id or page_name is given.
            parent = doc.tables.get(parent_table_id or "")
            if parent is not None:
                page_id, page_name = page_id or parent.page_id, page_name or parent.page_name
            doc.tables[table_id] = Table(
                table_id,
                name,
                table_type,
                column_list,
                page_id=page_id or "canvas-" + table_id.split("-", 1)[-1],
                page_name=page_name or name,
                created_at=created,
                updated_at=created,
                parent_table_id=parent_table_id,
                view_filter=view_filter,
            )
        return table_id

    def rename_table(self, doc_id: str, table_id: str, name: str) -> None:
        """Change a table's name; its id and rows stay."""
        with self.lock:
            table = self.store.table(doc_id, table_id)
            table.name = name
            table.updated_at = self.store.now()

    # -- rows -------------------------------------------------------------------------------

    def add_row(
        self,
        doc_id: str,
        table_id: str,
        values: Mapping[str, Any],
        *,
        row_id: str | None = None,
        name: str | None = None,
        created_at: Timestamp | None = None,
        updated_at: Timestamp | None = None,
        hidden: bool = False,
    ) -> str:
        """Append a row to a base table and return its id.

        ``values`` maps column ids to cells in rich form (see :mod:`worker.emulator.values`).
        ``name`` defaults to the display column's plain text.
        """
        with self.lock:
            table = self._base_table_for_write(doc_id, table_id)
            self.store.check_values(table, values)
            row_id = row_id or self.store.new_id("i-")
            if row_id in table.rows:
                raise ValueError(f"row {row_id!r} already exists in table {table_id!r}")

            created = parse_timestamp(created_at) if created_at else self.store.now()
            updated = parse_timestamp(updated_at) if updated_at else created
            version = self.store.next_version()
            table.rows[row_id] = StoredRow(row_id, dict(values), created, updated, version, hidden, name)
            table.order.append(row_id)
            self._touch(doc_id, table, updated)
        return row_id

    def update_row(
        self,
        doc_id: str,
        table_id: str,
        row_id: str,
        values: Mapping[str, Any],
        *,
        updated_at: Timestamp | None = None,
    ) -> None:
        """Merge ``values`` into a row and move its ``updatedAt`` to now (or ``updated_at``)."""
        with self.lock:
            table = self._base_table_for_write(doc_id, table_id)
            self.store.check_values(table, values)
            row = self.store.stored_row(doc_id, table_id, row_id)
            row.values.update(values)
            row.updated_at = parse_timestamp(updated_at) if updated_at else self.store.now()
            row.version = self.store.next_version()
            self._touch(doc_id, table, row.updated_at)

    def delete_row(self, doc_id: str, table_id: str, row_id: str) -> None:
        """Remove a row. Sync tokens never report the deletion, as with the real API."""
        with self.lock:
            table = self._base_table_for_write(doc_id, table_id)
            self.store.stored_row(doc_id, table_id, row_id)
            del table.rows[row_id]
            table.order.remove(row_id)
            self._touch(doc_id, table, self.store.now())

    def reorder_rows(self, doc_id: str, table_id: str, row_ids: Iterable[str]) -> None:
        """Set the table's on-screen order, which renumbers ``index`` 1..n; content is unchanged."""
        with self.lock:
            self.store.reorder(self._base_table_for_write(doc_id, table_id), row_ids)

    def hide_row(self, doc_id: str, table_id: str, row_id: str, hidden: bool = True) -> None:
        """Hide a row (as a UI filter would), so ``visibleOnly`` and natural sort drop it."""
        with self.lock:
            self.store.stored_row(doc_id, table_id, row_id).hidden = hidden

    def rows(self, doc_id: str, table_id: str) -> list[dict[str, Any]]:
        """Return every row as ``listRows`` with ``valueFormat=rich`` returns it, in creation order.

        Hidden rows and columns are included; links use :attr:`base_url`.
        """
        with self.lock:
            table = self.store.table(doc_id, table_id)
            columns = self.store.columns(doc_id, table_id)
            indexes = self.store.row_indexes(doc_id, table_id)
            rows = sorted(self.store.visible_rows(doc_id, table_id), key=lambda row: row.created_at)
            return [
                row_payload(
                    self.base_url,
                    self.store,
                    doc_id,
                    table,
                    row,
                    index=indexes[row.id],
                    columns=columns,
                    value_format="rich",
                )
                for row in rows
            ]

    def table_payload(self, doc_id: str, table_id: str) -> dict[str, Any]:
        """Return the table or view as ``getTable`` returns it, e.g. to build a fault body."""
        with self.lock:
            return table_payload(self.base_url, self.store, doc_id, self.store.table(doc_id, table_id))

    def _base_table_for_write(self, doc_id: str, table_id: str) -> Table:
        table = self.store.table(doc_id, table_id)
        if table.parent_table_id is not None:
            raise ValueError(f"{table_id!r} is a view; change rows through {table.parent_table_id!r}")
        return table

    def _touch(self, doc_id: str, table: Table, moment: dt.datetime) -> None:
        doc = self.store.doc(doc_id)
        table.updated_at = max(table.updated_at, moment)
        doc.updated_at = max(doc.updated_at, moment)


def _check_new_table(
    doc: Doc, table_id: str, table_type: str, columns: list[Column], parent_table_id: str | None
) -> None:
    if table_id in doc.tables:
        raise ValueError(f"table {table_id!r} already exists in doc {doc.id!r}")
    if table_type not in TABLE_TYPES:
        raise ValueError(f"table_type must be one of {TABLE_TYPES}, not {table_type!r}")

    if table_type == "view":
        parent = doc.tables.get(parent_table_id or "")
        if parent is None or parent.parent_table_id is not None or columns:
            raise ValueError(f"view {table_id!r} needs an existing base parent_table_id and no columns")
        return

    if parent_table_id is not None:
        raise ValueError(f"base table {table_id!r} cannot have a parent_table_id")
    if not columns:
        raise ValueError(f"table {table_id!r} needs at least one column")
    ids = [column.id for column in columns]
    if len(set(ids)) != len(ids):
        raise ValueError(f"table {table_id!r} has duplicate column ids: {ids}")
    if sum(column.display for column in columns) > 1:
        raise ValueError(f"table {table_id!r} has more than one display column")
