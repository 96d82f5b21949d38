"""Tracking of runs in progress and the bounded shutdown steps."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from worker.shutdown import ActiveRuns, application_name, call_with_deadline


def test_active_runs_wait_returns_leftovers() -> None:
    runs = ActiveRuns()
    release = threading.Event()

    def run() -> None:
        with runs.track("deals", None):
            release.wait(5)

    thread = threading.Thread(target=run)
    thread.start()
    while not runs.snapshot():
        time.sleep(0.01)

    left = runs.wait_until_empty(0.1)
    release.set()
    after = runs.wait_until_empty(5)
    thread.join()

    assert [run.job_name for run in left] == ["deals"]
    assert left[0].thread_id == thread.ident
    assert after == []


def test_call_with_deadline_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    with caplog.at_level(logging.ERROR, logger="worker.shutdown"):
        finished = call_with_deadline(lambda: release.wait(5) and None, 0.1, step="a slow step")
    release.set()

    assert finished is False
    assert [record.event for record in caplog.records] == ["shutdown_step_timeout"]  # type: ignore[attr-defined]


def test_call_with_deadline_logs_failure(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="worker.shutdown"):
        finished = call_with_deadline(fail, 1.0, step="a failing step")

    assert finished is False
    assert caplog.records[0].getMessage() == "a failing step failed: boom"


def test_call_with_deadline_success() -> None:
    called = []

    assert call_with_deadline(lambda: called.append(1), 1.0, step="a quick step") is True
    assert called == [1]


def test_application_name_fits_postgres_limit() -> None:
    name = application_name("h" * 80)

    assert len(name) == 63
    assert name.startswith("coda-sync run hhh")
