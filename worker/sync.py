"""One run of one job: read the whole Coda table, then merge it and record the outcome.

The read streams into a staging table inside the run's transaction; the merge, the status
update and the history row happen in that same transaction after the last page. Any failure
rolls it back, so a failed run leaves the data table exactly as it was, and only then is the
failure recorded.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import SecretStr

from worker import status
from worker.config import Job
from worker.database import Database
from worker.errors import (
    ConfigError,
    RunInterrupted,
    SinkError,
    SourceError,
    SourceNotFound,
    SourceRejected,
    WorkerError,
)
from worker.outcome import api_not_found_message
from worker.pacing import PacerRegistry
from worker.pipeline import explain_refused_token, plan_deletes, read_all_rows, resolve_table
from worker.records import RequestStats
from worker.runs import Run, RunnerOptions, RunResult, new_instance_id
from worker.sink import TableSink
from worker.source import ClientOptions, CodaClient

logger = logging.getLogger(__name__)

__all__ = ["ClientFactory", "JobRunner", "Run", "RunResult", "RunnerOptions", "new_instance_id"]

ClientFactory = Callable[[SecretStr, ClientOptions], CodaClient]


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
        self._lock = threading.Lock()
        self._api_not_found_logged: tuple[str, ...] = ()

    def run(self, job: Job, *, allow_mass_delete: bool = False, slot: datetime | None = None) -> RunResult:
        """Run *job* once and record its outcome; never raises for a job-level failure.

        *slot* is the scheduled fire time; among replicas only the first to claim it runs.
        """
        run = Run(
            job=job,
            run_id=uuid.uuid4().hex,
            slot=slot,
            started=time.monotonic(),
            started_at=datetime.now(UTC),
        )
        try:
            skipped = self._start(run)
        except SinkError as exc:
            logger.error(
                "job %s not started: %s", job.name, exc, extra={"event": "run_failed", "job": job.name}
            )
            return self._result(run, "failed", error_kind=exc.kind, message=str(exc))
        if skipped is not None:
            return skipped

        # Checked after the slot claim, so that replicas record one failure per slot.
        if job.token is None:
            problem = job.token_problem or "the job has no token"
            return self._fail(run, ConfigError(f"token missing: {problem}"))

        try:
            run.client = self._client(run)
            self._share_user_budget(run)
            return self._read_and_merge(run, allow_mass_delete)
        except SourceRejected as exc:
            return self._disable(run, exc)
        except WorkerError as exc:
            return self._fail(run, exc)
        except Exception as exc:
            # A bug, not a job-level failure: record it so the status row does not claim the
            # job is still running, then let the traceback reach the log.
            self._write_failure(
                run, "failed", "internal_error", self._redact(run, f"internal error: {exc!r}")
            )
            raise
        finally:
            if run.client is not None:
                run.client.close()

    def _start(self, run: Run) -> RunResult | None:
        job = run.job
        with self.db.connection() as conn:
            state = status.load_state(conn, job.name)
            if state is None:
                status.register_jobs(conn, [job])
            elif not state.enabled:
                message = f"disabled: {state.disabled_reason}; re-enable with `coda-sync enable {job.name}`"
                return self._result(run, "skipped", message=message)
            if run.slot is not None and not status.claim_slot(conn, job.name, run.slot):
                return self._result(run, "skipped", message="another worker ran this slot")
            status.mark_started(conn, job.name)
        return None

    def _client(self, run: Run) -> CodaClient:
        job = run.job
        assert job.token is not None
        token = job.token.get_secret_value()
        if not (token.isascii() and token.isprintable()):
            # The config loader rejects such tokens; a Job built in code may still carry one.
            raise ConfigError("the token contains non-ASCII or control characters; copy it again")
        options = ClientOptions(
            timeout=self.options.timeout,
            connect_timeout=self.options.connect_timeout,
            deadline=run.started + job.run_timeout,
            cancel=self.options.cancel,
            pacer=self.pacers.for_user(f"token:{job.token_fingerprint}"),
        )
        options.retry = type(options.retry)(max_total_delay=self.options.max_retry_time)
        return self._client_factory(job.token, options)

    def _default_client(self, token: SecretStr, options: ClientOptions) -> CodaClient:
        return CodaClient(self.options.base_url, token, options=options)

    def _share_user_budget(self, run: Run) -> None:
        """Pace the run with the budget of the token's Coda user, learnt once per token.

        Coda's rate limit counts every token of one user together, so jobs with different
        tokens of the same user must draw from one budget.
        """
        assert run.client is not None
        fingerprint = run.job.token_fingerprint or ""
        user = self.pacers.user_of(fingerprint)
        if user is None:
            try:
                user = run.client.whoami(retry=False).login_id
            except SourceError as exc:
                # The run's own requests will fail the same way and explain it; until then
                # the token keeps a budget of its own.
                logger.debug("job %s: /whoami failed, pacing by token: %s", run.job.name, exc)
                return
            self.pacers.remember_user(fingerprint, user)
            # That /whoami counted against the user's limit too.
            self.pacers.for_user(user).charge()
        run.client.options.pacer = self.pacers.for_user(user)

    def _read_and_merge(self, run: Run, allow_mass_delete: bool) -> RunResult:
        job, client = run.job, run.client
        assert client is not None
        with self.db.connection() as conn, conn.transaction():
            TableSink(conn, job.target_schema, job.target_table).ensure_table(
                soft_deletes=job.deletes == "soft"
            )

        with self.db.connection() as conn, conn.transaction():
            # The lock lives as long as this transaction: it keeps two workers from writing
            # one table at once, and a worker whose session ended can no longer commit.
            if not status.try_lock_job(conn, job.name):
                return self._result(run, "skipped", message="another worker is running this job now")
            state = status.load_state(conn, job.name)
            if state is not None and not state.enabled:
                return self._result(run, "skipped", message=f"disabled: {state.disabled_reason}")

            table = resolve_table(job, client, state.resolved_table_id if state else None)
            columns = client.list_columns(job.doc_id, table.id)
            sink = TableSink(conn, job.target_schema, job.target_table)
            read_all_rows(job, client, sink, table, self.options.cancel)

            plan, attention = plan_deletes(job, sink, table, allow_mass_delete)
            counts = sink.merge(plan)
            status.save_columns(conn, job.name, columns)
            status.record_success(
                conn,
                job.name,
                counts=counts,
                stats=client.stats,
                duration=run.elapsed(),
                resolved_table_id=table.id,
                attention=attention,
            )
            status.record_run(conn, self._record(run, "succeeded", counts=counts))
        result = self._result(run, "succeeded", counts=counts, attention=attention)
        self._log_success(result, client.stats)
        return result

    def _disable(self, run: Run, exc: SourceRejected) -> RunResult:
        job, client = run.job, run.client
        assert client is not None
        rejection = explain_refused_token(job, client, exc)
        self._write_failure(run, "disabled", rejection.kind, rejection.reason, disable=True)
        logger.error(
            "job %s disabled: %s",
            job.name,
            rejection.reason,
            extra={"event": "job_disabled", "job": job.name, "run_id": run.run_id, "kind": rejection.kind},
        )
        return self._result(run, "disabled", error_kind=rejection.kind, message=rejection.reason)

    def _fail(self, run: Run, exc: WorkerError) -> RunResult:
        outcome = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
        message = self._redact(run, str(exc))
        if isinstance(exc, SourceNotFound):
            message = (
                f"not found or no access: table {run.job.table_id} in doc {run.job.doc_id}; "
                f"{message}. Check doc_id and table_id in the config"
            )
        self._write_failure(run, outcome, exc.kind, message)
        if isinstance(exc, SourceNotFound) and self._all_jobs_not_found():
            return self._result(run, outcome, error_kind="api_not_found", message=self._api_not_found())
        log = logger.warning if outcome == "interrupted" else logger.error
        log(
            "job %s %s after %.1f s (%s): %s",
            run.job.name,
            outcome,
            run.elapsed(),
            exc.kind,
            message,
            extra={"event": f"run_{outcome}", "job": run.job.name, "run_id": run.run_id, "kind": exc.kind},
        )
        return self._result(run, outcome, error_kind=exc.kind, message=message)

    def _api_not_found(self) -> str:
        return api_not_found_message(self.options.base_url)

    def _all_jobs_not_found(self) -> bool:
        try:
            with self.db.connection() as conn, conn.transaction():
                jobs = status.relabel_if_all_not_found(conn, self._api_not_found())
        except SinkError:
            return False
        if not jobs:
            return False
        with self._lock:
            first_report = self._api_not_found_logged != tuple(jobs)
            self._api_not_found_logged = tuple(jobs)
        if first_report:
            logger.error(
                "%s (jobs: %s)",
                self._api_not_found(),
                ", ".join(jobs),
                extra={"event": "api_not_found", "jobs": jobs},
            )
        return True

    def _write_failure(
        self, run: Run, outcome: str, kind: str, message: str, *, disable: bool = False
    ) -> None:
        try:
            with self.db.connection() as conn, conn.transaction():
                status.record_failure(
                    conn,
                    run.job.name,
                    outcome=outcome,
                    kind=kind,
                    message=message,
                    duration=run.elapsed(),
                    stats=run.stats,
                    disable_reason=message if disable else None,
                    started_at=run.started_at,
                )
                status.record_run(conn, self._record(run, outcome, error_kind=kind, error=message))
        except SinkError as exc:
            logger.error(
                "job %s: could not record the run's outcome: %s",
                run.job.name,
                exc,
                extra={"event": "status_write_failed", "job": run.job.name, "run_id": run.run_id},
            )

    def _record(self, run: Run, outcome: str, **fields: object) -> status.RunRecord:
        return status.RunRecord(
            run_id=run.run_id,
            job_name=run.job.name,
            instance_id=self.options.instance_id,
            scheduled_for=run.slot,
            started_at=run.started_at,
            outcome=outcome,
            stats=run.stats,
            duration=run.elapsed(),
            **fields,  # type: ignore[arg-type]
        )

    def _redact(self, run: Run, text: str) -> str:
        token = run.job.token.get_secret_value() if run.job.token is not None else ""
        return text.replace(token, "[redacted]") if token and token in text else text

    def _result(self, run: Run, outcome: str, **fields: object) -> RunResult:
        duration = 0.0 if outcome == "skipped" else run.elapsed()
        return RunResult(
            job_name=run.job.name,
            outcome=outcome,
            duration=duration,
            run_id=run.run_id,
            **fields,  # type: ignore[arg-type]
        )

    def _log_success(self, result: RunResult, stats: RequestStats) -> None:
        counts = result.counts
        assert counts is not None
        logger.info(
            "job %s succeeded in %.1f s: %d read, %d inserted, %d updated, %d deleted, "
            "%d total (%d requests, %d retries)%s",
            result.job_name,
            result.duration,
            counts.read,
            counts.inserted,
            counts.updated,
            counts.deleted,
            counts.total,
            stats.requests,
            stats.retries,
            f"; needs attention: {result.attention}" if result.attention else "",
            extra={
                "event": "run_succeeded",
                "job": result.job_name,
                "run_id": result.run_id,
                "rows_read": counts.read,
                "rows_inserted": counts.inserted,
                "rows_updated": counts.updated,
                "rows_deleted": counts.deleted,
                "rows_total": counts.total,
                "requests": stats.requests,
                "retries": stats.retries,
                "duration": result.duration,
            },
        )
