"""The Coda API client: the only module that talks HTTP.

It calls only endpoints inside one job's table (`getTable`, `listColumns`, `listRows`) plus
`/whoami`, so that a token restricted to one doc or one table works. Every foreign error is
mapped to the `worker.errors` tree in `_send`, the one seam between httpx and the worker.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from worker import __version__
from worker.errors import (
    BadResponse,
    DocTooLarge,
    RateLimited,
    RunInterrupted,
    ServerError,
    SourceBadRequest,
    SourceError,
    SourceNotFound,
    SourceRejected,
    SourceTimeout,
    SourceUnavailable,
)
from worker.pacing import Pacer
from worker.records import (
    ColumnInfo,
    Identity,
    RequestStats,
    RowRecord,
    TableInfo,
    parse_column,
    parse_row,
    require_str,
)
from worker.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after

logger = logging.getLogger(__name__)

USER_AGENT = f"coda-sync/{__version__} (+PostgreSQL table sync) httpx/{httpx.__version__}"
ROW_PAGE_LIMIT = 500  # Coda silently caps this; only `nextPageToken` decides when to stop
COLUMN_PAGE_LIMIT = 100  # the maximum that listColumns declares
MAX_EMPTY_PAGES = 20  # consecutive empty pages that still carry a token before we give up
ERROR_BODY_PREVIEW = 300  # characters of an unexpected body kept in a message
REDACTED = "[redacted]"
MAX_BODY_BYTES = 256 * 2**20  # one page of rows is far smaller; anything larger is not Coda's


class PageTokenRejected(SourceBadRequest):
    """Coda returned 400 for a request that carried a page token."""


@dataclass(kw_only=True)
class ClientOptions:
    """Timeouts, retries and pacing of one client."""

    timeout: float = 30.0  # seconds to read one response
    connect_timeout: float = 10.0  # seconds to connect
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    deadline: float | None = None  # monotonic time after which the run stops
    cancel: threading.Event | None = None
    pacer: Pacer | None = None
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] | None = None  # replaces the backoff wait, for tests


class CodaClient:
    """Read one job's table through Coda's REST API v1."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        options: ClientOptions | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = options or ClientOptions()
        self.stats = RequestStats()
        # Scheme, host and port only: a proxy URL may carry credentials.
        parsed = httpx.URL(base_url)
        self._origin = f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(self.options.timeout, connect=self.options.connect_timeout),
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> CodaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get_table(self, doc_id: str, table_id: str) -> TableInfo:
        """Fetch the table's metadata (`getTable`); *table_id* may also be the table's name."""
        data = self._get_json("getTable", _table_path(doc_id, table_id), {})
        parent = data.get("parentTable")
        row_count = data.get("rowCount")
        return TableInfo(
            id=require_str(data, "id", "getTable"),
            name=str(data.get("name", "")),
            table_type=str(data.get("tableType", "table")),
            row_count=row_count if isinstance(row_count, int) else None,
            parent_table_id=parent.get("id") if isinstance(parent, dict) else None,
        )

    def list_columns(self, doc_id: str, table_id: str) -> list[ColumnInfo]:
        """Fetch every column of the table, following `nextPageToken` to the end."""
        path = _table_path(doc_id, table_id) + "/columns"
        columns: list[ColumnInfo] = []
        for page in self._pages("listColumns", path, {"limit": COLUMN_PAGE_LIMIT}):
            for item in page:
                columns.append(parse_column(item, len(columns)))
        return columns

    def iter_row_pages(
        self, doc_id: str, table_id: str, *, limit: int = ROW_PAGE_LIMIT
    ) -> Iterator[list[RowRecord]]:
        """Yield every row of the table page by page, hidden rows and columns included.

        Each call starts from the first page: a page token never outlives one read.
        """
        path = _table_path(doc_id, table_id) + "/rows"
        params = {"valueFormat": "rich", "limit": limit}
        for page in self._pages("listRows", path, params):
            yield [parse_row(item) for item in page]

    def whoami(self, *, retry: bool = True) -> Identity:
        """Fetch the identity behind the token; 401 here means the token itself is bad.

        With *retry* false a single attempt is made, for callers that can do without the response.
        """
        data = self._get_json("whoami", "whoami", {}, retry=retry)
        return Identity(
            login_id=str(data.get("loginId", "")),
            name=str(data.get("name", "")),
            scoped=bool(data.get("scoped", False)),
            token_name=str(data.get("tokenName", "")),
        )

    def _pages(self, operation: str, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        seen_tokens: set[str] = set()
        empty_pages = 0
        page_token: str | None = None
        while True:
            # With a page token Coda ignores every other parameter, so send it alone.
            query = {"pageToken": page_token} if page_token is not None else params
            data = self._get_json(operation, path, query, page_token=page_token)
            items = data.get("items")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise BadResponse(f"{operation} response has no list of objects under 'items'")
            self.stats.pages += 1
            yield items

            next_token = data.get("nextPageToken")
            if next_token is None or next_token == "":
                return
            if not isinstance(next_token, str):
                raise BadResponse(f"{operation} response has a nextPageToken that is not a string")
            if next_token in seen_tokens or next_token == page_token:
                raise BadResponse(
                    f"{operation} returned a page token it had already returned; stopping "
                    "instead of reading the same pages forever"
                )
            empty_pages = empty_pages + 1 if not items else 0
            if empty_pages > MAX_EMPTY_PAGES:
                raise BadResponse(
                    f"{operation} returned {empty_pages} empty pages in a row, each with a next "
                    "page token; stopping instead of paging forever"
                )
            seen_tokens.add(next_token)
            page_token = next_token

    def _get_json(
        self,
        operation: str,
        path: str,
        params: dict[str, Any],
        *,
        page_token: str | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        response = self._send(operation, path, params, page_token=page_token, retry=retry)
        try:
            data = decode_json(response.content)
        except (ValueError, RecursionError):
            # ValueError covers malformed JSON, bad UTF-8 and integers past Python's digit limit.
            raise BadResponse(
                f"{operation} returned {response.status_code} with a body that is not valid "
                f"JSON: {_preview(response)}",
                status=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise BadResponse(f"{operation} returned JSON that is not an object")
        return data

    def _send(
        self,
        operation: str,
        path: str,
        params: dict[str, Any],
        *,
        page_token: str | None,
        retry: bool = True,
    ) -> httpx.Response:
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            self._before_request(operation)
            failure, retry_after = self._attempt(operation, path, params, page_token)
            if isinstance(failure, httpx.Response):
                return failure
            if not retry:
                raise failure

            delay = self.options.retry.delay(
                attempt=attempt, waited=waited, retry_after=retry_after, rng=self.options.rng
            )
            if delay is None:
                raise failure
            self._sleep_before_retry(operation, delay, failure)
            waited += delay
            self.stats.retries += 1

    def _attempt(
        self, operation: str, path: str, params: dict[str, Any], page_token: str | None
    ) -> tuple[httpx.Response | SourceError, float | None]:
        """Send once; return the good response, or the error to retry (with Retry-After)."""
        self.stats.requests += 1
        try:
            response = self._get_within_deadline(operation, path, params)
        except httpx.TimeoutException as exc:
            return SourceTimeout(f"{operation} timed out ({type(exc).__name__}) at {self._origin}"), None
        except httpx.TransportError as exc:
            return SourceUnavailable(
                f"{operation} failed: network error {type(exc).__name__} reaching {self._origin}; "
                "check CODA_API_BASE_URL and the network path to it"
            ), None

        status = response.status_code
        if status >= 400 and _says_doc_too_large(response):
            raise DocTooLarge(
                f"{operation} returned {status}: {_error_message(response)}; the doc is over "
                "Coda's API size limit (about 125 MB of data). The API stops serving it while "
                "the browser still opens it: shrink the doc (button and formula columns add "
                "size) or move this table to a smaller doc",
                status=status,
                operation=operation,
            )
        if status in RETRYABLE_STATUSES:
            return _retryable_error(operation, response), parse_retry_after(
                response.headers.get("Retry-After")
            )
        if status >= 400:
            raise _final_error(operation, response, page_token)
        if not response.content.strip().startswith(b"{"):
            # A proxy's HTML page or a cut-off body: worth another try.
            return BadResponse(
                f"{operation} returned {status} without a JSON object: {_preview(response)}",
                status=status,
            ), None
        return response, None

    def _get_within_deadline(self, operation: str, path: str, params: dict[str, Any]) -> httpx.Response:
        """GET *path*, checking the run's deadline and cancel event while the body arrives.

        httpx's read timeout applies to each read from the socket, so a server that trickles
        its response a byte at a time would otherwise hold the run far past its deadline.
        """
        with self._http.stream("GET", path, params=params, timeout=self._timeout()) as streamed:
            body = bytearray()
            for chunk in streamed.iter_raw():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise BadResponse(
                        f"{operation} response is larger than {MAX_BODY_BYTES // 2**20} MiB; stopping "
                        "instead of reading it into memory",
                        status=streamed.status_code,
                    )
                self._check_deadline(operation)
        response = httpx.Response(
            streamed.status_code, headers=streamed.headers, content=bytes(body), request=streamed.request
        )
        response.read()
        return response

    def _check_deadline(self, operation: str) -> None:
        options = self.options
        if options.cancel is not None and options.cancel.is_set():
            raise RunInterrupted("the worker is shutting down")
        if options.deadline is not None and options.clock() >= options.deadline:
            raise SourceTimeout(f"the run's deadline passed while {operation} was still responding")

    def _before_request(self, operation: str) -> None:
        options = self.options
        if options.cancel is not None and options.cancel.is_set():
            raise RunInterrupted("the worker is shutting down")
        if options.deadline is not None and options.clock() >= options.deadline:
            raise SourceTimeout(f"the run's deadline passed before {operation}")
        if options.pacer is not None:
            before = options.clock()
            options.pacer.acquire(cancel=options.cancel, deadline=options.deadline)
            self.stats.rate_limit_wait += options.clock() - before

    def _timeout(self) -> httpx.Timeout:
        read = self.options.timeout
        if self.options.deadline is not None:
            read = max(0.1, min(read, self.options.deadline - self.options.clock()))
        return httpx.Timeout(read, connect=min(self.options.connect_timeout, read))

    def _sleep_before_retry(self, operation: str, delay: float, failure: SourceError) -> None:
        options = self.options
        if options.deadline is not None and options.clock() + delay > options.deadline:
            raise SourceTimeout(
                f"the run's deadline would pass while waiting to retry {operation} after: {failure}"
            ) from failure
        logger.warning(
            "retrying %s in %.1f s after: %s",
            operation,
            delay,
            failure,
            extra={"event": "request_retry", "operation": operation, "delay": delay},
        )
        if options.sleep is not None:
            options.sleep(delay)
        elif options.cancel is not None:
            if options.cancel.wait(delay):
                raise RunInterrupted("the worker is shutting down")
        else:
            time.sleep(delay)


def _table_path(doc_id: str, table_id: str) -> str:
    return f"docs/{quote(doc_id, safe='')}/tables/{quote(table_id, safe='')}"


def _retryable_error(operation: str, response: httpx.Response) -> SourceError:
    status = response.status_code
    if status == 429:
        return RateLimited(
            f"{operation} was rate limited (429) by Coda after every retry; the limit is "
            "shared by all tokens of one Coda user",
            status=status,
        )
    return ServerError(
        f"{operation} failed with {status} from Coda after every retry: {_error_message(response)}",
        status=status,
    )


def _final_error(operation: str, response: httpx.Response, page_token: str | None) -> SourceError:
    status = response.status_code
    detail = _error_message(response)
    if status in (401, 403):
        if _json_error_body(response) is None:
            # Coda's own refusals carry a JSON error; an HTML 403 comes from a proxy or edge
            # and tells nothing about the token, so it must not disable the job.
            return BadResponse(
                f"{operation} returned {status} without Coda's JSON error body (a proxy or "
                f"firewall page?): {_preview(response)}",
                status=status,
            )
        return SourceRejected(f"{status} on {operation}: {detail}", status=status, operation=operation)
    if status == 404:
        return SourceNotFound(
            f"404 on {operation}: {detail}; the table does not exist or this token cannot see "
            "it (Coda answers 404 for both)",
            status=status,
            operation=operation,
        )
    if status == 400 and page_token is not None:
        return PageTokenRejected(f"{operation} rejected a page token: {detail}", status=status)
    if status == 400:
        return SourceBadRequest(f"400 on {operation}: {detail}", status=status)
    return BadResponse(f"{operation} returned unexpected status {status}: {detail}", status=status)


def _says_doc_too_large(response: httpx.Response) -> bool:
    # Coda documents no status or code for this; its message text is the only signal.
    # NOTE: GET /docs/{docId} reports docSize.overApiSizeLimit, but a table-scoped token cannot
    # read it, so the worker never requests it, and a bare 403 for an oversized doc disables the job.
    message = _error_message(response).lower()
    return "too large" in message or "size limit" in message or "too big" in message


def decode_json(content: bytes) -> Any:
    """Decode a JSON body; a number too large for a float is kept as its text.

    Python reads 1e400 as infinity, which PostgreSQL's jsonb cannot store.
    """
    return json.loads(content, parse_float=_parse_float)


def _parse_float(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


def _json_error_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = decode_json(response.content)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and ("statusCode" in data or "message" in data):
        return data
    return None


def _error_message(response: httpx.Response) -> str:
    body = _json_error_body(response)
    if body is not None:
        message = str(body.get("message") or body.get("statusMessage") or response.reason_phrase)
        # Our messages go on after Coda's, so its closing full stop would end a sentence early.
        return _redact(response, message.strip().rstrip("."))[:ERROR_BODY_PREVIEW]
    return _preview(response)


def _redact(response: httpx.Response, text: str) -> str:
    # A proxy or server that echoes the request puts the bearer token into the body, and the
    # body ends up in messages that are stored and printed.
    authorization = response.request.headers.get("Authorization", "")
    token = authorization.removeprefix("Bearer ").strip()
    if token and token in text:
        text = text.replace(token, REDACTED)
    return text


def _preview(response: httpx.Response) -> str:
    text = _redact(response, response.text).strip().replace("\n", " ")
    if not text:
        return "(empty body)"
    if len(text) > ERROR_BODY_PREVIEW:
        return repr(text[:ERROR_BODY_PREVIEW] + "…")
    return repr(text)
