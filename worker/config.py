"""Load and validate the jobs file (TOML) into frozen `Job` values.

Structural problems (bad TOML, unknown keys, an invalid cron expression, duplicate names) raise
`ConfigError` for the whole file. A token that cannot be resolved (an unset `${VAR}`, a missing
`token_file`) only marks its own job: the other jobs still run, and the job's status row names
the missing variable or file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from worker.errors import ConfigError

logger = logging.getLogger(__name__)

JOB_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
IDENTIFIER_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DOC_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
SYSTEM_SCHEMA = "coda_sync"
DEFAULT_RUN_TIMEOUT = 1800.0  # seconds, for schedules of more than about 33 minutes


def validate_cron(expression: str, timezone: str = "UTC") -> str:
    """Check a cron expression the way the scheduler will read it."""
    from worker.cron import cron_trigger

    try:
        cron_trigger(expression, timezone)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    return expression


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return name


def _check_target_schema(value: str) -> str:
    _check_identifier(value)
    if value == SYSTEM_SCHEMA:
        raise ValueError(f"{SYSTEM_SCHEMA!r} is reserved for coda-sync's own tables")
    return value


def _check_identifier(value: str) -> str:
    if not IDENTIFIER_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid PostgreSQL name here; use 1 to 63 lowercase letters, "
            "digits and underscores, starting with a letter or underscore"
        )
    return value


class DefaultsModel(BaseModel):
    """The optional `[defaults]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: str = "0 * * * *"
    timezone: str = "UTC"
    target_schema: str = "coda"
    deletes: Literal["hard", "soft"] = "hard"
    max_delete_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    run_timeout: float | None = Field(default=None, gt=0, description="seconds")
    rate_limit_requests: int = Field(default=100, ge=1)
    rate_limit_window: float = Field(default=6.0, gt=0, description="seconds")

    _timezone = field_validator("timezone")(_check_timezone)
    _schema = field_validator("target_schema")(lambda v: _check_target_schema(v))

    # The time zone does not change whether an expression is valid, so UTC suffices here.
    _schedule = field_validator("schedule")(lambda v: validate_cron(v))


class JobModel(BaseModel):
    """One `[[jobs]]` entry as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    doc_id: str
    table_id: str = Field(min_length=1, max_length=200)
    token: SecretStr | None = None
    token_file: Path | None = None
    schedule: str | None = None
    timezone: str | None = None
    target_schema: str | None = None
    target_table: str | None = None
    deletes: Literal["hard", "soft"] | None = None
    max_delete_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    allow_mass_delete: bool = False
    run_timeout: float | None = Field(default=None, gt=0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not JOB_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"invalid job name {value!r}; use 1 to 63 lowercase letters, digits, '-' and "
                "'_', starting with a letter or digit"
            )
        return value

    @field_validator("doc_id")
    @classmethod
    def _check_doc_id(cls, value: str) -> str:
        if not DOC_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"invalid doc id {value!r}; copy the id after '_d' in the doc's URL "
                "(letters, digits, '-' and '_')"
            )
        return value

    _timezone = field_validator("timezone")(lambda v: v if v is None else _check_timezone(v))
    _schema = field_validator("target_schema")(lambda v: v if v is None else _check_target_schema(v))
    _table = field_validator("target_table")(lambda v: v if v is None else _check_identifier(v))


class ConfigModel(BaseModel):
    """The whole jobs file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: DefaultsModel = DefaultsModel()
    jobs: list[JobModel] = Field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Job:
    """A job after defaults are applied and its token is resolved."""

    name: str
    doc_id: str
    table_id: str
    token: SecretStr | None
    token_problem: str | None
    schedule: str
    timezone: str
    target_schema: str
    target_table: str
    deletes: Literal["hard", "soft"]
    max_delete_fraction: float
    allow_mass_delete: bool
    run_timeout: float

    @property
    def token_fingerprint(self) -> str | None:
        """A short hash that identifies the token without revealing it."""
        if self.token is None:
            return None
        return fingerprint(self.token.get_secret_value())

    @property
    def config_fingerprint(self) -> str:
        """A hash of what decides access: token, doc and table. A change re-enables the job."""
        secret = self.token.get_secret_value() if self.token is not None else ""
        return fingerprint(f"{secret}\0{self.doc_id}\0{self.table_id}")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The validated jobs file."""

    path: Path
    jobs: tuple[Job, ...]
    rate_limit_requests: int
    rate_limit_window: float

    def job(self, name: str) -> Job:
        """Return the job called *name*, or raise `ConfigError` listing the known names."""
        for job in self.jobs:
            if job.name == name:
                return job
        known = ", ".join(job.name for job in self.jobs) or "none"
        raise ConfigError(f"{self.path}: no job named {name!r} (configured jobs: {known})")


def fingerprint(secret: str) -> str:
    """Return the first 12 hex digits of a salted SHA-256, enough to tell tokens apart."""
    return hashlib.sha256(b"coda-sync:" + secret.encode()).hexdigest()[:12]


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve the jobs file at *path*."""
    environ = os.environ if environ is None else environ
    raw = _read_toml(path)
    try:
        model = ConfigModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(path, raw, exc)) from None

    _check_unique(path, model)
    jobs = tuple(_resolve_job(path, model.defaults, entry, environ) for entry in model.jobs)
    return Config(
        path=path,
        jobs=jobs,
        rate_limit_requests=model.defaults.rate_limit_requests,
        rate_limit_window=model.defaults.rate_limit_window,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(path)!r} not found; pass --config PATH or set CODA_SYNC_CONFIG"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _describe_validation_error(path: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        location = error["loc"]
        where = _describe_location(raw, location)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the README's config reference"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{path}: {where}: {message}")
    return "\n".join(lines)


def _describe_location(raw: dict[str, Any], location: tuple[int | str, ...]) -> str:
    if len(location) >= 2 and location[0] == "jobs" and isinstance(location[1], int):
        index = location[1]
        entries = raw.get("jobs")
        name = None
        if isinstance(entries, list) and index < len(entries) and isinstance(entries[index], dict):
            name = entries[index].get("name")
        job = f"job {name!r}" if isinstance(name, str) else f"jobs entry {index + 1}"
        key = ".".join(str(part) for part in location[2:]) or "(entry)"
        return f"{job}, key {key!r}"
    return "key " + repr(".".join(str(part) for part in location))


def _check_unique(path: Path, model: ConfigModel) -> None:
    seen_names: set[str] = set()
    seen_tables: dict[tuple[str, str], str] = {}
    for entry in model.jobs:
        if entry.name in seen_names:
            raise ConfigError(f"{path}: job {entry.name!r} is defined twice; job names must be unique")
        seen_names.add(entry.name)

        target = (
            entry.target_schema or model.defaults.target_schema,
            entry.target_table or default_target_table(entry.name),
        )
        if target in seen_tables:
            raise ConfigError(
                f"{path}: jobs {seen_tables[target]!r} and {entry.name!r} both write to "
                f"{target[0]}.{target[1]}; give one of them another target_table"
            )
        seen_tables[target] = entry.name


def default_target_table(job_name: str) -> str:
    """Return the data table name for a job without `target_table`."""
    table = job_name.replace("-", "_")
    return table if not table[0].isdigit() else f"_{table}"[:63]


def _resolve_job(path: Path, defaults: DefaultsModel, entry: JobModel, environ: Mapping[str, str]) -> Job:
    timezone = entry.timezone if entry.timezone is not None else defaults.timezone
    schedule = entry.schedule if entry.schedule is not None else defaults.schedule
    try:
        validate_cron(schedule, timezone)
    except ValueError as exc:
        raise ConfigError(f"{path}: job {entry.name!r}, key 'schedule': {exc}") from None

    token, problem = _resolve_token(path, entry, environ)
    return Job(
        name=entry.name,
        doc_id=entry.doc_id,
        table_id=entry.table_id,
        token=token,
        token_problem=problem,
        schedule=schedule,
        timezone=timezone,
        target_schema=entry.target_schema or defaults.target_schema,
        target_table=entry.target_table or default_target_table(entry.name),
        deletes=entry.deletes or defaults.deletes,
        max_delete_fraction=(
            entry.max_delete_fraction
            if entry.max_delete_fraction is not None
            else defaults.max_delete_fraction
        ),
        allow_mass_delete=entry.allow_mass_delete,
        run_timeout=_run_timeout(entry.run_timeout or defaults.run_timeout, schedule, timezone),
    )


def _run_timeout(configured: float | None, schedule: str, timezone: str) -> float:
    """Return the run deadline: as configured, else 30 minutes or 90% of the interval.

    A run that could outlast its interval would make the scheduler skip the job's next slot.
    """
    if configured is not None:
        return configured
    from worker.cron import cron_trigger, schedule_interval

    interval = schedule_interval(cron_trigger(schedule, timezone), datetime.now(UTC)).total_seconds()
    return min(DEFAULT_RUN_TIMEOUT, 0.9 * interval)


def _resolve_token(
    path: Path, entry: JobModel, environ: Mapping[str, str]
) -> tuple[SecretStr | None, str | None]:
    where = f"{path}: job {entry.name!r}"
    if entry.token is not None and entry.token_file is not None:
        raise ConfigError(f"{where}: set either 'token' or 'token_file', not both")
    if entry.token is None and entry.token_file is None:
        raise ConfigError(
            f"{where}: key 'token' is missing; set token = \"${{CODA_TOKEN_...}}\" or token_file"
        )

    if entry.token_file is not None:
        return _read_token_file(where, entry.token_file, path.parent)

    assert entry.token is not None
    value = entry.token.get_secret_value().strip()
    reference = ENV_REFERENCE.fullmatch(value)
    if reference is None:
        if "${" in value:
            raise ConfigError(
                f"{where}, key 'token': write an environment reference as the whole value, "
                'like "${CODA_TOKEN_DEALS}"'
            )
        return _non_empty(value, f"{where}, key 'token' is empty")

    variable = reference.group(1)
    if variable not in environ:
        return None, (
            f"environment variable {variable} is not set; export it with the job's Coda API token and restart"
        )
    return _non_empty(environ[variable].strip(), f"environment variable {variable} is empty")


def _read_token_file(where: str, token_file: Path, base: Path) -> tuple[SecretStr | None, str | None]:
    file = token_file if token_file.is_absolute() else base / token_file
    try:
        value = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return None, f"token_file {str(file)!r} cannot be read ({exc.strerror}); check the path"
    return _non_empty(value, f"token_file {str(file)!r} is empty")


def _non_empty(value: str, problem: str) -> tuple[SecretStr | None, str | None]:
    if not value:
        return None, problem
    if not (value.isascii() and value.isprintable()) or " " in value:
        # An HTTP header cannot carry such a token; it usually comes from a copy-paste that
        # picked up an invisible character.
        where = problem.removesuffix(" is empty")
        return None, (
            f"{where} contains spaces, control characters or non-ASCII characters, which a Coda "
            "API token never has; copy the token again"
        )
    return SecretStr(value), None
