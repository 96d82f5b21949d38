"""Refused tokens that must not disable a job, and a token canary through every failure path."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest
from pydantic import SecretStr

from tests.integration.conftest import DOC, JobFactory, add_rows, fetch_rows, fetch_status
from worker.database import Database
from worker.emulator import CodaEmulator, Fault
from worker.logs import JsonFormatter, SecretRedactor
from worker.source import ClientOptions, CodaClient
from worker.sync import JobRunner, RunnerOptions

UNAUTHORIZED = {"statusCode": 401, "statusMessage": "Unauthorized", "message": "Unauthorized"}


def sleepless_runner(db: Database, coda: CodaEmulator) -> JobRunner:
    """Build a runner whose clients skip the backoff waits, so a whole retry budget takes no time."""

    def factory(token: SecretStr, options: ClientOptions) -> CodaClient:
        options.sleep = lambda seconds: None
        return CodaClient(coda.base_url, token, options=options)

    options = RunnerOptions(base_url=coda.base_url, timeout=5.0, connect_timeout=2.0, max_retry_time=300.0)
    return JobRunner(db, options, client_factory=factory)


def new_canary(coda: CodaEmulator) -> str:
    canary = "canary-" + secrets.token_hex(8)
    coda.add_token(canary, user="alice@example.test", scope=None)
    return canary


def stored_texts(db: Database, job_name: str) -> list[str]:
    """Return every text column of the job's status and history rows."""
    with db.connection() as conn:
        texts = [
            str(value)
            for row in conn.execute(
                "SELECT to_jsonb(s)::text FROM coda_sync.job_status s WHERE job_name = %s", (job_name,)
            ).fetchall()
            for value in row
        ]
        texts += [
            str(row[0])
            for row in conn.execute(
                "SELECT to_jsonb(r)::text FROM coda_sync.job_runs r WHERE job_name = %s", (job_name,)
            ).fetchall()
        ]
    return texts


@pytest.mark.parametrize(
    ("status_code", "body", "content_type"),
    [
        (401, "<html><body>Sign in required</body></html>", "text/html"),
        (403, "", "text/plain"),
        (401, {"error": "unauthorized"}, None),
    ],
    ids=["html-401", "empty-403", "json-without-message"],
)
def test_refusal_without_coda_body_keeps_job(
    db: Database,
    coda: CodaEmulator,
    runner: JobRunner,
    make_job: JobFactory,
    status_code: int,
    body: Any,
    content_type: str | None,
) -> None:
    coda.row_page_cap = 1
    add_rows(coda, "grid-T1", 2)
    runner.run(make_job())
    fault = Fault(
        endpoint="listRows", when_page_token=True, status=status_code, body=body, content_type=content_type
    )
    coda.inject(fault)

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 2


