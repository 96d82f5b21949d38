"""The `coda-sync` command line.

Exit codes: 0 success; 1 a job failed, was disabled or could not be read, the worker is
unhealthy, or PostgreSQL failed; 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from worker import __version__, status
from worker.config import Config, Job, load_config
from worker.database import Database, SessionTimeouts, describe_url, open_database
from worker.errors import ConfigError, SinkError, WorkerError
from worker.history import format_run, jsonable_run
from worker.logs import SecretRedactor, setup_logging
from worker.outcome import api_not_found_message
from worker.pacing import PacerRegistry
from worker.settings import DEFAULT_CONFIG_PATH, Settings, load_settings, unknown_variables
from worker.sync import JobRunner, RunnerOptions, RunResult, new_instance_id

logger = logging.getLogger(__name__)

NOT_FOUND_KINDS = frozenset({"not_found", "api_not_found"})
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DATABASE_WAIT_SYNC = 10.0  # seconds one-shot commands wait for PostgreSQL


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="coda-sync", description="Keep PostgreSQL copies of Coda tables.")
    parser.add_argument("--version", action="version", version=f"coda-sync {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        help=f"jobs file (TOML); default: $CODA_SYNC_CONFIG, else {DEFAULT_CONFIG_PATH}",
    )
    # --config is accepted after the command too; SUPPRESS keeps a value given before it.
    config_option = argparse.ArgumentParser(add_help=False)
    config_option.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="jobs file (TOML)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "run",
        parents=[config_option],
        help="run the scheduler until SIGTERM or SIGINT; SIGHUP reloads the jobs file",
    )
    sync = commands.add_parser(
        "sync", parents=[config_option], help="run jobs once now and print a summary per job"
    )
    sync.add_argument("jobs", nargs="*", metavar="JOB", help="job names (default: every enabled job)")
    sync.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="let this run delete rows even past the delete guard's limit",
    )
    show = commands.add_parser(
        "status", parents=[config_option], help="print one line per job from the status table"
    )
    show.add_argument("--json", action="store_true", help="print a JSON array of status rows")
    history = commands.add_parser("history", parents=[config_option], help="print recent runs, newest first")
    history.add_argument("job", nargs="?", metavar="JOB", help="only this job's runs")
    history.add_argument("--limit", type=_positive_int, default=20, help="number of runs (default: 20)")
    history.add_argument("--json", action="store_true", help="print a JSON array of runs")
    health = commands.add_parser(
        "health",
        parents=[config_option],
        help="exit 0 when this container's worker has a fresh heartbeat, else 1",
    )
    health.add_argument(
        "--max-age",
        type=float,
        metavar="SECONDS",
        help="oldest heartbeat that counts as fresh; default: $CODA_SYNC_HEALTH_MAX_AGE, else 60",
    )
    health.add_argument("--jobs", action="store_true", help="also exit 1 when an enabled job is stale")
    enable = commands.add_parser("enable", parents=[config_option], help="re-enable a disabled job")
    enable.add_argument("job", metavar="JOB")
    commands.add_parser(
        "check", parents=[config_option], help="validate the config and probe each job's access, read-only"
    )
    commands.add_parser(
        "demo", parents=[config_option], help="sync a sample doc from a local Coda API emulator"
    )
    stop_db = commands.add_parser(
        "stop-embedded-db", parents=[config_option], help="stop the embedded PostgreSQL server"
    )
    stop_db.add_argument(
        "--force", action="store_true", help="stop it even while coda-sync processes are connected"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(log_format=settings.log_format, level=settings.log_level)
        for name in unknown_variables(os.environ):
            logger.warning(
                "ignoring %s: no setting has that name; check its spelling in the README",
                name,
                extra={"event": "unknown_variable", "variable": name},
            )
        if args.command == "demo":
            from worker.demo import run_demo

            return run_demo(settings)
        if args.command == "stop-embedded-db":
            return _stop_embedded(settings, force=args.force)
        if args.command == "health":
            return _health(args, settings)
        if args.command == "history":
            return _history(args, settings)
        config_path = args.config or settings.config
        config = read_config(config_path)
        if args.command == "run":
            return _run_worker(settings, config)
        return _dispatch(args, settings, config)
    except ConfigError as exc:
        print(f"coda-sync: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SinkError as exc:
        print(f"coda-sync: database error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except WorkerError as exc:
        print(f"coda-sync: {exc}", file=sys.stderr)
        return EXIT_FAILED


def read_config(path: Path) -> Config:
    """Load the jobs file and keep its tokens out of every log line."""
    config = load_config(path)
    for job in config.jobs:
        if job.token is not None:
            SecretRedactor.register(job.token.get_secret_value())
    return config


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _dispatch(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    if args.command == "check":
        from worker.check import check_jobs

        return check_jobs(config, settings)

    db = connect(settings, wait=DATABASE_WAIT_SYNC)
    try:
        if args.command == "sync":
            return _sync(args, settings, config, db)
        if args.command == "status":
            return _status(args, settings, db)
        if args.command == "enable":
            return _enable(args.job, config, db)
    finally:
        db.close()
    raise AssertionError(f"unhandled command {args.command!r}")


def connect(settings: Settings, *, wait: float) -> Database:
    """Open the configured PostgreSQL, or start the embedded one when no URL is set."""
    timeouts = SessionTimeouts(idle_in_transaction=settings.idle_in_transaction_timeout)
    return open_database(database_url(settings), wait=wait, timeouts=timeouts)


def database_url(settings: Settings) -> str:
    """Return the configured database URL, or start the embedded PostgreSQL and return its URL."""
    url = settings.resolved_database_url()
    if url is not None:
        return url.get_secret_value()

    from worker.embedded import psql_command, start_embedded

    embedded_url = start_embedded(settings.data_dir)
    logger.info(
        "using the embedded PostgreSQL in %s; connect with: %s",
        settings.data_dir,
        psql_command(embedded_url),
        extra={"event": "embedded_database", "database": describe_url(embedded_url)},
    )
    return embedded_url


def make_runner(
    settings: Settings, config: Config, db: Database, *, instance_id: str | None = None
) -> JobRunner:
    """Build the job runner that every command shares."""
    options = RunnerOptions(
        base_url=settings.api_base_url,
        timeout=settings.request_timeout,
        connect_timeout=settings.connect_timeout,
        max_retry_time=settings.max_retry_time,
        instance_id=instance_id or new_instance_id(),
    )
    pacers = PacerRegistry(config.rate_limit_requests, config.rate_limit_window)
    return JobRunner(db, options, pacers=pacers)


def run_jobs(
    runner: JobRunner, jobs: Sequence[Job], *, parallel: int, allow_mass_delete: bool = False
) -> list[RunResult]:
    """Run *jobs* once, at most *parallel* at a time, and return their results in order."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(parallel, len(jobs))) as pool:
        futures = [pool.submit(runner.run, job, allow_mass_delete=allow_mass_delete) for job in jobs]
        return [future.result() for future in futures]


