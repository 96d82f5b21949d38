"""The steps of one read, between the first request and the merge.

They run inside the run's transaction (see `worker.sync`), so any error they raise rolls back
everything the read staged.
"""

from __future__ import annotations

import logging
import threading

from worker.config import Job
from worker.errors import ConfigError, RunInterrupted, SourceError, SourceRejected
from worker.outcome import Rejection, decide_deletes, explain_rejection, friendly_operation
from worker.records import Identity, TableInfo
from worker.sink import DeletePlan, TableSink
from worker.source import CodaClient, PageTokenRejected

logger = logging.getLogger(__name__)


def resolve_table(job: Job, client: CodaClient, resolved: str | None) -> TableInfo:
    # A table configured by name is looked up once and then addressed by its immutable id,
    # so renaming the table in Coda does not break the job.
    table = client.get_table(job.doc_id, resolved or job.table_id)
    if table.table_type == "view":
        parent = table.parent_table_id or "the view's base table"
        raise ConfigError(
            f"table_id {job.table_id!r} of job {job.name!r} is a view; a view hides rows "
            f"that its filter excludes, and they would be deleted here. Set table_id to "
            f"{parent!r} instead"
        )
    return table


def read_all_rows(
    job: Job, client: CodaClient, sink: TableSink, table: TableInfo, cancel: threading.Event
) -> None:
    # A page token that Coda rejects mid-read (it expired, or the table changed) restarts
    # the read once from the first page; a second rejection fails the run.
    for attempt in (1, 2):
        sink.start_staging()
        try:
            for page in client.iter_row_pages(job.doc_id, table.id):
                sink.stage(page)
                if cancel.is_set():
                    raise RunInterrupted("the worker is shutting down; the run was rolled back")
            return
        except PageTokenRejected:
            if attempt == 2:
                raise
            logger.warning(
                "job %s: Coda rejected a page token; reading again from the first page",
                job.name,
                extra={"event": "read_restarted", "job": job.name},
            )


def plan_deletes(
    job: Job, sink: TableSink, table: TableInfo, allow_mass_delete: bool
) -> tuple[DeletePlan, str | None]:
    soft = job.deletes == "soft"
    read = sink.finish_read()
    existing = sink.count_existing(soft_deletes=soft)
    missing = sink.count_missing(soft_deletes=soft) if existing else 0
    decision = decide_deletes(
        existing=existing,
        missing=missing,
        read=read,
        row_count=table.row_count,
        max_fraction=job.max_delete_fraction,
        allow_mass_delete=allow_mass_delete or job.allow_mass_delete,
    )
    if not decision.allowed:
        return DeletePlan(mode="withhold"), decision.reason
    return DeletePlan(mode=job.deletes), None


def explain_refused_token(job: Job, client: CodaClient, refusal: SourceRejected) -> Rejection:
    """Ask `/whoami` once why Coda refused the job's token, and return the explanation."""
    identity: Identity | None = None
    whoami_status: int | None = None
    try:
        identity = client.whoami()
    except SourceError as whoami_error:
        whoami_status = whoami_error.status
    except RunInterrupted:
        pass
    return explain_rejection(
        job_name=job.name,
        doc_id=job.doc_id,
        table_id=job.table_id,
        status=refusal.status,
        operation=friendly_operation(refusal.operation or "a request"),
        identity=identity,
        whoami_status=whoami_status,
    )
