"""`coda-sync demo`: sync a sample doc from the bundled Coda API emulator, end to end.

It starts the emulator on 127.0.0.1 with a sample doc and four tokens (unrestricted, restricted
to the doc, restricted to one table, and restricted to a table the job does not read), syncs
one job per token into the `coda_demo` schema, and prints what happened.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from worker import status
from worker.cli import format_result, format_status_row, make_runner, run_jobs
from worker.config import load_config
from worker.database import describe_url, open_database
from worker.settings import Settings

logger = logging.getLogger(__name__)

DEMO_SCHEMA = "coda_demo"
DEMO_DATABASE = "coda_sync_demo"
DEMO_CONFIG = """\
[defaults]
target_schema = "{schema}"

[[jobs]]
name = "demo-deals"
doc_id = "{doc}"
table_id = "{deals}"
token = "${{DEMO_TOKEN_UNRESTRICTED}}"

[[jobs]]
name = "demo-tasks"
doc_id = "{doc}"
table_id = "{tasks}"
token = "${{DEMO_TOKEN_DOC}}"

[[jobs]]
name = "demo-contacts"
doc_id = "{doc}"
table_id = "{contacts}"
token = "${{DEMO_TOKEN_TABLE}}"

[[jobs]]
name = "demo-deals-wrong-scope"
doc_id = "{doc}"
table_id = "{deals}"
target_table = "deals_wrong_scope"
token = "${{DEMO_TOKEN_OTHER_TABLE}}"
"""
EXPECTED_OUTCOMES = {
    "demo-deals": "succeeded",
    "demo-tasks": "succeeded",
    "demo-contacts": "succeeded",
    "demo-deals-wrong-scope": "disabled",
}


def run_demo(settings: Settings) -> int:
    """Run the demo; return 0 when every job ended as the demo expects."""
    from worker.emulator import CodaEmulator
    from worker.emulator.sample import build_sample

    # The emulator's start and stop lines, and the runs' own log lines, would repeat what the
    # demo prints below.
    logging.getLogger("worker.emulator").setLevel(logging.WARNING)
    logging.getLogger("worker.sync").setLevel(logging.CRITICAL)

    with CodaEmulator() as emulator, tempfile.TemporaryDirectory(prefix="coda-sync-demo-") as folder:
        sample = build_sample(emulator)
        print(f"Coda API emulator listening on {emulator.base_url}")
        config_path = Path(folder) / "jobs.toml"
        config_path.write_text(
            DEMO_CONFIG.format(
                schema=DEMO_SCHEMA,
                doc=sample.doc_id,
                deals=sample.deals_table_id,
                tasks=sample.tasks_table_id,
                contacts=sample.contacts_table_id,
            ),
            encoding="utf-8",
        )
        environ = dict(os.environ)
        environ.update(
            DEMO_TOKEN_UNRESTRICTED=sample.unrestricted_token,
            DEMO_TOKEN_DOC=sample.doc_token,
            DEMO_TOKEN_TABLE=sample.table_token,
            DEMO_TOKEN_OTHER_TABLE=sample.other_table_token,
        )
        config = load_config(config_path, environ)

        url = demo_database_url(settings)
        db = open_database(url, wait=10.0)
        try:
            with db.connection() as conn:
                status.register_jobs(conn, config.jobs)
                # The demo's jobs start fresh each time, even if an earlier demo disabled one.
                for job in config.jobs:
                    status.enable(conn, job.name, by="coda-sync demo")

            runner = make_runner(settings.model_copy(update={"api_base_url": emulator.base_url}), config, db)
            print(f"\nSyncing {len(config.jobs)} jobs:")
            results = run_jobs(runner, config.jobs, parallel=4)
            for result in results:
                print("  " + format_result(result))

            with db.connection() as conn:
                rows = status.list_status(conn, [job.name for job in config.jobs])
                # No worker runs the demo's jobs again, so they must not count as stale.
                conn.execute(
                    "UPDATE coda_sync.job_status SET in_config = false WHERE job_name = ANY(%s)",
                    ([job.name for job in config.jobs],),
                )
            print("\nStatus table (coda_sync.job_status):")
            for row in rows:
                print("  " + format_status_row(row).replace("\n", "\n  "))
            _print_next_steps(settings, url)
        finally:
            db.close()

    outcomes = {result.job_name: result.outcome for result in results}
    if outcomes != EXPECTED_OUTCOMES:
        print(f"\nUnexpected outcomes: {outcomes}")
        return 1
    return 0


def demo_database_url(settings: Settings) -> str:
    """Return where the demo writes: CODA_SYNC_DATABASE_URL, else a database of its own.

    On the embedded PostgreSQL the demo uses the database `coda_sync_demo`, so that its jobs
    never show up beside the jobs of your own config.
    """
    url = settings.resolved_database_url()
    if url is not None:
        return url.get_secret_value()

    from worker.embedded import start_embedded

    server_url = start_embedded(settings.data_dir)
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = DEMO_DATABASE
    return psycopg.conninfo.make_conninfo("", **params)


def _command_prefix() -> str:
    # Repeat the command as the user typed it (say .venv/bin/coda-sync), so the hint works
    # without an activated virtual environment.
    program = Path(sys.argv[0])
    return shlex.quote(sys.argv[0]) if program.name == "coda-sync" else "python -m worker"


def _print_next_steps(settings: Settings, url: str) -> None:
    print("\nLook at the data:")
    if settings.resolved_database_url() is None:
        from worker.embedded import psql_command

        print(f"  {psql_command(url)} -c 'SELECT * FROM coda_sync.job_status'")
        print(
            f"  {psql_command(url)} -c 'SELECT _coda_row_id, _coda_row_name, _coda_values "
            f"FROM {DEMO_SCHEMA}.demo_deals LIMIT 5'"
        )
        print(f"  Stop the embedded PostgreSQL with: {_command_prefix()} stop-embedded-db")
    else:
        print(
            f"  psql \"$CODA_SYNC_DATABASE_URL\" -c 'SELECT * FROM {DEMO_SCHEMA}.demo_deals LIMIT 5'"
            f"  (database {describe_url(url)})"
        )
