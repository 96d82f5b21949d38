"""JSON bodies of the emulated endpoints, in the shapes of Coda's OpenAPI spec 1.5.0.

Every function is pure: it reads the store and returns a dict ready for ``json.dumps``. ``api``
is the API root the links point to, e.g. ``http://127.0.0.1:8765/apis/v1``.
"""

from __future__ import annotations

import datetime as dt
import logging
from http import HTTPStatus
from typing import Any

from worker.emulator.model import ApiToken, Column, Doc, Store, StoredRow, Table, display_column
from worker.emulator.render import render_cell
from worker.emulator.values import BROWSER_ORIGIN, row_browser_link, table_browser_link

logger = logging.getLogger(__name__)

WORKSPACE_ID = "ws-Emu1ator0"
FOLDER_ID = "fl-Emu1ator0"


def format_timestamp(moment: dt.datetime) -> str:
    """Format a datetime as Coda does: UTC, milliseconds and a ``Z`` suffix."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """Build Coda's error body: exactly ``statusCode``, ``statusMessage`` and ``message``."""
    phrase = HTTPStatus(status).phrase
    return {"statusCode": status, "statusMessage": phrase, "message": message or phrase}


def workspace_reference() -> dict[str, Any]:
    """Build the ``WorkspaceReference`` shared by every doc and user of the emulator."""
    return {
        "id": WORKSPACE_ID,
        "type": "workspace",
        "browserLink": f"{BROWSER_ORIGIN}/docs?workspaceId={WORKSPACE_ID}",
    }


def doc_payload(api: str, store: Store, doc: Doc) -> dict[str, Any]:
    """Build a ``Doc`` with its ``docSize``."""
    return {
        "id": doc.id,
        "type": "doc",
        "href": f"{api}/docs/{doc.id}",
        "browserLink": f"{BROWSER_ORIGIN}/d/_d{doc.id}",
        "name": doc.name,
        "owner": doc.owner,
        "ownerName": doc.owner_name,
        "createdAt": format_timestamp(doc.created_at),
        "updatedAt": format_timestamp(doc.updated_at),
        "workspaceId": WORKSPACE_ID,
        "folderId": FOLDER_ID,
        "workspace": workspace_reference(),
        "folder": {
            "id": FOLDER_ID,
            "type": "folder",
            "browserLink": f"{BROWSER_ORIGIN}/docs?folderId={FOLDER_ID}",
        },
        "docSize": doc_size(store, doc),
    }


def doc_size(store: Store, doc: Doc) -> dict[str, Any]:
    """Build ``DocSize`` from the doc's content, with any numbers set by the test on top."""
    base_tables = [t for t in doc.tables.values() if t.parent_table_id is None]
    size: dict[str, Any] = {
        "totalRowCount": sum(len(t.rows) for t in base_tables),
        "tableAndViewCount": len(doc.tables),
        "pageCount": len({t.page_id for t in doc.tables.values()}),
        "overApiSizeLimit": doc.over_api_size_limit,
    }
    size.update(doc.size_override)
    return size


def page_reference(api: str, doc_id: str, table: Table) -> dict[str, Any]:
    """Build the ``PageReference`` of the page a table sits on."""
    suffix = table.page_id.removeprefix("canvas-")
    return {
        "id": table.page_id,
        "type": "page",
        "href": f"{api}/docs/{doc_id}/pages/{table.page_id}",
        "browserLink": f"{BROWSER_ORIGIN}/d/_d{doc_id}/_su{suffix}",
        "name": table.page_name,
    }


def table_reference(api: str, doc_id: str, table: Table) -> dict[str, Any]:
    """Build a ``TableReference`` (the items of ``listTables``)."""
    return {
        "id": table.id,
        "type": "table",
        "tableType": table.table_type,
        "href": f"{api}/docs/{doc_id}/tables/{table.id}",
        "browserLink": table_browser_link(doc_id, table.id),
        "name": table.name,
        "parent": page_reference(api, doc_id, table),
    }


