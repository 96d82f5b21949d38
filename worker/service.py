"""The `coda-sync run` process: signals, the main loop, config reloads and the exit code.

Signal handlers only set fields of `Signals`, and the main thread polls them every
`POLL_INTERVAL`. A handler that took a threading lock could deadlock, because it runs in the
main thread, which may hold that same lock at that moment.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from worker.config import Config
from worker.database import SessionTimeouts
from worker.errors import WorkerError
from worker.scheduler import Worker
from worker.settings import Settings
from worker.shutdown import RunDatabase

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # seconds between two looks at signals and the heartbeat age
EXIT_OK = 0
EXIT_FAILED = 1
RUN_POOL_OPEN_TIMEOUT = 10.0  # seconds


@dataclass
class Signals:
    """Requests from the signal handlers to the main thread."""

    stop: int | None = None  # the number of the first SIGTERM or SIGINT
    reload: bool = False


def open_run_database(url: str, settings: Settings, instance_id: str) -> RunDatabase:
    """Open the pool that runs use, with the configured idle-in-transaction timeout."""
    idle = settings.idle_in_transaction_timeout
    if idle < settings.longest_request_wait():
        logger.warning(
            "CODA_SYNC_IDLE_IN_TRANSACTION_TIMEOUT=%g s is shorter than the longest wait for one "
            "Coda request (%g s: max retry time plus request and connect timeouts), so PostgreSQL "
            "may end a run that waits on Coda",
            idle,
            settings.longest_request_wait(),
            extra={"event": "settings_warning"},
        )
    run_db = RunDatabase(
        url,
        instance_id=instance_id,
        max_size=settings.max_parallel_jobs + 1,
        timeouts=SessionTimeouts(idle_in_transaction=idle),
    )
    run_db.open(timeout=RUN_POOL_OPEN_TIMEOUT)
    return run_db


def serve(worker: Worker, *, reload: Callable[[], Config]) -> int:
    """Run *worker* until a signal or a database outage stops it; return the exit code.

    When runs outlive the shutdown grace period, this exits the process itself with
    `os._exit`, since the interpreter would otherwise wait for their threads.
    """
    signals = install_handlers()
    worker.start()
    exit_code = watch(worker, signals, reload)
    if not worker.stop():
        flush_logs()
        os._exit(exit_code)
    return exit_code


def install_handlers() -> Signals:
    """Route SIGTERM and SIGINT to a stop, a second one to an immediate exit, SIGHUP to a reload."""
    signals = Signals()

    def handle(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            signals.reload = True
            return
        if signals.stop is not None:
            # Logging takes a lock the interrupted main thread may hold, so write directly.
            os.write(2, b"coda-sync: second signal, exiting at once\n")
            os._exit(EXIT_FAILED)
        signals.stop = signum

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, handle)
    return signals


def watch(worker: Worker, signals: Signals, reload: Callable[[], Config]) -> int:
    """Wait for a stop signal or a database outage, reloading on SIGHUP; return the exit code."""
    give_up = worker.settings.database_give_up
    while True:
        if signals.stop is not None:
            logger.info(
                "received %s, stopping",
                signal.Signals(signals.stop).name,
                extra={"event": "worker_stopping", "instance_id": worker.instance_id},
            )
            return EXIT_OK
        if signals.reload:
            signals.reload = False
            reload_config(worker, reload)
        silent = worker.seconds_since_beat()
        if silent > give_up:
            logger.error(
                "no heartbeat reached PostgreSQL for %.0f s (CODA_SYNC_DATABASE_GIVE_UP=%g s); "
                "exiting so that the restart policy starts a fresh worker",
                silent,
                give_up,
                extra={"event": "worker_giving_up", "instance_id": worker.instance_id},
            )
            return EXIT_FAILED
        time.sleep(POLL_INTERVAL)


def reload_config(worker: Worker, load: Callable[[], Config]) -> None:
    """Apply a new version of the jobs file, or keep the running one when it is invalid."""
    try:
        config = load()
        plan = worker.reload(config)
    except WorkerError as exc:
        logger.error(
            "config reload failed; still running the previous config: %s",
            exc,
            extra={"event": "config_reload_failed"},
        )
        return

    logger.info(
        "config reloaded from %s: %d jobs; added %s, removed %s, rescheduled %s, changed %s",
        config.path,
        len(config.jobs),
        list(plan.added),
        list(plan.removed),
        list(plan.rescheduled),
        list(plan.changed),
        extra={
            "event": "config_reloaded",
            "jobs": len(config.jobs),
            "added": list(plan.added),
            "removed": list(plan.removed),
            "rescheduled": list(plan.rescheduled),
            "changed": list(plan.changed),
        },
    )
    if plan.restart_needed:
        logger.warning(
            "restart the worker to apply %s; a reload keeps the previous values",
            ", ".join(plan.restart_needed),
            extra={"event": "restart_needed", "settings": list(plan.restart_needed)},
        )


def flush_logs() -> None:
    """Flush every log handler and the standard streams before an `os._exit`."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
