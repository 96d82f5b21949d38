"""The `coda-sync` command run as a subprocess against the emulator and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from worker.emulator import CodaEmulator, Column

DOC = "FakeDoc01"
CANARY = "canary-token-7f3a9c0e5b"
SCOPED = "tok-scoped-T1-4d2e8a"


@pytest.fixture
def coda() -> Iterator[CodaEmulator]:
    emulator = CodaEmulator()
    emulator.start()
    emulator.add_doc(DOC, name="Ops tracker")
    for table_id in ("grid-T1", "grid-T2"):
        emulator.add_table(
            DOC,
            table_id,
            name=table_id,
            columns=[Column("c-name", "Name", "text", display=True), Column("c-qty", "Qty", "number")],
        )
        for number in range(1, 4):
            emulator.add_row(DOC, table_id, {"c-name": f"row {number}", "c-qty": number})
    emulator.add_token(CANARY, user="alice@example.test", scope=None)
    emulator.add_token(SCOPED, user="bob@example.test", scope=("table", DOC, "grid-T1"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(
        f"""
[defaults]
schedule = "0 * * * *"

[[jobs]]
name = "tasks"
doc_id = "{DOC}"
table_id = "grid-T1"
token = "${{CODA_TOKEN_MAIN}}"

[[jobs]]
name = "stock"
doc_id = "{DOC}"
table_id = "grid-T2"
token = "${{CODA_TOKEN_SCOPED}}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def env(coda: CodaEmulator, database_url: str, config_file: Path) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update(
        CODA_API_BASE_URL=coda.base_url,
        CODA_SYNC_DATABASE_URL=database_url,
        CODA_SYNC_CONFIG=str(config_file),
        CODA_TOKEN_MAIN=CANARY,
        CODA_TOKEN_SCOPED=SCOPED,
        CODA_SYNC_LOG_LEVEL="DEBUG",
    )
    return environ


def coda_sync(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sync_exit_code_reports_disabled_job(env: dict[str, str]) -> None:
    result = coda_sync("sync", env=env)

    assert result.returncode == 1, result.stderr
    assert "tasks: succeeded, 3 inserted, 0 updated, 0 deleted, 3 rows" in result.stdout
    assert "stock: disabled" in result.stdout


def test_sync_skips_disabled_job_without_failing(env: dict[str, str]) -> None:
    coda_sync("sync", env=env)

    again = coda_sync("sync", env=env)
    named = coda_sync("sync", "stock", env=env)

    assert again.returncode == 0, again.stdout + again.stderr
    assert "stock: skipped, disabled" in again.stdout
    assert "coda-sync enable stock" in again.stdout
    assert named.returncode == 1


def test_sync_named_job_runs_only_it(env: dict[str, str]) -> None:
    result = coda_sync("sync", "tasks", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1


def test_sync_unknown_job_is_usage_error(env: dict[str, str]) -> None:
    result = coda_sync("sync", "nope", env=env)

    assert result.returncode == 2
    assert "no job named 'nope'" in result.stderr
    assert "tasks" in result.stderr


def test_invalid_config_names_file_job_key(env: dict[str, str], config_file: Path) -> None:
    config_file.write_text(
        f'[[jobs]]\nname = "tasks"\ndoc_id = "{DOC}"\ntable_id = "grid-T1"\ntoken = "x"\n'
        'schedule = "every hour"\n'
    )

    result = coda_sync("sync", env=env)

    assert result.returncode == 2
    assert str(config_file) in result.stderr
    assert "job 'tasks'" in result.stderr
    assert "'schedule'" in result.stderr


def test_status_json_has_status_columns(env: dict[str, str]) -> None:
    coda_sync("sync", env=env)

    result = coda_sync("status", "--json", env=env)

    rows = {row["job_name"]: row for row in json.loads(result.stdout)}
    assert result.returncode == 0
    assert rows["tasks"]["last_outcome"] == "succeeded"
    assert rows["tasks"]["rows_total"] == 3
    assert rows["stock"]["enabled"] is False
    assert rows["stock"]["disabled_reason"].startswith("scope: ")
    assert len(rows["tasks"]["token_fingerprint"]) == 12


def test_status_text_one_line_per_job(env: dict[str, str]) -> None:
    coda_sync("sync", env=env)

    result = coda_sync("status", env=env)

    assert result.returncode == 0
    assert result.stdout.startswith("stock: DISABLED")
    assert "\ntasks: enabled, last run succeeded" in result.stdout


def test_enable_reenables_disabled_job(env: dict[str, str]) -> None:
    coda_sync("sync", env=env)

    result = coda_sync("enable", "stock", env=env)
    status = json.loads(coda_sync("status", "--json", env=env).stdout)

    assert result.returncode == 0
    assert {row["job_name"]: row["enabled"] for row in status} == {"stock": True, "tasks": True}


def test_check_probes_access_read_only(env: dict[str, str], database_url: str) -> None:
    result = coda_sync("check", env=env)

    assert result.returncode == 1
    assert "tasks: ok" in result.stdout
    assert "stock: FAILED: token_out_of_scope" in result.stdout
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT to_regclass('coda_sync.job_status')").fetchone()
    assert row == (None,)


def test_token_never_printed_or_stored(env: dict[str, str], database_url: str, config_file: Path) -> None:
    outputs = [
        coda_sync("sync", env=env),
        coda_sync("status", "--json", env=env),
        coda_sync("check", env=env),
    ]
    config_file.write_text(f'[[jobs]]\nname = "Bad Name"\ntoken = "{CANARY}"\n')
    outputs.append(coda_sync("sync", env=env))

    for output in outputs:
        assert CANARY not in output.stdout + output.stderr
    with psycopg.connect(database_url) as conn:
        dump = conn.execute("SELECT string_agg(j::text, '') FROM coda_sync.job_status j").fetchone()
    assert dump is not None
    assert CANARY not in dump[0]


def test_run_syncs_then_stops_on_sigterm(env: dict[str, str], database_url: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        synced = False
        while time.monotonic() < deadline and not synced:
            time.sleep(0.3)
            with psycopg.connect(database_url) as conn:
                exists = conn.execute("SELECT to_regclass('coda_sync.job_status')").fetchone()
                if exists and exists[0]:
                    row = conn.execute(
                        "SELECT last_outcome, next_run_at FROM coda_sync.job_status WHERE job_name = 'tasks'"
                    ).fetchone()
                    synced = row is not None and row[0] == "succeeded" and row[1] is not None
        assert synced, "the worker did not sync a never-synced job right after start"

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert elapsed < 8
    assert "job tasks succeeded" in stderr
    assert CANARY not in stderr


def test_sync_allow_mass_delete_flag(env: dict[str, str], coda: CodaEmulator, database_url: str) -> None:
    coda_sync("sync", "tasks", env=env)
    for row in coda.rows(DOC, "grid-T1")[:2]:
        coda.delete_row(DOC, "grid-T1", row["id"])

    guarded = coda_sync("sync", "tasks", env=env)
    allowed = coda_sync("sync", "tasks", "--allow-mass-delete", env=env)

    assert guarded.returncode == 0, guarded.stderr
    assert "0 deleted" in guarded.stdout
    assert "needs attention" in guarded.stdout
    assert allowed.returncode == 0, allowed.stderr
    assert "2 deleted, 1 rows" in allowed.stdout
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT needs_attention, rows_total FROM coda_sync.job_status WHERE job_name = 'tasks'"
        ).fetchone()
    assert row == (False, 1)
