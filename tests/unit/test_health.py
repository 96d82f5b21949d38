"""Pure parts of the heartbeat and `coda-sync health`: the instance file and the verdicts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.health import (
    Heartbeat,
    describe_stale_job,
    heartbeat_problem,
    instance_file,
    read_instance_file,
    write_instance_file,
)

STOPPED = datetime(2025, 6, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("heartbeat", "expected"),
    [
        (None, "worker w-1 has no row in coda_sync.workers"),
        (Heartbeat(age=1.0, stopped_at=STOPPED), "worker w-1 stopped at 2025-06-10T12:00:00+00:00"),
        (Heartbeat(age=61.0, stopped_at=None), "the heartbeat of worker w-1 is 61 s old (limit 60 s)"),
        (Heartbeat(age=59.0, stopped_at=None), None),
    ],
    ids=["missing", "stopped", "old", "fresh"],
)
def test_heartbeat_problem_cases(heartbeat: Heartbeat | None, expected: str | None) -> None:
    problem = heartbeat_problem("w-1", heartbeat, max_age=60.0)

    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.startswith(expected)


def test_instance_file_round_trip(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    before = read_instance_file(data_dir)
    path = write_instance_file(data_dir, "host-1-abc")
    write_instance_file(data_dir, "host-2-def")

    assert before is None
    assert path == instance_file(data_dir)
    assert read_instance_file(data_dir) == "host-2-def"
    assert [entry.name for entry in data_dir.iterdir()] == [path.name]


def test_instance_file_empty_reads_as_none(tmp_path: Path) -> None:
    instance_file(tmp_path).write_text("\n", encoding="utf-8")

    assert read_instance_file(tmp_path) is None


def test_describe_stale_job_never_succeeded() -> None:
    line = describe_stale_job({"job_name": "deals", "last_success_at": None, "schedule": "0 * * * * (UTC)"})

    assert line == "stale job deals: last success never, schedule 0 * * * * (UTC)"
