"""The HTTP side of the emulator: request pipeline, request log and the threaded server.

Every request goes through the same steps: injected faults, base path and route, method,
bearer token (401), per-user rate limit (429), token scope (403, or 401 in legacy mode), query
parameter names (400) and then the operation in :mod:`worker.emulator.endpoints`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from worker.emulator.access import bearer_token, scope_allows
from worker.emulator.endpoints import (
    HANDLERS,
    INVALID_PAGE_TOKEN,
    ApiRequest,
    EndpointContext,
)
from worker.emulator.faults import Fault
from worker.emulator.listing import ApiError, check_parameters
from worker.emulator.model import ApiToken
from worker.emulator.payloads import error_body
from worker.emulator.reply import JSON_CONTENT_TYPE, Reply, error_reply
from worker.emulator.routes import Route, is_api_path, parse_route

if TYPE_CHECKING:
    from worker.emulator.emulator import CodaEmulator

logger = logging.getLogger(__name__)

# Seconds an idle keep-alive connection stays open before its handler thread gives up.
IDLE_CONNECTION_TIMEOUT = 30.0


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received.

    ``headers`` has lower-case names and never the ``Authorization`` header; ``user`` is the
    login of the bearer token when the token is registered. ``status`` is 0 when a fault dropped
    the connection. ``at`` is ``time.monotonic()`` when the request arrived.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    user: str | None
    status: int
    at: float


@dataclass(frozen=True)
class IncomingRequest:
    """A parsed HTTP request line and headers (names lower-cased)."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    arrived_at: float

    @property
    def params(self) -> dict[str, str]:
        """The query parameters; the last value wins when a name repeats."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


class Dispatcher:
    """The request pipeline, which builds replies from the emulator's state under its lock."""

    def __init__(self, emulator: CodaEmulator) -> None:
        self._emulator = emulator

    def handle(self, request: IncomingRequest) -> tuple[Reply, str | None]:
        """Build the reply to one request; return it with the user of its token, if registered."""
        emu = self._emulator
        route = parse_route(request.path)
        params = request.params
        with emu.lock:
            user = self._user_of(request)
            operation = route.operation if route else None
            fault = emu.fault_queue.take(operation, request.path, "pageToken" in params)

        if fault is not None and fault.delay and emu.stopping.wait(fault.delay):
            return Reply(0, drop_connection=True), user
        early = fault_reply(fault) if fault is not None else None
        if early is not None:
            return early, user

        with emu.lock:
            reply = self._respond(request, route, params, fault.action if fault else None)
        return reply, user

    def _user_of(self, request: IncomingRequest) -> str | None:
        secret = bearer_token(request.headers.get("authorization"))
        token = self._emulator.store.tokens.get(secret) if secret else None
        return token.user if token else None

    def _respond(
        self, request: IncomingRequest, route: Route | None, params: dict[str, str], action: str | None
    ) -> Reply:
        if not is_api_path(request.path):
            return Reply(404, "Not Found", content_type="text/plain; charset=utf-8")
        if route is None:
            return error_reply(404, f"No API endpoint matches {request.path}.")
        if request.method != "GET":
            return error_reply(405, f"The emulator serves only GET, not {request.method}.")

        token, rejection = self._check_access(request, route)
        if rejection is not None:
            return rejection
        assert token is not None

        try:
            if "pageToken" not in params:
                check_parameters(route.operation, params)
            api_request = self._api_request(request, route, params, token, action)
            return HANDLERS[route.operation](self._context(), api_request)
        except ApiError as error:
            return error_reply(error.status, error.message)

    def _check_access(self, request: IncomingRequest, route: Route) -> tuple[ApiToken | None, Reply | None]:
        """Authenticate, count the request against its user's rate limit and check scope."""
        emu = self._emulator
        secret = bearer_token(request.headers.get("authorization"))
        token = emu.store.tokens.get(secret) if secret else None
        if token is None or token.revoked:
            return None, error_reply(401)

        if not emu.limiter.allow(token.user, emu.rate_limit, request.arrived_at):
            retry_after = emu.rate_limit_retry_after
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            logger.info("rate limit reached for user %s on %s", token.user, request.path)
            return None, error_reply(429, headers=headers)

        if not scope_allows(token, route):
            status = 401 if emu.legacy_401 else 403
            return None, error_reply(status)
        return token, None

    def _api_request(
        self,
        request: IncomingRequest,
        route: Route,
        params: dict[str, str],
        token: ApiToken,
        action: str | None,
    ) -> ApiRequest:
        base_href = self._emulator.origin + request.path
        href = f"{base_href}?{request.query_string}" if request.query_string else base_href
        return ApiRequest(
            route=route,
            params=params,
            href=href,
            base_href=base_href,
            token=token,
            doc_version=request.headers.get("x-coda-doc-version"),
            action=action,
        )

    def _context(self) -> EndpointContext:
        emu = self._emulator
        return EndpointContext(
            api=emu.base_url,
            store=emu.store,
            page_tokens=emu.page_tokens,
            sync_tokens=emu.sync_tokens,
            row_page_cap=emu.row_page_cap,
            column_page_cap=emu.column_page_cap,
            oversize_status=emu.oversize_status,
        )


def fault_reply(fault: Fault) -> Reply | None:
    """Build the reply a fault sends, or None when the request gets its normal response."""
    if fault.action == "drop_connection":
        return Reply(0, drop_connection=True)
    if fault.status is None and fault.action == "reject_page_token":
        return error_reply(400, INVALID_PAGE_TOKEN, headers=dict(fault.headers))
    if fault.status is None:
        return None

    body: Any = fault.body if fault.body is not None else error_body(fault.status)
    content_type = fault.content_type or JSON_CONTENT_TYPE
    return Reply(fault.status, body, headers=dict(fault.headers), content_type=content_type)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "coda-emulator"
    sys_version = ""
    timeout = IDLE_CONNECTION_TIMEOUT
    # Headers and body go out in separate writes. With Nagle's algorithm on, the body would wait
    # for the client's delayed ACK, about 40 ms on every keep-alive request.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        arrived_at = time.monotonic()
        path, _, query_string = self.path.partition("?")
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._discard_body(headers)
        request = IncomingRequest(self.command, path, query_string, headers, arrived_at)

        reply, user = self.server.dispatcher.handle(request)

        # Record before responding, so a client that reads the log right after its response
        # finds its request there.
        self.server.emulator.record(request, user, reply.status)
        if reply.drop_connection:
            self.close_connection = True
            return
        self._write(reply)

    # Write methods get a 405 reply. HEAD is left to the base class, which returns 501.
    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _discard_body(self, headers: Mapping[str, str]) -> None:
        raw_length = headers.get("content-length", "0")
        try:
            length = int(raw_length)
        except ValueError:
            # The rest of the stream cannot be framed, so this connection ends after the reply.
            logger.debug("invalid Content-Length %r on %s", raw_length, self.path)
            self.close_connection = True
            return
        if length > 0:
            self.rfile.read(length)

    def _write(self, reply: Reply) -> None:
        body = reply.encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError) as error:
            # The client gave up first, e.g. after its timeout during an injected delay.
            self.close_connection = True
            logger.debug("client closed the connection before the reply to %s: %s", self.path, error)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that can close its open keep-alive connections on stop."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: CodaEmulator) -> None:
        super().__init__(address, _RequestHandler)
        self.emulator = emulator
        self.dispatcher = Dispatcher(emulator)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open client connection, so pooled clients cannot reach a stopped server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
