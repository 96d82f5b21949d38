"""`coda-sync demo` and `stop-embedded-db` on a fresh embedded PostgreSQL, as a new user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from worker.embedded import start_embedded, stop_embedded


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CODA_SYNC_")}
    environ["CODA_SYNC_DATA_DIR"] = str(tmp_path / "data")
    try:
        yield environ
    finally:
        stop_embedded(tmp_path / "data")


def coda_sync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_demo_shows_succeeded_and_disabled_jobs(demo_env: dict[str, str], tmp_path: Path) -> None:
    first = coda_sync("demo", env=demo_env)
    second = coda_sync("demo", env=demo_env)

    assert first.returncode == 0, first.stdout + first.stderr
    for name in ("demo-deals", "demo-tasks", "demo-contacts"):
        assert f"{name}: succeeded" in first.stdout
    assert "demo-deals: succeeded, 1200 inserted" in first.stdout
    assert "demo-deals-wrong-scope: disabled" in first.stdout
    assert "token_out_of_scope" in first.stdout
    assert "psql" in first.stdout
    assert second.returncode == 0, second.stdout + second.stderr
    assert "demo-deals: succeeded, 0 inserted, 0 updated, 0 deleted, 1200 rows" in second.stdout


def test_demo_keeps_its_jobs_apart(demo_env: dict[str, str], tmp_path: Path) -> None:
    coda_sync("demo", env=demo_env)

    url = start_embedded(tmp_path / "data")
    with psycopg.connect(url) as conn:
        own = conn.execute("SELECT to_regclass('coda_sync.job_status')").fetchone()
    assert own == (None,)


def test_stop_embedded_refuses_while_connected(demo_env: dict[str, str], tmp_path: Path) -> None:
    url = start_embedded(tmp_path / "data")

    with psycopg.connect(url, application_name="coda-sync run test"):
        refused = coda_sync("stop-embedded-db", env=demo_env)
    stopped = coda_sync("stop-embedded-db", env=demo_env)
    again = coda_sync("stop-embedded-db", env=demo_env)

    assert refused.returncode == 1
    assert "1 coda-sync sessions are connected" in refused.stderr
    assert "--force" in refused.stderr
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the embedded PostgreSQL" in stopped.stdout
    assert "no embedded PostgreSQL is running" in again.stdout
