"""Helpers for tests that run `coda-sync run` processes against the emulator and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from worker.emulator import CodaEmulator, Column

DOC = "FakeDoc01"
TOKEN = "tok-worker-5e1c2b9a7d"
TABLES = ("grid-T1", "grid-T2")
EVERY_TWO_SECONDS = "*/2 * * * * *"
HOURLY = "0 * * * *"

T = TypeVar("T")


def start_emulator(*, rows: int = 3) -> CodaEmulator:
    """Start an emulator with two tables of *rows* rows each and one unrestricted token."""
    emulator = CodaEmulator()
    emulator.start()
    emulator.add_doc(DOC, name="Ops tracker")
    for table_id in TABLES:
        emulator.add_table(
            DOC,
            table_id,
            name=table_id,
            columns=[Column("c-name", "Name", "text", display=True), Column("c-qty", "Qty", "number")],
        )
        for number in range(1, rows + 1):
            emulator.add_row(
                DOC, table_id, {"c-name": f"row {number}", "c-qty": number}, row_id=f"i-{number}"
            )
    emulator.add_token(TOKEN, user="alice@example.test", scope=None)
    return emulator


def write_config(path: Path, jobs: Sequence[tuple[str, str, str]]) -> Path:
    """Write a jobs file with one job per (name, table id, schedule), all with $CODA_TOKEN."""
    entries = [
        f'[[jobs]]\nname = "{name}"\ndoc_id = "{DOC}"\ntable_id = "{table}"\n'
        f'token = "${{CODA_TOKEN}}"\nschedule = "{schedule}"\n'
        for name, table, schedule in jobs
    ]
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


def worker_env(
    *, coda: CodaEmulator, database_url: str, config: Path, data_dir: Path, **extra: str
) -> dict[str, str]:
    """Return the environment of a worker process; *extra* sets more CODA_SYNC_ variables."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODA_SYNC_") and key != "CODA_API_BASE_URL"
    }
    environ.update(
        CODA_API_BASE_URL=coda.base_url,
        CODA_SYNC_DATABASE_URL=database_url,
        CODA_SYNC_CONFIG=str(config),
        CODA_SYNC_DATA_DIR=str(data_dir),
        CODA_SYNC_LOG_FORMAT="json",
        CODA_SYNC_HEARTBEAT_INTERVAL="1",
        CODA_TOKEN=TOKEN,
    )
    environ.update({f"CODA_SYNC_{key.upper()}": value for key, value in extra.items()})
    return environ


class WorkerProcess:
    """A `coda-sync` subprocess whose stderr goes to a file, so a full pipe never blocks it."""

    def __init__(self, env: dict[str, str], log_path: Path, *, command: Sequence[str] | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.data_dir = Path(env["CODA_SYNC_DATA_DIR"])
        self._log_file = log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            list(command or [sys.executable, "-m", "worker", "run"]),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 15) -> tuple[int, float]:
        """Send SIGTERM and return the exit code and the seconds until the process ended."""
        started = time.monotonic()
        self.send(signal.SIGTERM)
        code = self.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        """End the process if it still runs; for `finally` blocks."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_file.close()

    def log(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log_path.read_text(encoding="utf-8")

    def events(self) -> list[dict[str, Any]]:
        """Parse the JSON log lines written so far; a line that is not JSON fails the test."""
        return [json.loads(line) for line in self.log().splitlines() if line.strip()]

    def event_names(self) -> list[str]:
        return [str(entry.get("event")) for entry in self.events()]

    def instance_id(self, timeout: float = 20) -> str:
        """Wait until the worker wrote its instance file and return the id."""
        path = self.data_dir / "worker-instance"
        return wait_for(
            lambda: path.read_text(encoding="utf-8").strip() if path.exists() else None,
            timeout,
            f"worker {self.pid} wrote no instance file; log:\n{self.log()[-3000:]}",
        )


def wait_for(check: Callable[[], T | None], timeout: float, message: str, interval: float = 0.1) -> T:
    """Call *check* until it returns a truthy value, failing the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(interval)


def query(database_url: str, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on a new connection and return its rows, or [] for no result."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def table_exists(database_url: str, name: str) -> bool:
    return query(database_url, "SELECT to_regclass(%s) IS NOT NULL", [name])[0][0] is True


def runs(database_url: str, job: str | None = None) -> list[tuple[Any, ...]]:
    """Return (job, scheduled_for, outcome, instance_id, started_at) of recorded runs, oldest first."""
    if not table_exists(database_url, "coda_sync.job_runs"):
        return []
    return query(
        database_url,
        "SELECT job_name, scheduled_for, outcome, instance_id, started_at FROM coda_sync.job_runs"
        " WHERE %(job)s::text IS NULL OR job_name = %(job)s ORDER BY started_at",
        {"job": job},  # type: ignore[arg-type]
    )


def first_page_requests(coda: CodaEmulator, table_id: str | None = None) -> int:
    """Count listRows requests without a pageToken: one per run that read the table."""
    return sum(
        1
        for request in coda.requests
        if request.path.endswith("/rows")
        and "pageToken" not in request.query
        and (table_id is None or f"/tables/{table_id}/" in request.path)
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DatabaseProxy:
    """A TCP proxy on 127.0.0.1 in front of the test PostgreSQL that a test can cut.

    `url` is the database URL through the proxy. `cut` closes the listener and every open
    connection, as a network outage would; `start` can open the same port again.
    """

    def __init__(self, database_url: str, port: int | None = None) -> None:
        params = psycopg.conninfo.conninfo_to_dict(database_url)
        host = str(params.get("host") or "localhost")
        server_port = int(params.get("port") or 5432)
        if host.startswith("/"):
            self._target: tuple[int, Any] = (socket.AF_UNIX, f"{host}/.s.PGSQL.{server_port}")
        else:
            self._target = (socket.AF_INET, (host, server_port))
        self.port = port or free_port()
        params.update(host="127.0.0.1", port=str(self.port))
        self.url = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> DatabaseProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                # On Linux, shutdown wakes a thread blocked in accept(); close alone does not.
                _close(self._listener)
                self._listener = None
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(self._target[0], socket.SOCK_STREAM)
            try:
                server.connect(self._target[1])
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(server)
                    return
                self._sockets.extend((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def kill_all(processes: Iterable[WorkerProcess]) -> None:
    for process in processes:
        process.kill()