def table_payload(api: str, store: Store, doc_id: str, table: Table) -> dict[str, Any]:
    """Build the full ``Table`` that ``getTable`` returns."""
    payload = table_reference(api, doc_id, table)
    if table.parent_table_id is not None:
        parent = store.table(doc_id, table.parent_table_id)
        payload["parentTable"] = table_reference(api, doc_id, parent)

    columns = store.columns(doc_id, table.id)
    shown = display_column(columns)
    assert shown is not None, "tables are created with at least one column"
    payload.update(
        displayColumn={"id": shown.id, "type": "column", "href": column_href(api, doc_id, table, shown)},
        rowCount=len(store.visible_rows(doc_id, table.id)),
        sorts=[],
        layout="default",
        createdAt=format_timestamp(table.created_at),
        updatedAt=format_timestamp(table.updated_at),
    )
    return payload


def column_href(api: str, doc_id: str, table: Table, column: Column) -> str:
    """Return the API link of a column as seen through ``table``."""
    return f"{api}/docs/{doc_id}/tables/{table.id}/columns/{column.id}"


def column_payload(api: str, store: Store, doc_id: str, table: Table, column: Column) -> dict[str, Any]:
    """Build a ``Column`` (the items of ``listColumns``)."""
    payload: dict[str, Any] = {
        "id": column.id,
        "type": "column",
        "href": column_href(api, doc_id, table, column),
        "name": column.name,
    }
    if column is display_column(store.columns(doc_id, table.id)):
        payload["display"] = True
    if column.formula is not None:
        payload["calculated"] = True
        payload["formula"] = column.formula
    payload["format"] = column_format(api, store, doc_id, column)
    return payload


def column_format(api: str, store: Store, doc_id: str, column: Column) -> dict[str, Any]:
    """Build a column's ``format``, with the fields the spec requires for its type."""
    fmt: dict[str, Any] = {"type": column.type, "isArray": column.is_array}

    # NOTE: the spec requires `table` in person and lookup formats. A column created without
    # ref_table leaves it out, which a client that validates formats strictly may reject.
    if column.ref_table is not None:
        fmt["table"] = table_reference(api, doc_id, store.table(doc_id, column.ref_table))

    if column.type == "checkbox":
        fmt["displayType"] = "check"
    if column.type == "scale":
        fmt.update(maximum=5, icon="star")
    if column.type == "select" and column.options:
        fmt["options"] = [{"name": option} for option in column.options]
    return fmt


def row_payload(
    api: str,
    store: Store,
    doc_id: str,
    table: Table,
    row: StoredRow,
    *,
    index: int,
    columns: list[Column],
    value_format: str,
    use_column_names: bool = False,
) -> dict[str, Any]:
    """Build a ``Row``; ``columns`` are the ones whose values the request returns."""
    values = {
        (column.name if use_column_names else column.id): render_cell(
            row.values.get(column.id),
            column_type=column.type,
            is_array=column.is_array,
            value_format=value_format,
        )
        for column in columns
    }
    return {
        "id": row.id,
        "type": "row",
        "href": f"{api}/docs/{doc_id}/tables/{table.id}/rows/{row.id}",
        "name": store.row_name(doc_id, table.id, row),
        "index": index,
        "browserLink": row_browser_link(doc_id, table.id, row.id),
        "createdAt": format_timestamp(row.created_at),
        "updatedAt": format_timestamp(row.updated_at),
        "values": values,
    }


def user_payload(api: str, token: ApiToken) -> dict[str, Any]:
    """Build the ``User`` that ``/whoami`` returns for a token."""
    return {
        "name": token.user_name,
        "loginId": token.user,
        "type": "user",
        "scoped": token.scope is not None,
        "tokenName": token.token_name,
        "href": f"{api}/whoami",
        "workspace": workspace_reference(),
    }