def format_result(result: RunResult) -> str:
    """Return the one-line summary `coda-sync sync` prints for a run."""
    line = f"{result.job_name}: {result.outcome}"
    if result.counts is not None:
        counts = result.counts
        line += (
            f", {counts.inserted} inserted, {counts.updated} updated, {counts.deleted} deleted,"
            f" {counts.total} rows"
        )
    line += f" in {result.duration:.2f} s"
    if result.attention:
        line += f"; needs attention: {result.attention}"
    elif result.message:
        line += f"; {result.message}"
    return line


def _sync(args: argparse.Namespace, settings: Settings, config: Config, db: Database) -> int:
    if args.allow_mass_delete and not args.jobs:
        # The guard protects every table; lifting it for all of them at once is rarely meant.
        raise ConfigError("--allow-mass-delete needs the names of the jobs it applies to")
    named = [config.job(name) for name in args.jobs]
    with db.connection() as conn:
        status.register_jobs(conn, config.jobs, complete=True)
        enabled = {row["job_name"]: row for row in status.list_status(conn)}

    selected: list[Job] = []
    exit_code = EXIT_OK
    for job in named or config.jobs:
        state = enabled[job.name]
        if state["enabled"]:
            selected.append(job)
            continue
        print(
            f"{job.name}: skipped, disabled: {state['disabled_reason']}; re-enable with "
            f"`coda-sync enable {job.name}`"
        )
        if named:
            exit_code = EXIT_FAILED

    runner = make_runner(settings, config, db)
    results = run_jobs(
        runner, selected, parallel=settings.max_parallel_jobs, allow_mass_delete=args.allow_mass_delete
    )
    for result in results:
        print(format_result(result))
        if result.outcome not in ("succeeded", "skipped"):
            exit_code = EXIT_FAILED
    if len(results) >= 2 and all(r.error_kind in NOT_FOUND_KINDS for r in results):
        print(f"coda-sync: {api_not_found_message(settings.api_base_url)}", file=sys.stderr)
    return exit_code


