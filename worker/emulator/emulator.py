"""The public face of the emulator: lifecycle, settings, content, tokens, faults and the log."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from worker.emulator.access import RateLimiter
from worker.emulator.content import ContentMixin
from worker.emulator.faults import Fault, FaultQueue
from worker.emulator.listing import Cursor, TokenStore
from worker.emulator.model import ApiToken, Store, utc_now
from worker.emulator.routes import API_PREFIX
from worker.emulator.server import EmulatorHTTPServer, IncomingRequest, RequestRecord

logger = logging.getLogger(__name__)

DEFAULT_ROW_PAGE_CAP = 200
DEFAULT_COLUMN_PAGE_CAP = 100
# Seconds between checks for a stop request in the accept loop when no connection wakes it.
SHUTDOWN_POLL_INTERVAL = 0.1


class CodaEmulator(ContentMixin):
    """An in-memory Coda API v1 server for tests and demos, served over HTTP on loopback.

    Settings that tests may change at any time:
        legacy_401: respond 401 instead of 403 to out-of-scope requests (Coda's 2022 behaviour).
        row_page_cap: the undisclosed maximum ``limit`` of ``listRows`` (silently applied).
        column_page_cap: the maximum ``limit`` of ``listColumns`` (100 in the spec).
        rate_limit: None, or ``(max_requests, window_seconds)`` per user across all of the
            user's tokens; requests beyond it get 429.
        rate_limit_retry_after: None sends 429 without ``Retry-After``; a string sends it.
        oversize_status: the status ``listRows`` and ``getRow`` return for a doc over the API
            size limit. No source records the real one, so tests can pick 400, 403 or 503.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the emulator binds only loopback addresses, not {host!r}")
        self.host = host
        self.port = port
        self.store = Store(clock)
        self.lock = threading.RLock()
        self.fault_queue = FaultQueue()
        self.limiter = RateLimiter()
        self.page_tokens: TokenStore[Cursor] = TokenStore()
        self.sync_tokens: TokenStore[Cursor] = TokenStore()
        self.stopping = threading.Event()

        self.legacy_401 = False
        self.row_page_cap = DEFAULT_ROW_PAGE_CAP
        self.column_page_cap = DEFAULT_COLUMN_PAGE_CAP
        self.rate_limit: tuple[int, float] | None = None
        self.rate_limit_retry_after: str | None = None
        self.oversize_status = 400

        self._requests: list[RequestRecord] = []
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> CodaEmulator:
        """Bind the port (0 picks a free one) and serve requests in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self.stopping.clear()
        self._server = EmulatorHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_INTERVAL},
            name=f"coda-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("coda emulator serving %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close open connections; requests still waiting are dropped."""
        if self._server is None:
            return
        self.stopping.set()
        stopper = threading.Thread(target=self._server.shutdown, name=f"coda-emulator-stop-{self.port}")
        stopper.start()
        self._wake_accept_loop()
        stopper.join()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        logger.info("coda emulator on port %d stopped", self.port)

    def _wake_accept_loop(self) -> None:
        # The accept loop checks for shutdown only between waits of SHUTDOWN_POLL_INTERVAL; a
        # connection to its own port ends the wait at once, which keeps per-test stops short.
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
        except OSError as error:
            logger.debug("could not wake the accept loop on port %d: %s", self.port, error)

    def __enter__(self) -> CodaEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``; the port is the bound one once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API root clients use, ``http://127.0.0.1:PORT/apis/v1``."""
        return self.origin + API_PREFIX

    # -- tokens, faults, paging and the request log ---------------------------------------

    def add_token(
        self,
        token: str,
        *,
        user: str,
        scope: tuple[str, ...] | None = None,
        name: str | None = None,
        user_name: str | None = None,
    ) -> str:
        """Register a bearer token for ``user`` (an email address) and return it.

        ``scope`` is None (unrestricted), ``("doc", docId)`` or ``("table", docId, tableId)``.
        """
        if scope is not None and not _valid_scope(scope):
            raise ValueError(
                f"invalid token scope {scope!r}; use ('doc', docId) or ('table', docId, tableId)"
            )
        display_name = user_name or user.split("@", 1)[0].replace(".", " ").title()
        with self.lock:
            self.store.tokens[token] = ApiToken(
                user, display_name, name or f"API token of {display_name}", scope
            )
        return token

    def revoke_token(self, token: str) -> None:
        """Revoke a token, so that every endpoint, ``/whoami`` included, returns 401 for it."""
        with self.lock:
            if token not in self.store.tokens:
                raise KeyError("no such token is registered")
            self.store.tokens[token].revoked = True

    def inject(self, fault: Fault) -> None:
        """Queue a fault; faults are matched in the order they were injected."""
        with self.lock:
            self.fault_queue.add(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.fault_queue.clear()

    @property
    def faults(self) -> list[Fault]:
        """The injected faults that still have uses left."""
        with self.lock:
            return self.fault_queue.pending()

    def expire_page_tokens(self) -> None:
        """Invalidate every page token minted so far. A request that uses one then gets 400."""
        with self.lock:
            self.page_tokens.clear()

    def expire_sync_tokens(self) -> None:
        """Invalidate every sync token minted so far. A request that uses one then gets 400."""
        with self.lock:
            self.sync_tokens.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self.lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    def record(self, request: IncomingRequest, user: str | None, status: int) -> None:
        """Append a request to the log, leaving the Authorization header out."""
        headers = {key: value for key, value in request.headers.items() if key != "authorization"}
        entry = RequestRecord(
            request.method, request.path, request.params, headers, user, status, request.arrived_at
        )
        with self.lock:
            self._requests.append(entry)
        logger.debug("%s %s -> %d (user %s)", request.method, request.path, status, user)


def _valid_scope(scope: tuple[str, ...]) -> bool:
    return (len(scope) == 2 and scope[0] == "doc") or (len(scope) == 3 and scope[0] == "table")
