"""Mapping of URL paths under ``/apis/v1`` to the emulated operations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import unquote

logger = logging.getLogger(__name__)

API_PREFIX = "/apis/v1"

LIST_ROWS_PARAMETERS = frozenset(
    {"query", "sortBy", "useColumnNames", "valueFormat", "visibleOnly", "limit", "pageToken", "syncToken"}
)

# Query parameters each operation accepts, as declared in Coda's OpenAPI spec 1.5.0. Any other
# parameter gets 400, so that a client sending a misspelt parameter finds out in tests.
ACCEPTED_PARAMETERS: dict[str, frozenset[str]] = {
    "listDocs": frozenset(
        {
            "isOwner",
            "isPublished",
            "query",
            "sourceDoc",
            "isStarred",
            "inGallery",
            "workspaceId",
            "folderId",
            "limit",
            "pageToken",
        }
    ),
    "getDoc": frozenset(),
    "listTables": frozenset({"limit", "pageToken", "sortBy", "tableTypes"}),
    "getTable": frozenset({"useUpdatedTableLayouts"}),
    "listColumns": frozenset({"limit", "pageToken", "visibleOnly"}),
    "getColumn": frozenset(),
    "listRows": LIST_ROWS_PARAMETERS,
    "getRow": frozenset({"useColumnNames", "valueFormat"}),
    "whoami": frozenset(),
}

# Operation ids by the shape of the decoded path after /apis/v1; "*" stands for any one segment.
_SHAPES = {
    ("whoami",): "whoami",
    ("docs",): "listDocs",
    ("docs", "*"): "getDoc",
    ("docs", "*", "tables"): "listTables",
    ("docs", "*", "tables", "*"): "getTable",
    ("docs", "*", "tables", "*", "columns"): "listColumns",
    ("docs", "*", "tables", "*", "columns", "*"): "getColumn",
    ("docs", "*", "tables", "*", "rows"): "listRows",
    ("docs", "*", "tables", "*", "rows", "*"): "getRow",
}


@dataclass(frozen=True)
class Route:
    """An API request path resolved to an operation.

    ``segments`` are the URL-decoded path segments after ``/apis/v1``. ``table`` and ``item``
    are the table and the column or row as the client sent them: an id or a name.
    """

    operation: str
    segments: tuple[str, ...]
    doc_id: str | None = None
    table: str | None = None
    item: str | None = None


def is_api_path(path: str) -> bool:
    """Return whether ``path`` lies under the served base path ``/apis/v1``."""
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def parse_route(path: str) -> Route | None:
    """Resolve a raw (percent-encoded) path under ``/apis/v1``; None for an unknown path."""
    if not is_api_path(path):
        return None

    # Split before decoding, so that a table name containing an encoded "/" stays one segment.
    raw = path[len(API_PREFIX) :].strip("/")
    segments = tuple(unquote(part) for part in raw.split("/")) if raw else ()
    shape = tuple(part if position % 2 == 0 else "*" for position, part in enumerate(segments))
    operation = _SHAPES.get(shape)
    if operation is None:
        return None

    padded = [*segments, None, None, None, None, None, None]
    return Route(operation, segments, doc_id=padded[1], table=padded[3], item=padded[5])
