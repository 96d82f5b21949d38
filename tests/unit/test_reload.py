"""What a reloaded jobs file changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from worker.config import Config, Job
from worker.reload import plan_reload


def make_job(name: str, **overrides: object) -> Job:
    fields: dict[str, object] = {
        "name": name,
        "doc_id": "doc1",
        "table_id": "grid-1",
        "token": None,
        "token_problem": None,
        "schedule": "0 * * * *",
        "timezone": "UTC",
        "target_schema": "coda",
        "target_table": name,
        "deletes": "hard",
        "max_delete_fraction": 0.5,
        "allow_mass_delete": False,
        "run_timeout": 1800.0,
    }
    fields.update(overrides)
    return Job(**fields)  # type: ignore[arg-type]


def make_config(*jobs: Job, rate_limit_requests: int = 100) -> Config:
    return Config(
        path=Path("jobs.toml"), jobs=jobs, rate_limit_requests=rate_limit_requests, rate_limit_window=6.0
    )


def test_plan_reload_sorts_changes() -> None:
    old = make_config(make_job("kept"), make_job("gone"), make_job("moved"), make_job("edited"))
    new = make_config(
        make_job("kept"),
        make_job("moved", schedule="*/5 * * * *"),
        make_job("edited", table_id="grid-2"),
        make_job("added"),
    )

    plan = plan_reload(old, new)

    assert plan.added == ("added",)
    assert plan.removed == ("gone",)
    assert plan.rescheduled == ("moved",)
    assert plan.changed == ("edited",)
    assert plan.restart_needed == ()
    assert not plan.empty


def test_plan_reload_time_zone_reschedules() -> None:
    job = make_job("deals")

    plan = plan_reload(make_config(job), make_config(dataclasses.replace(job, timezone="Europe/Berlin")))

    assert plan.rescheduled == ("deals",)
    assert plan.changed == ()


def test_plan_reload_same_file_is_empty() -> None:
    config = make_config(make_job("deals"))

    assert plan_reload(config, config).empty


def test_plan_reload_rate_limit_needs_restart() -> None:
    plan = plan_reload(make_config(), make_config(rate_limit_requests=50))

    assert plan.restart_needed == ("defaults.rate_limit_requests",)
    assert not plan.empty
