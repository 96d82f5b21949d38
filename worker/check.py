"""`coda-sync check`: probe every job's access with read-only calls and write nothing."""

from __future__ import annotations

import logging

from worker.config import Config, Job
from worker.errors import ConfigError, SourceRejected, WorkerError
from worker.outcome import api_not_found_message
from worker.pipeline import explain_refused_token
from worker.retry import RetryPolicy
from worker.settings import Settings
from worker.source import ClientOptions, CodaClient

logger = logging.getLogger(__name__)


def check_jobs(config: Config, settings: Settings) -> int:
    """Print one line per job; return 0 when every job's table can be read, else 1."""
    count = len(config.jobs)
    if count == 0:
        print(f"{config.path}: configuration valid, but it has no [[jobs]] entries; add one per table")
        return 1
    print(f"{config.path}: {count} job{'s' if count != 1 else ''}, configuration valid")
    problems = []
    for job in config.jobs:
        problem = probe_job(job, settings)
        if problem is not None:
            print(f"{job.name}: FAILED: {problem}")
            problems.append(problem)
    if count >= 2 and len(problems) == count and all(p.startswith("not_found:") for p in problems):
        print(api_not_found_message(settings.api_base_url))
    return 1 if problems else 0


def probe_job(job: Job, settings: Settings) -> str | None:
    """Read the job's table metadata, columns and first row; return a problem or None."""
    if job.token is None:
        return f"config_error: token missing: {job.token_problem}"
    # A probe should finish within seconds, so it retries less than a scheduled run does.
    options = ClientOptions(
        timeout=settings.request_timeout,
        connect_timeout=settings.connect_timeout,
        retry=RetryPolicy(max_attempts=3, max_total_delay=10.0),
    )
    with CodaClient(settings.api_base_url, job.token, options=options) as client:
        try:
            table = client.get_table(job.doc_id, job.table_id)
            if table.table_type == "view":
                raise ConfigError(
                    f"table_id {job.table_id!r} is a view; set it to its base table {table.parent_table_id!r}"
                )
            columns = client.list_columns(job.doc_id, table.id)
            next(iter(client.iter_row_pages(job.doc_id, table.id, limit=1)), None)
        except SourceRejected as exc:
            return _explain(job, client, exc)
        except WorkerError as exc:
            return f"{exc.kind}: {exc}"
    rows = table.row_count if table.row_count is not None else "unknown"
    print(
        f"{job.name}: ok, table {table.name!r} ({table.id}) in doc {job.doc_id}, "
        f"{rows} rows, {len(columns)} columns"
    )
    return None


def _explain(job: Job, client: CodaClient, exc: SourceRejected) -> str:
    rejection = explain_refused_token(job, client, exc)
    return f"{rejection.kind}: {rejection.reason}"