def _status(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    with db.connection() as conn:
        rows = status.list_status(conn)
        workers = status.live_workers(conn, max_age=settings.health_max_age)
    if args.json:
        print(json.dumps([_jsonable(row) for row in rows], indent=2, default=str))
        return EXIT_OK
    if not rows:
        print("no jobs have been registered yet; run `coda-sync sync` or `coda-sync run`")
    for row in rows:
        print(format_status_row(row, worker_running=workers > 0))
    return EXIT_OK


def format_status_row(row: dict[str, Any], *, worker_running: bool = True) -> str:
    """Return the one-line view of a status row that `coda-sync status` prints.

    Without a live worker, the stored next run time would only mislead, so it is not shown.
    """
    state = "enabled" if row["enabled"] else "DISABLED"
    if not row["in_config"]:
        state = "removed from config"
    if row.get("stale"):
        # The job_health view calls a job stale when it has not succeeded within twice its interval.
        state += ", STALE"
    outcome = row["last_outcome"] or "never run"
    success = row["last_success_at"].isoformat(timespec="seconds") if row["last_success_at"] else "never"
    next_run = row["next_run_at"].isoformat(timespec="seconds") if row["next_run_at"] else "-"
    if not worker_running:
        next_run = "- (no worker running)"
    line = (
        f"{row['job_name']}: {state}, last run {outcome}, last success {success}, "
        f"{row['rows_total'] if row['rows_total'] is not None else '-'} rows in {row['target_table']}, "
        f"next run {next_run}"
    )
    if not row["enabled"] and row["disabled_reason"]:
        line += f"\n    disabled ({row['last_error_kind']}): {row['disabled_reason']}"
    elif row["needs_attention"] and row["last_error"]:
        line += f"\n    needs attention ({row['last_error_kind']}): {row['last_error']}"
    return line


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in row.items()}


def _enable(name: str, config: Config, db: Database) -> int:
    job = config.job(name)
    with db.connection() as conn:
        status.register_jobs(conn, [job])
        changed = status.enable(conn, job.name, by="coda-sync enable")
    if changed:
        print(f"{job.name}: enabled; a running worker schedules it within a minute")
        logger.info("job %s enabled by hand", job.name, extra={"event": "job_enabled", "job": job.name})
    else:
        print(f"{job.name}: already enabled")
    return EXIT_OK


def _run_worker(settings: Settings, config: Config) -> int:
    from worker.scheduler import Worker
    from worker.service import open_run_database, serve

    url = database_url(settings)
    db = open_database(url, wait=settings.database_give_up)
    instance_id = new_instance_id()
    run_db = open_run_database(url, settings, instance_id)
    runner = make_runner(settings, config, run_db, instance_id=instance_id)
    worker = Worker(config, db, runner, run_db=run_db, settings=settings)
    return serve(worker, reload=lambda: read_config(config.path))


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from worker.health import probe

    max_age = args.max_age if args.max_age is not None else settings.health_max_age
    healthy, lines = probe(settings, max_age=max_age, jobs=args.jobs)
    for line in lines:
        print(line, file=sys.stdout if healthy else sys.stderr)
    return EXIT_OK if healthy else EXIT_FAILED


def _history(args: argparse.Namespace, settings: Settings) -> int:
    db = connect(settings, wait=DATABASE_WAIT_SYNC)
    try:
        with db.connection() as conn:
            rows = status.list_runs(conn, args.job, limit=args.limit)
    finally:
        db.close()
    if args.json:
        print(json.dumps([jsonable_run(row) for row in rows], indent=2, default=str))
        return EXIT_OK
    if not rows:
        subject = f"job {args.job!r}" if args.job else "any job"
        print(f"no runs of {subject} are recorded in coda_sync.job_runs")
    for row in rows:
        print(format_run(row))
    return EXIT_OK


def _stop_embedded(settings: Settings, *, force: bool) -> int:
    from worker.embedded import is_running, other_coda_sync_sessions, start_embedded, stop_embedded

    if not is_running(settings.data_dir):
        print(f"no embedded PostgreSQL is running in {settings.data_dir}")
        return EXIT_OK
    sessions = other_coda_sync_sessions(start_embedded(settings.data_dir))
    if sessions and not force:
        print(
            f"{sessions} coda-sync sessions are connected to the embedded PostgreSQL in "
            f"{settings.data_dir} (a running worker?); stop them first, or pass --force",
            file=sys.stderr,
        )
        return EXIT_FAILED
    stop_embedded(settings.data_dir)
    print(f"stopped the embedded PostgreSQL in {settings.data_dir}")
    return EXIT_OK
