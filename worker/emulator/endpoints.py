"""The emulated read operations of Coda's API v1, one function per operation id.

Each function runs under the emulator's lock after authentication, rate limiting and scope
checks, and returns a :class:`Reply` or raises :class:`ApiError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from worker.emulator.listing import (
    ApiError,
    Cursor,
    RowQuery,
    TokenStore,
    bad_request,
    page_slice,
    parse_bool,
    parse_limit,
    parse_row_query,
    select_rows,
    shown_columns,
)
from worker.emulator.model import ApiToken, Column, Doc, Store, StoredRow, Table
from worker.emulator.payloads import (
    column_payload,
    doc_payload,
    row_payload,
    table_payload,
    table_reference,
    user_payload,
)
from worker.emulator.render import VALUE_FORMATS
from worker.emulator.reply import Reply
from worker.emulator.routes import Route

logger = logging.getLogger(__name__)

OVERSIZE_MESSAGE = "Doc is too large for API access"
STALE_DOC_MESSAGE = "Doc is not yet up to date."
INVALID_PAGE_TOKEN = "Invalid page token"
# The message the real API sent for an unknown syncToken.
INVALID_SYNC_TOKEN = "Invalid pageToken."
TABLE_TYPES = ("table", "view")


@dataclass(frozen=True)
class EndpointContext:
    """The emulator state and settings an operation reads."""

    api: str
    store: Store
    page_tokens: TokenStore[Cursor]
    sync_tokens: TokenStore[Cursor]
    row_page_cap: int
    column_page_cap: int
    oversize_status: int


@dataclass(frozen=True)
class ApiRequest:
    """An authenticated request. ``href`` is the URL as requested, ``base_href`` without query."""

    route: Route
    params: Mapping[str, str]
    href: str
    base_href: str
    token: ApiToken
    doc_version: str | None = None
    action: str | None = None


def whoami(ctx: EndpointContext, request: ApiRequest) -> Reply:
    return Reply(200, user_payload(ctx.api, request.token))


def list_docs(ctx: EndpointContext, request: ApiRequest) -> Reply:
    # NOTE: the filters of listDocs (isOwner, query, workspaceId, ...) are accepted but not
    # applied; every doc is listed.
    cursor = start_or_resume(ctx, request, (), lambda: parse_limit(request.params))
    docs = list(ctx.store.docs.values())
    return page_reply(
        ctx,
        request,
        cursor,
        docs,
        cursor.query,
        lambda page: [doc_payload(ctx.api, ctx.store, doc) for doc in page],
    )


def get_doc(ctx: EndpointContext, request: ApiRequest) -> Reply:
    doc = resolve_doc(ctx, request)
    return Reply(200, doc_payload(ctx.api, ctx.store, doc))


def list_tables(ctx: EndpointContext, request: ApiRequest) -> Reply:
    doc = resolve_doc(ctx, request)
    cursor = start_or_resume(ctx, request, (doc.id,), lambda: _table_query(request.params))
    limit, table_types, sort_by = cursor.query

    tables = [table for table in doc.tables.values() if table.table_type in table_types]
    if sort_by == "name":
        tables.sort(key=lambda table: table.name)
    return page_reply(
        ctx,
        request,
        cursor,
        tables,
        limit,
        lambda page: [table_reference(ctx.api, doc.id, table) for table in page],
    )


def _table_query(params: Mapping[str, str]) -> tuple[int, tuple[str, ...], str | None]:
    sort_by = params.get("sortBy")
    if sort_by not in (None, "name"):
        raise bad_request(f"Invalid value for sortBy: {sort_by!r}; expected name")
    table_types = tuple(params.get("tableTypes", ",".join(TABLE_TYPES)).split(","))
    if not set(table_types) <= set(TABLE_TYPES):
        raise bad_request(f"Invalid value for tableTypes: {params['tableTypes']!r}; expected table, view")
    return parse_limit(params), table_types, sort_by


def get_table(ctx: EndpointContext, request: ApiRequest) -> Reply:
    parse_bool(request.params, "useUpdatedTableLayouts")
    doc, table = resolve_table(ctx, request)
    return Reply(200, table_payload(ctx.api, ctx.store, doc.id, table))


def list_columns(ctx: EndpointContext, request: ApiRequest) -> Reply:
    doc, table = resolve_table(ctx, request)
    cursor = start_or_resume(
        ctx,
        request,
        (doc.id, table.id),
        lambda: (parse_limit(request.params), bool(parse_bool(request.params, "visibleOnly"))),
    )
    limit, visible_only = cursor.query

    columns = shown_columns(ctx.store.columns(doc.id, table.id), visible_only)
    return page_reply(
        ctx,
        request,
        cursor,
        columns,
        min(limit, ctx.column_page_cap),
        lambda page: [column_payload(ctx.api, ctx.store, doc.id, table, column) for column in page],
    )


def get_column(ctx: EndpointContext, request: ApiRequest) -> Reply:
    doc, table = resolve_table(ctx, request)
    requested = request.route.item
    columns = ctx.store.columns(doc.id, table.id)
    column = next((c for c in columns if c.id == requested), None) or next(
        (c for c in columns if c.name == requested), None
    )
    if column is None:
        raise ApiError(404, f"Column {requested!r} was not found in table {table.id!r}.")

    payload = column_payload(ctx.api, ctx.store, doc.id, table, column)
    payload["parent"] = table_reference(ctx.api, doc.id, table)
    return Reply(200, payload)


def list_rows(ctx: EndpointContext, request: ApiRequest) -> Reply:
    doc, table = resolve_table(ctx, request)
    check_size(ctx, doc)
    columns = ctx.store.columns(doc.id, table.id)
    cursor = _rows_cursor(ctx, request, (doc.id, table.id), columns)
    query: RowQuery = cursor.query

    rows = select_rows(ctx.store, doc.id, table.id, query)
    returned_columns = shown_columns(columns, query.visible_only)
    indexes = ctx.store.row_indexes(doc.id, table.id)

    def render(page: list[StoredRow]) -> list[dict[str, Any]]:
        return [
            row_payload(
                ctx.api,
                ctx.store,
                doc.id,
                table,
                row,
                index=indexes[row.id],
                columns=returned_columns,
                value_format=query.value_format,
                use_column_names=query.use_column_names,
            )
            for row in page
        ]

    return page_reply(ctx, request, cursor, rows, min(query.limit, ctx.row_page_cap), render)


def _rows_cursor(
    ctx: EndpointContext, request: ApiRequest, resource: tuple[str, ...], columns: list[Column]
) -> Cursor:
    params = request.params
    if "pageToken" in params or "syncToken" not in params:
        return start_or_resume(ctx, request, resource, lambda: parse_row_query(params, columns))

    # NOTE: a sync token keeps the filters and valueFormat of the listing that produced it and
    # takes only `limit` from the new request. How the real API treats other parameters sent
    # with a syncToken is not documented.
    base = ctx.sync_tokens.get(params["syncToken"])
    if base is None or base.resource != resource:
        raise bad_request(INVALID_SYNC_TOKEN)
    query = replace(base.query, since_version=base.started_version, limit=parse_limit(params))
    return Cursor("listRows", resource, query, 0, ctx.store.version)


def get_row(ctx: EndpointContext, request: ApiRequest) -> Reply:
    doc, table = resolve_table(ctx, request)
    check_size(ctx, doc)
    value_format = request.params.get("valueFormat", "simple")
    if value_format not in VALUE_FORMATS:
        raise bad_request(f"Invalid value for valueFormat: {value_format!r}; expected one of {VALUE_FORMATS}")

    requested = request.route.item
    rows = ctx.store.visible_rows(doc.id, table.id)
    row = next((r for r in rows if r.id == requested), None) or next(
        (r for r in rows if ctx.store.row_name(doc.id, table.id, r) == requested), None
    )
    if row is None:
        raise ApiError(404, f"Row {requested!r} was not found in table {table.id!r}.")

    payload = row_payload(
        ctx.api,
        ctx.store,
        doc.id,
        table,
        row,
        index=ctx.store.row_indexes(doc.id, table.id)[row.id],
        columns=ctx.store.columns(doc.id, table.id),
        value_format=value_format,
        use_column_names=bool(parse_bool(request.params, "useColumnNames")),
    )
    payload["parent"] = table_reference(ctx.api, doc.id, table)
    return Reply(200, payload)


def resolve_doc(ctx: EndpointContext, request: ApiRequest) -> Doc:
    """Return the requested doc, or raise 404; also apply ``X-Coda-Doc-Version``."""
    doc_id = request.route.doc_id or ""
    doc = ctx.store.docs.get(doc_id)
    if doc is None:
        raise ApiError(404, f"Doc {doc_id!r} was not found.")

    # Coda returns 400 for any value other than "latest", and for "latest" while the API's
    # snapshot of the doc lags the editor.
    if request.doc_version is not None and (request.doc_version != "latest" or doc.stale):
        raise bad_request(STALE_DOC_MESSAGE)
    return doc


def resolve_table(ctx: EndpointContext, request: ApiRequest) -> tuple[Doc, Table]:
    """Return the requested doc and table (by id, else by name), or raise 404."""
    doc = resolve_doc(ctx, request)
    requested = request.route.table or ""
    table = ctx.store.find_table(doc, requested)
    if table is None:
        raise ApiError(404, f"Table {requested!r} was not found in doc {doc.id!r}.")
    return doc, table


def check_size(ctx: EndpointContext, doc: Doc) -> None:
    """Raise the configured error when the doc is over the API size limit."""
    if doc.over_api_size_limit:
        raise ApiError(ctx.oversize_status, OVERSIZE_MESSAGE)


def start_or_resume(
    ctx: EndpointContext,
    request: ApiRequest,
    resource: tuple[str, ...],
    parse: Callable[[], Any],
) -> Cursor:
    """Start a listing from the request's parameters, or resume the one its pageToken names.

    With a pageToken every other parameter is ignored, as the API documents.
    """
    operation = request.route.operation
    token = request.params.get("pageToken")
    if token is None:
        return Cursor(operation, resource, parse(), 0, ctx.store.version)

    cursor = ctx.page_tokens.get(token)
    if cursor is None or cursor.operation != operation or cursor.resource != resource:
        raise bad_request(INVALID_PAGE_TOKEN)
    return cursor


def page_reply(
    ctx: EndpointContext,
    request: ApiRequest,
    cursor: Cursor,
    items: list[Any],
    limit: int,
    render: Callable[[list[Any]], list[dict[str, Any]]],
) -> Reply:
    """Build the reply for one page of a listing, with the ``repeat_page_token`` and
    ``empty_page_with_token`` fault actions applied.

    ``nextPageToken`` and ``nextPageLink`` appear only when more items exist; the last page of
    ``listRows`` carries a ``nextSyncToken`` instead.
    """
    page: list[Any]
    next_offset: int | None
    if request.action == "empty_page_with_token":
        page, next_offset = [], cursor.offset
    else:
        page, next_offset = page_slice(items, cursor.offset, limit)
    body: dict[str, Any] = {"items": render(page), "href": request.href}

    next_token = None
    if request.action == "repeat_page_token":
        next_token = request.params["pageToken"]
    elif next_offset is not None:
        next_token = ctx.page_tokens.mint(replace(cursor, offset=next_offset))

    if next_token is not None:
        body["nextPageToken"] = next_token
        body["nextPageLink"] = f"{request.base_href}?pageToken={quote(next_token)}"
    elif cursor.operation == "listRows":
        body["nextSyncToken"] = ctx.sync_tokens.mint(replace(cursor, offset=0))
    return Reply(200, body)


HANDLERS: dict[str, Callable[[EndpointContext, ApiRequest], Reply]] = {
    "whoami": whoami,
    "listDocs": list_docs,
    "getDoc": get_doc,
    "listTables": list_tables,
    "getTable": get_table,
    "listColumns": list_columns,
    "getColumn": get_column,
    "listRows": list_rows,
    "getRow": get_row,
}
