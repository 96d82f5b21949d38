"""`coda-sync check`: probe every job's access with read-only calls and write nothing."""

from __future__ import annotations

import logging

from worker.config import Config, Job
from worker.errors import ConfigError, SourceRejected, WorkerError
from worker.pipeline import explain_refused_token
from worker.settings import Settings
from worker.source import ClientOptions, CodaClient

logger = logging.getLogger(__name__)


def check_jobs(config: Config, settings: Settings) -> int:
    """Print one line per job; return 0 when every job's table can be read, else 1."""
    print(f"{config.path}: {len(config.jobs)} jobs, configuration valid")
    failures = 0
    for job in config.jobs:
        problem = probe_job(job, settings)
        if problem is None:
            continue
        failures += 1
        print(f"{job.name}: FAILED: {problem}")
    return 1 if failures else 0


def probe_job(job: Job, settings: Settings) -> str | None:
    """Read the job's table metadata, columns and first row; return a problem or None."""
    if job.token is None:
        return f"token missing: {job.token_problem}"
    options = ClientOptions(timeout=settings.request_timeout, connect_timeout=settings.connect_timeout)
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
