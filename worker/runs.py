"""The values that describe one run: its options, its state while it runs, and its result."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from worker.config import Job
from worker.records import RequestStats
from worker.sink import MergeCounts
from worker.source import CodaClient

logger = logging.getLogger(__name__)


def new_instance_id() -> str:
    """Return an id for this worker process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """Outcome of one run: 'succeeded', 'failed', 'disabled', 'interrupted' or 'skipped'."""

    job_name: str
    outcome: str
    duration: float
    counts: MergeCounts | None = None
    error_kind: str | None = None
    message: str | None = None
    attention: str | None = None
    run_id: str | None = None


@dataclass(kw_only=True)
class RunnerOptions:
    """Settings shared by every run of one worker process."""

    base_url: str
    timeout: float = 30.0  # seconds per request
    connect_timeout: float = 10.0  # seconds
    max_retry_time: float = 300.0  # seconds of backoff one request may use
    cancel: threading.Event = field(default_factory=threading.Event)
    instance_id: str = field(default_factory=new_instance_id)


@dataclass(kw_only=True)
class Run:
    """The state of one run in progress."""

    job: Job
    run_id: str
    slot: datetime | None
    started: float  # monotonic seconds
    started_at: datetime
    client: CodaClient | None = None

    @property
    def stats(self) -> RequestStats | None:
        return self.client.stats if self.client is not None else None

    def elapsed(self) -> float:
        return time.monotonic() - self.started
