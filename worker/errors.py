"""The exception tree of coda-sync.

Every error the worker raises on purpose derives from `WorkerError`::

    WorkerError
    ├── ConfigError            the config file or environment is invalid (fix it, then restart)
    │   └── TokenUnavailable   one job's token could not be read (the other jobs still run)
    ├── SourceError            a request to the Coda API failed
    │   ├── SourceRejected     Coda refused the token: the job is disabled until fixed
    │   ├── SourceNotFound     404 on the job's table: the run fails, the job stays enabled
    │   ├── SourceBadRequest   400 that retrying cannot fix (a client bug or bad setting)
    │   ├── SourceUnavailable  429, 5xx or a network error that outlasted the retries
    │   ├── SourceTimeout      the run's deadline or a request timeout passed
    │   ├── DocTooLarge        the doc passed Coda's API size limit (about 125 MB)
    │   └── BadResponse        the answer was not the JSON the API documents
    ├── SinkError              PostgreSQL failed or went away
    └── RunInterrupted         the worker is shutting down and stopped the run

Each error carries a stable `kind` (stored in ``job_status.last_error_kind``) and a message
that names the job or value involved and says what to do next.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class WorkerError(Exception):
    """Base class of every error that coda-sync raises on purpose."""

    kind = "internal_error"


class ConfigError(WorkerError):
    """The config file or an environment variable is invalid."""

    kind = "config_error"


class TokenUnavailable(ConfigError):
    """A job's token could not be resolved from the environment or a file."""


class SourceError(WorkerError):
    """A request to the Coda API failed."""

    kind = "source_error"

    def __init__(self, message: str, *, status: int | None = None, operation: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.operation = operation


class SourceRejected(SourceError):
    """Coda returned 401 or 403 with a JSON error body for one of the job's own requests."""

    kind = "token_rejected"


class SourceNotFound(SourceError):
    """Coda returned 404 for the job's doc or table."""

    kind = "not_found"


class SourceBadRequest(SourceError):
    """Coda returned 400 for a request that retrying cannot fix."""

    kind = "bad_request"


class SourceUnavailable(SourceError):
    """Rate limits, server errors or network errors outlasted the retries."""

    kind = "unavailable"


class RateLimited(SourceUnavailable):
    """Coda kept answering 429 after every retry."""

    kind = "rate_limited"


class ServerError(SourceUnavailable):
    """Coda kept answering 5xx after every retry."""

    kind = "server_error"


class SourceTimeout(SourceError):
    """A request or the whole run took longer than its deadline."""

    kind = "timeout"


class BadResponse(SourceError):
    """Coda answered with something other than the documented JSON."""

    kind = "bad_response"


class DocTooLarge(SourceError):
    """Coda no longer serves the doc through the API because it passed the API size limit."""

    kind = "doc_too_large"


class SinkError(WorkerError):
    """PostgreSQL failed, refused a statement or went away."""

    kind = "database_error"


class RunInterrupted(WorkerError):
    """The worker is shutting down and stopped the run at a safe point."""

    kind = "interrupted"
