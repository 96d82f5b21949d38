"""One run of one job: read the whole Coda table, then merge it and record the outcome.

The read streams into a staging table inside the run's transaction; the merge and the status
update happen in that same transaction after the last page. Any failure rolls it back, so a
failed run leaves the data table exactly as it was, and only then is the failure recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from worker import status
from worker.config import Job
from worker.database import Database
from worker.errors import (
    ConfigError,
    RunInterrupted,
    SinkError,
    SourceError,
    SourceRejected,
    WorkerError,
)
from worker.outcome import decide_deletes, explain_rejection
from worker.pacing import PacerRegistry
from worker.sink import DeletePlan, MergeCounts, TableSink
from worker.source import (
    ClientOptions,
    CodaClient,
    Identity,
    PageTokenRejected,
    RequestStats,
    TableInfo,
)

logger = logging.getLogger(__name__)

ClientFactory = Callable[[SecretStr, ClientOptions], CodaClient]


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What one run did; `outcome` is 'succeeded', 'failed', 'disabled', 'interrupted' or 'skipped'."""

    job_name: str
    outcome: str
    duration: float
    counts: MergeCounts | None = None
    error_kind: str | None = None
    message: str | None = None
    attention: str | None = None


@dataclass(kw_only=True)
class RunnerOptions:
    """Settings shared by every run of one worker process."""

    base_url: str
    timeout: float = 30.0  # seconds per request
    connect_timeout: float = 10.0  # seconds
    max_retry_time: float = 300.0  # seconds of backoff one request may use
    cancel: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Runs jobs against one database and one Coda base URL."""

    def __init__(
        self,
        db: Database,
        options: RunnerOptions,
        *,
        pacers: PacerRegistry | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.db = db
        self.options = options
        self.pacers = pacers or PacerRegistry()
        self._client_factory = client_factory or self._default_client

    def run(self, job: Job, *, allow_mass_delete: bool = False) -> RunResult:
        """Run *job* once and record its outcome; never raises for a job-level failure."""
        started = time.monotonic()
        if job.token is None:
            problem = job.token_problem or "the job has no token"
            return self._record_failure(job, ConfigError(f"token missing: {problem}"), started, None)

        try:
            with self.db.connection() as conn:
                state = status.load_state(conn, job.name)
                if state is None:
                    status.register_jobs(conn, [job])
                elif not state.enabled:
                    return RunResult(
                        job_name=job.name,
                        outcome="skipped",
                        duration=0.0,
                        message=f"disabled: {state.disabled_reason}; re-enable with "
                        f"`coda-sync enable {job.name}`",
                    )
                status.mark_started(conn, job.name)
        except SinkError as exc:
            logger.error(
                "job %s not started: %s",
                job.name,
                exc,
                extra={"event": "run_failed", "job": job.name, "kind": exc.kind},
            )
            return RunResult(
                job_name=job.name,
                outcome="failed",
                duration=time.monotonic() - started,
                error_kind=exc.kind,
                message=str(exc),
            )

        client = self._client(job, started)
        try:
            return self._read_and_merge(job, client, started, allow_mass_delete)
        except WorkerError as exc:
            return self._handle_failure(job, client, exc, started)
        except Exception as exc:
            # A bug, not a job-level failure: record it so the status row does not claim the
            # job is still running, then let the traceback reach the log.
            self._write_failure(
                job,
                outcome="failed",
                kind="internal_error",
                message=f"internal error: {type(exc).__name__}: {exc}",
                duration=time.monotonic() - started,
                stats=client.stats,
            )
            raise
        finally:
            client.close()

    def _client(self, job: Job, started: float) -> CodaClient:
        assert job.token is not None
        fingerprint = job.token_fingerprint or ""
        user = self.pacers.user_of(fingerprint) or f"token:{fingerprint}"
        options = ClientOptions(
            timeout=self.options.timeout,
            connect_timeout=self.options.connect_timeout,
            deadline=started + job.run_timeout,
            cancel=self.options.cancel,
            pacer=self.pacers.for_user(user),
        )
        options.retry = type(options.retry)(max_total_delay=self.options.max_retry_time)
        return self._client_factory(job.token, options)

    def _default_client(self, token: SecretStr, options: ClientOptions) -> CodaClient:
        return CodaClient(self.options.base_url, token, options=options)

    def _read_and_merge(
        self, job: Job, client: CodaClient, started: float, allow_mass_delete: bool
    ) -> RunResult:
        with self.db.connection() as conn, conn.transaction():
            if not status.try_lock_job(conn, job.name):
                return RunResult(
                    job_name=job.name,
                    outcome="skipped",
                    duration=time.monotonic() - started,
                    message="another worker is running this job right now",
                )
            state = status.load_state(conn, job.name, lock=True)
            if state is not None and not state.enabled:
                return RunResult(job_name=job.name, outcome="skipped", duration=0.0,
                                 message=f"disabled: {state.disabled_reason}")

            table = self._resolve_table(job, client, state.resolved_table_id if state else None)
            columns = client.list_columns(job.doc_id, table.id)
            sink = TableSink(conn, job.target_schema, job.target_table)
            sink.ensure_table(soft_deletes=job.deletes == "soft")
            self._read_all_rows(job, client, sink, table)

            plan, attention = self._plan_deletes(job, sink, table, allow_mass_delete)
            counts = sink.merge(plan)
            duration = time.monotonic() - started
            status.save_columns(conn, job.name, columns)
            status.record_success(
                conn,
                job.name,
                counts=counts,
                stats=client.stats,
                duration=duration,
                resolved_table_id=table.id,
                attention=attention,
            )
        self._log_success(job, counts, client.stats, duration, attention)
        return RunResult(
            job_name=job.name,
            outcome="succeeded",
            duration=duration,
            counts=counts,
            attention=attention,
        )

    def _resolve_table(self, job: Job, client: CodaClient, resolved: str | None) -> TableInfo:
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

    def _read_all_rows(
        self, job: Job, client: CodaClient, sink: TableSink, table: TableInfo
    ) -> None:
        # A page token that Coda rejects mid-read (it expired, or the table changed) restarts
        # the read once from the first page; a second rejection fails the run.
        for attempt in (1, 2):
            sink.start_staging()
            try:
                for page in client.iter_row_pages(job.doc_id, table.id):
                    sink.stage(page)
                    if self.options.cancel.is_set():
                        raise RunInterrupted("the worker is shutting down")
                return
            except PageTokenRejected:
                if attempt == 2:
                    raise
                logger.warning(
                    "job %s: Coda rejected a page token; reading again from the first page",
                    job.name,
                    extra={"event": "read_restarted", "job": job.name},
                )

    def _plan_deletes(
        self, job: Job, sink: TableSink, table: TableInfo, allow_mass_delete: bool
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

    def _handle_failure(
        self, job: Job, client: CodaClient, exc: WorkerError, started: float
    ) -> RunResult:
        if isinstance(exc, SourceRejected):
            return self._disable(job, client, exc, started)
        return self._record_failure(job, exc, started, client.stats)

    def _disable(
        self, job: Job, client: CodaClient, exc: SourceRejected, started: float
    ) -> RunResult:
        identity: Identity | None = None
        whoami_status: int | None = None
        try:
            identity = client.whoami()
        except SourceError as whoami_error:
            whoami_status = whoami_error.status
        except RunInterrupted:
            pass
        rejection = explain_rejection(
            job_name=job.name,
            doc_id=job.doc_id,
            table_id=job.table_id,
            status=exc.status,
            operation=friendly_operation(exc.operation or "a request"),
            identity=identity,
            whoami_status=whoami_status,
        )
        duration = time.monotonic() - started
        self._write_failure(
            job,
            outcome="disabled",
            kind=rejection.kind,
            message=rejection.reason,
            duration=duration,
            stats=client.stats,
            disable_reason=rejection.reason,
        )
        logger.error(
            "job %s disabled: %s",
            job.name,
            rejection.reason,
            extra={"event": "job_disabled", "job": job.name, "kind": rejection.kind},
        )
        return RunResult(
            job_name=job.name,
            outcome="disabled",
            duration=duration,
            error_kind=rejection.kind,
            message=rejection.reason,
        )

    def _record_failure(
        self, job: Job, exc: WorkerError, started: float, stats: RequestStats | None
    ) -> RunResult:
        outcome = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
        duration = time.monotonic() - started
        message = str(exc)
        self._write_failure(
            job, outcome=outcome, kind=exc.kind, message=message, duration=duration, stats=stats
        )
        log = logger.warning if outcome == "interrupted" else logger.error
        log(
            "job %s %s after %.1f s (%s): %s",
            job.name,
            outcome,
            duration,
            exc.kind,
            message,
            extra={"event": f"run_{outcome}", "job": job.name, "kind": exc.kind},
        )
        return RunResult(
            job_name=job.name,
            outcome=outcome,
            duration=duration,
            error_kind=exc.kind,
            message=message,
        )

    def _write_failure(self, job: Job, **fields: object) -> None:
        try:
            with self.db.connection() as conn:
                status.record_failure(conn, job.name, **fields)  # type: ignore[arg-type]
        except SinkError as exc:
            logger.error(
                "job %s: could not record the run's outcome: %s",
                job.name,
                exc,
                extra={"event": "status_write_failed", "job": job.name},
            )

    def _log_success(
        self,
        job: Job,
        counts: MergeCounts,
        stats: RequestStats,
        duration: float,
        attention: str | None,
    ) -> None:
        logger.info(
            "job %s succeeded in %.1f s: %d read, %d inserted, %d updated, %d deleted, "
            "%d total (%d requests, %d retries)%s",
            job.name,
            duration,
            counts.read,
            counts.inserted,
            counts.updated,
            counts.deleted,
            counts.total,
            stats.requests,
            stats.retries,
            f"; needs attention: {attention}" if attention else "",
            extra={
                "event": "run_succeeded",
                "job": job.name,
                "rows_read": counts.read,
                "rows_inserted": counts.inserted,
                "rows_updated": counts.updated,
                "rows_deleted": counts.deleted,
                "rows_total": counts.total,
                "duration": duration,
            },
        )


def friendly_operation(operation: str) -> str:
    names = {"listRows": "rows", "listColumns": "columns", "getTable": "table"}
    return names.get(operation.strip(), operation.strip())
