"""Process settings read from the environment (the jobs themselves live in the TOML file)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("config/jobs.toml")
DEFAULT_API_BASE_URL = "https://coda.io/apis/v1"


class Settings(BaseSettings):
    """Settings of one worker process; every field comes from a `CODA_SYNC_*` variable."""

    model_config = SettingsConfigDict(env_prefix="CODA_SYNC_", extra="ignore", frozen=True)

    config: Path = DEFAULT_CONFIG_PATH
    database_url: SecretStr | None = None
    database_url_file: Path | None = None
    data_dir: Path = Path(".coda-sync")
    api_base_url: str = Field(
        default=DEFAULT_API_BASE_URL,
        validation_alias=AliasChoices("CODA_API_BASE_URL", "CODA_SYNC_API_BASE_URL"),
    )
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_parallel_jobs: int = Field(default=4, ge=1, le=64)
    request_timeout: float = Field(default=30.0, gt=0, description="seconds")
    connect_timeout: float = Field(default=10.0, gt=0, description="seconds")
    max_retry_time: float = Field(default=300.0, ge=0, description="seconds per request")
    database_give_up: float = Field(default=300.0, gt=0, description="seconds")
    heartbeat_interval: float = Field(default=5.0, gt=0, description="seconds")
    health_max_age: float = Field(default=60.0, gt=0, description="seconds")
    history_days: float = Field(default=30.0, gt=0, description="days")
    shutdown_grace: float = Field(default=6.0, ge=0, le=60, description="seconds")
    # A run's transaction stays open while it waits for the next page, so this must exceed the
    # longest wait for one request: max_retry_time plus one request and one connect timeout.
    idle_in_transaction_timeout: float = Field(default=900.0, gt=0, description="seconds")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            shown = value.rsplit("@", 1)[-1]  # never echo credentials given in the URL
            raise ValueError(
                f"{shown!r} is not an http(s) URL; use Coda's https://coda.io/apis/v1 or your proxy's "
                "equivalent, with the scheme"
            )
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_conninfo(value.get_secret_value(), "the value")
        return value

    @model_validator(mode="after")
    def _one_database_source(self) -> Settings:
        if self.database_url is not None and self.database_url_file is not None:
            raise ValueError("set either CODA_SYNC_DATABASE_URL or CODA_SYNC_DATABASE_URL_FILE, not both")
        return self

    def longest_request_wait(self) -> float:
        """Return the longest a run may wait for one Coda request, retries included, in seconds."""
        return self.max_retry_time + self.request_timeout + self.connect_timeout

    def resolved_database_url(self) -> SecretStr | None:
        """Return the database URL from the variable or its `_FILE` twin, or None."""
        if self.database_url_file is None:
            return self.database_url
        try:
            text = self.database_url_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"CODA_SYNC_DATABASE_URL_FILE={str(self.database_url_file)!r} cannot be read "
                f"({exc.strerror}); check the path"
            ) from None
        if not text:
            raise ConfigError(f"CODA_SYNC_DATABASE_URL_FILE={str(self.database_url_file)!r} is empty")
        try:
            check_conninfo(text, f"the URL in CODA_SYNC_DATABASE_URL_FILE={str(self.database_url_file)!r}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return SecretStr(text)


def check_conninfo(url: str, where: str) -> None:
    """Raise ValueError when *url* is not a libpq URL or DSN; the message never shows it."""
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ValueError(
            f"{where} is not a valid libpq URL or DSN; expected postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    if "@" in str(params.get("host") or ""):
        # libpq splits at the last '@', so part of a password with '@' would become the host
        # name and show up in every connection error.
        raise ValueError(f"{where} has an '@' in its password or user name; percent-encode it as %40")


# Fields whose values may be secrets, so their input never appears in an error message.
SECRET_FIELDS = frozenset({"database_url"})
# Variables with the CODA_SYNC_ prefix that are read elsewhere than in `Settings`.
OTHER_VARIABLES = frozenset({"CODA_SYNC_TEST_DATABASE_URL"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Return the CODA_SYNC_* variables that no setting reads, most likely misspelt."""
    known = {f"CODA_SYNC_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    return sorted(name for name in environ if name.startswith("CODA_SYNC_") and name not in known)


def load_settings(**overrides: object) -> Settings:
    """Build `Settings` from the environment, turning validation errors into `ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems: list[str] = []
        for error in exc.errors(include_url=False):
            message = error["msg"].removeprefix("Value error, ")
            name = ".".join(str(part) for part in error["loc"])
            if name and name not in SECRET_FIELDS and error["type"] != "value_error":
                message += f", got {error.get('input')!r}"
            if not name:
                # A check across several variables names them in its own message.
                problems.append(message)
                continue
            variable = name if name.isupper() else f"CODA_SYNC_{name.upper()}"
            problems.append(f"{variable}: {message}")
        raise ConfigError("invalid environment: " + "; ".join(problems)) from None
