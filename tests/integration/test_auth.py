"""Refused tokens: which responses disable a job, how the reason is explained, and what stays."""

from __future__ import annotations

import pytest

from tests.integration.conftest import DOC, JobFactory, add_rows, fetch_rows, fetch_status
from worker import status
from worker.database import Database
from worker.emulator import CodaEmulator, Fault
from worker.sync import JobRunner

TOKEN_T1 = "tok-scoped-T1-0123"
TOKEN_DOC = "tok-doc-scoped-0123"
UNAUTHORIZED = {"statusCode": 401, "statusMessage": "Unauthorized", "message": "Unauthorized"}


def table_requests(coda: CodaEmulator, table_id: str) -> list[object]:
    return [r for r in coda.requests if f"/tables/{table_id}" in r.path]


def test_scoped_token_works_without_listing_docs(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    # Restricted tokens get 401 from /docs; a worker that probes /docs first breaks on them.
    coda.add_token(TOKEN_DOC, user="alice@example.test", scope=("doc", DOC))
    add_rows(coda, "grid-T1", 2)

    result = runner.run(make_job(token=TOKEN_DOC))

    assert result.outcome == "succeeded"
    assert not [r for r in coda.requests if r.path.rstrip("/").endswith("/docs")]
    assert not [r for r in coda.requests if r.path.endswith(f"/docs/{DOC}")]
    assert fetch_status(db, "tasks")["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 2


def test_out_of_scope_table_disables_only_its_job(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T1", 2)
    add_rows(coda, "grid-T2", 3)
    runner.run(make_job("stock", table_id="grid-T2"))  # rows stored earlier with a wider token
    coda.add_token(TOKEN_T1, user="bob@example.test", scope=("table", DOC, "grid-T1"))
    coda.clear_requests()

    t2 = runner.run(make_job("stock", table_id="grid-T2", token=TOKEN_T1))
    t1 = runner.run(make_job("tasks", token=TOKEN_T1))

    assert t2.outcome == "disabled"
    assert len(table_requests(coda, "grid-T2")) == 1  # no retry, no backoff
    stock = fetch_status(db, "stock")
    assert stock["enabled"] is False
    assert stock["last_outcome"] == "disabled"
    assert stock["last_error_kind"] == "token_out_of_scope"
    assert stock["disabled_at"] is not None
    assert stock["disabled_reason"].startswith("scope: 403 on ")
    assert "grid-T2" in stock["disabled_reason"]
    assert "coda-sync enable stock" in stock["disabled_reason"]
    assert len(fetch_rows(db, "stock")) == 3
    assert t1.outcome == "succeeded"
    assert fetch_status(db, "tasks")["enabled"] is True
    assert len(fetch_rows(db, "tasks")) == 2


def test_not_found_fails_without_disabling(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    add_rows(coda, "grid-T2", 2)
    runner.run(make_job("stock", table_id="grid-T2"))
    coda.inject(
        Fault(
            endpoint="any",
            status=404,
            times=0,
            body={"statusCode": 404, "statusMessage": "Not Found", "message": "Not Found"},
        )
    )

    result = runner.run(make_job("stock", table_id="grid-T2"))

    row = fetch_status(db, "stock")
    assert result.outcome == "failed"
    assert row["enabled"] is True
    assert row["needs_attention"] is True
    assert row["last_error_kind"] == "not_found"
    assert "cannot see" in row["last_error"]
    assert len(fetch_rows(db, "stock")) == 2


def test_token_revoked_mid_run_keeps_rows(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.row_page_cap = 2
    add_rows(coda, "grid-T1", 3)
    runner.run(make_job())
    coda.update_row(DOC, "grid-T1", "i-r3", {"c-qty": 70})
    coda.inject(Fault(endpoint="listRows", when_page_token=True, status=401, body=UNAUTHORIZED))
    coda.inject(Fault(endpoint="whoami", status=401, body=UNAUTHORIZED))
    coda.clear_requests()

    result = runner.run(make_job())

    assert result.outcome == "disabled"
    assert len([r for r in coda.requests if r.status == 401 and r.path.endswith("/rows")]) == 1
    row = fetch_status(db, "tasks")
    assert row["enabled"] is False
    assert row["last_error_kind"] == "token_invalid"
    assert row["disabled_reason"].startswith("auth: 401 on rows of grid-T1")
    rows = fetch_rows(db, "tasks")
    assert sorted(rows) == ["i-r1", "i-r2", "i-r3"]
    assert rows["i-r3"]["values"]["c-qty"] == 7  # type: ignore[index]


def test_revoked_token_reason_says_revoked(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.add_token("tok-gone-0123456", user="carol@example.test", scope=None)
    coda.revoke_token("tok-gone-0123456")

    result = runner.run(make_job(token="tok-gone-0123456"))

    assert result.outcome == "disabled"
    assert result.error_kind == "token_invalid"
    assert "revoked" in (result.message or "")


def test_unrestricted_token_without_access_explained(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.inject(
        Fault(
            endpoint="getTable",
            status=403,
            body={"statusCode": 403, "statusMessage": "Forbidden", "message": "Forbidden"},
        )
    )

    result = runner.run(make_job())

    assert result.outcome == "disabled"
    assert result.error_kind == "no_access"
    assert "alice@example.test" in (result.message or "")


@pytest.mark.parametrize("legacy_401", [False, True], ids=["403", "legacy-401"])
def test_scope_error_detected_in_both_modes(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory, legacy_401: bool
) -> None:
    coda.legacy_401 = legacy_401
    coda.add_token(TOKEN_T1, user="bob@example.test", scope=("table", DOC, "grid-T1"))

    result = runner.run(make_job("stock", table_id="grid-T2", token=TOKEN_T1))

    assert result.outcome == "disabled"
    assert result.error_kind == "token_out_of_scope"


def test_html_403_does_not_disable(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.inject(
        Fault(
            endpoint="getTable",
            status=403,
            body="<html><body>Access denied</body></html>",
            content_type="text/html",
        )
    )

    result = runner.run(make_job())

    assert result.outcome == "failed"
    assert result.error_kind == "bad_response"
    assert fetch_status(db, "tasks")["enabled"] is True


def test_disabled_job_is_skipped_until_enabled(
    db: Database, coda: CodaEmulator, runner: JobRunner, make_job: JobFactory
) -> None:
    coda.add_token(TOKEN_T1, user="bob@example.test", scope=("table", DOC, "grid-T1"))
    job = make_job("stock", table_id="grid-T2", token=TOKEN_T1)
    runner.run(job)
    coda.clear_requests()

    skipped = runner.run(job)
    with db.connection() as conn:
        enabled = status.enable(conn, "stock", by="coda-sync enable")

    assert skipped.outcome == "skipped"
    assert "coda-sync enable stock" in (skipped.message or "")
    assert coda.requests == []
    assert enabled is True
    assert fetch_status(db, "stock")["reenabled_by"] == "coda-sync enable"


def test_every_job_404_reports_base_url(db: Database, coda: CodaEmulator, make_job: JobFactory) -> None:
    # A retired API path (like the old v1beta1) returns 404 for every table at once.
    from worker.sync import RunnerOptions

    wrong_base = coda.base_url.replace("/apis/v1", "/apis/v1beta1")
    runner = JobRunner(db, RunnerOptions(base_url=wrong_base, timeout=5.0, max_retry_time=1.0))
    with db.connection() as conn:
        status.register_jobs(conn, [make_job("tasks"), make_job("stock", table_id="grid-T2")])

    first = runner.run(make_job("tasks"))
    second = runner.run(make_job("stock", table_id="grid-T2"))

    assert first.error_kind == "not_found"
    assert second.error_kind == "api_not_found"
    assert "CODA_API_BASE_URL" in (second.message or "")
    for name in ("tasks", "stock"):
        row = fetch_status(db, name)
        assert row["last_error_kind"] == "api_not_found"
        assert row["enabled"] is True
