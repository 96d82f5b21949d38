"""Changes that a reloaded jobs file (SIGHUP) makes to a running worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker.config import Config

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ReloadPlan:
    """Job names grouped by what the worker does with them after a reload."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    rescheduled: tuple[str, ...]  # schedule or time zone changed
    changed: tuple[str, ...]  # other keys changed; the job's next run uses them
    restart_needed: tuple[str, ...]  # settings a reload cannot apply

    @property
    def empty(self) -> bool:
        """True when the new file changes nothing that the worker uses."""
        return not (self.added or self.removed or self.rescheduled or self.changed or self.restart_needed)


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two versions of the jobs file."""
    before = {job.name: job for job in old.jobs}
    after = {job.name: job for job in new.jobs}
    kept = [name for name in after if name in before]
    rescheduled = [
        name
        for name in kept
        if (before[name].schedule, before[name].timezone) != (after[name].schedule, after[name].timezone)
    ]
    changed = [name for name in kept if before[name] != after[name] and name not in rescheduled]

    # The Coda rate-limit budgets are built once per process and shared by all its runs.
    restart_needed = []
    if old.rate_limit_requests != new.rate_limit_requests:
        restart_needed.append("defaults.rate_limit_requests")
    if old.rate_limit_window != new.rate_limit_window:
        restart_needed.append("defaults.rate_limit_window")
    return ReloadPlan(
        added=tuple(name for name in after if name not in before),
        removed=tuple(name for name in before if name not in after),
        rescheduled=tuple(rescheduled),
        changed=tuple(changed),
        restart_needed=tuple(restart_needed),
    )