def test_whoami_refusal_alone_keeps_job(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    coda.inject(Fault(endpoint="whoami", status=401, body=UNAUTHORIZED, times=0))

    result = runner.run(make_job())

    assert result.outcome == "succeeded"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 2


def test_refusal_of_one_job_leaves_other(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    add_rows(coda, "grid-T2", 2)
    coda.inject(
        Fault(endpoint=r"/tables/grid-T2/columns", status=403, body=UNAUTHORIZED | {"statusCode": 403})
    )

    refused = runner.run(make_job("stock", table_id="grid-T2"))
    other = runner.run(make_job("tasks"))

    assert refused.outcome == "disabled"
    assert other.outcome == "succeeded"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert fetch_status(db, "stock")["enabled"] is False


ECHO_PATHS = [
    pytest.param(400, "json", "bad_request", id="400"),
    pytest.param(404, "json", "not_found", id="404"),
    pytest.param(418, "json", "bad_response", id="418"),
    pytest.param(500, "html", "server_error", id="500-html"),
    pytest.param(200, "html", "bad_response", id="200-html"),
    pytest.param(401, "html", "bad_response", id="401-html"),
]


def inject_echo(coda: CodaEmulator, canary: str, status_code: int, kind: str) -> None:
    """Make listRows return a body that quotes the request's Authorization header."""
    quoted = f"request header Authorization: Bearer {canary}"
    if kind == "json":
        body: Any = {"statusCode": status_code, "statusMessage": "Error", "message": quoted}
        fault = Fault(endpoint="listRows", status=status_code, body=body, times=0)
    else:
        body = f"<html><body><pre>{quoted}</pre></body></html>"
        fault = Fault(endpoint="listRows", status=status_code, body=body, content_type="text/html", times=0)
    coda.inject(fault)


@pytest.mark.parametrize(("status_code", "kind", "error_kind"), ECHO_PATHS)
def test_token_echo_never_stored(
    db: Database, coda: CodaEmulator, make_job: JobFactory, status_code: int, kind: str, error_kind: str
) -> None:
    canary = new_canary(coda)
    add_rows(coda, "grid-T1", 1)
    inject_echo(coda, canary, status_code, kind)

    result = sleepless_runner(db, coda).run(make_job(token=canary))

    assert result.error_kind == error_kind
    assert canary not in (result.message or "")
    assert not [text for text in stored_texts(db, "tasks") if canary in text]


def test_token_echo_on_refusal_not_stored(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    canary = new_canary(coda)
    quoted = {"statusCode": 401, "statusMessage": "Unauthorized", "message": f"bad token {canary}"}
    coda.inject(Fault(endpoint="listColumns", status=401, body=quoted))
    coda.inject(Fault(endpoint="whoami", status=401, body=quoted, times=0))

    result = runner.run(make_job(token=canary))

    assert result.outcome == "disabled"
    assert canary not in (result.message or "")
    assert not [text for text in stored_texts(db, "tasks") if canary in text]


@pytest.mark.parametrize(("status_code", "kind", "error_kind"), ECHO_PATHS)
def test_token_echo_redacted_in_logs(
    db: Database,
    coda: CodaEmulator,
    make_job: JobFactory,
    caplog: pytest.LogCaptureFixture,
    status_code: int,
    kind: str,
    error_kind: str,
) -> None:
    # The CLI registers every configured token with the redactor of its log handler. The JSON
    # formatter also writes `extra` fields, which the redactor does not rewrite.
    canary = new_canary(coda)
    SecretRedactor.register(canary)
    add_rows(coda, "grid-T1", 1)
    inject_echo(coda, canary, status_code, kind)
    caplog.set_level(logging.DEBUG)

    result = sleepless_runner(db, coda).run(make_job(token=canary))

    assert result.error_kind == error_kind
    redactor, formatter = SecretRedactor(), JsonFormatter()
    product = [r for r in caplog.records if not r.name.startswith("worker.emulator")]
    assert product, "the run logged nothing"
    lines = [formatter.format(r) for r in product if redactor.filter(r)]
    assert not [line for line in lines if canary in line]


def test_token_non_ascii_fails_run(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # A zero-width space is a common copy-and-paste leftover that str.strip() keeps.
    canary = "canary-" + secrets.token_hex(8) + "\u200b"
    add_rows(coda, "grid-T1", 1)

    result = runner.run(make_job(token=canary))

    assert result.outcome == "failed"
    row = fetch_status(db, "tasks")
    assert row["last_outcome"] == "failed"
    assert row["enabled"] is True
    assert canary not in (result.message or "")
    assert not [text for text in stored_texts(db, "tasks") if canary in text]


def test_table_id_path_syntax_stays_segment(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # An id with URL syntax must stay one path segment and never reach another endpoint.
    result = runner.run(make_job(table_id="../../whoami?x=", doc_id=DOC))

    assert result.outcome == "failed"
    assert result.error_kind == "not_found"
    assert all(
        r.path.startswith(f"/apis/v1/docs/{DOC}/tables/") or r.path.endswith("/whoami") for r in coda.requests
    )
    assert len([r for r in coda.requests if r.path.endswith("/whoami")]) == 1
