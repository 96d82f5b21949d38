from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from worker.config import Config, Job, load_config
from worker.errors import ConfigError

CANARY = "canary-SECRET-123"

FULL_CONFIG = """
[defaults]
schedule = "*/30 * * * *"
timezone = "Europe/Berlin"
target_schema = "mirror"
deletes = "soft"
max_delete_fraction = 0.25
run_timeout = 600
rate_limit_requests = 50
rate_limit_window = 10

[[jobs]]
name = "deals"
doc_id = "AbC-123_x"
table_id = "grid-abc"
token = "${CODA_TOKEN_DEALS}"

[[jobs]]
name = "contacts"
doc_id = "Doc2"
table_id = "Contacts table"
token = "literal-token-456"
schedule = "0 3 * * *"
timezone = "UTC"
target_schema = "crm"
target_table = "people"
deletes = "hard"
max_delete_fraction = 0.9
allow_mass_delete = true
run_timeout = 60

[[jobs]]
name = "open-tasks"
doc_id = "Doc3"
table_id = "Tasks"
token_file = "tokens/tasks.token"
"""

ConfigWriter = Callable[[str], Path]


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """Return a builder that writes TOML text to `<tmp>/conf/jobs.toml` and returns the path."""
    folder = tmp_path / "conf"
    folder.mkdir()

    def write(text: str) -> Path:
        path = folder / "jobs.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def job_toml(name: str | None = "deals", **keys: object) -> str:
    """Render one `[[jobs]]` entry with a literal canary token unless *keys* override it.

    A key set to None is left out of the entry.
    """
    values: dict[str, object] = {"name": name, "doc_id": "doc1", "table_id": "grid-1", "token": CANARY}
    values.update(keys)
    lines = ["[[jobs]]"]
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def full_config(write_config: ConfigWriter) -> Config:
    path = write_config(FULL_CONFIG)
    token_file = path.parent / "tokens" / "tasks.token"
    token_file.parent.mkdir()
    token_file.write_text("file-token-789\n", encoding="utf-8")
    return load_config(path, {"CODA_TOKEN_DEALS": "env-token-123"})


# A full file: explicit keys win, [defaults] fills the rest.


@pytest.mark.parametrize(
    ("job_name", "attribute", "expected"),
    [
        pytest.param("deals", "doc_id", "AbC-123_x", id="deals-doc_id"),
        pytest.param("deals", "table_id", "grid-abc", id="deals-table_id"),
        pytest.param("deals", "schedule", "*/30 * * * *", id="deals-schedule-from-defaults"),
        pytest.param("deals", "timezone", "Europe/Berlin", id="deals-timezone-from-defaults"),
        pytest.param("deals", "target_schema", "mirror", id="deals-schema-from-defaults"),
        pytest.param("deals", "target_table", "deals", id="deals-table-from-name"),
        pytest.param("deals", "deletes", "soft", id="deals-deletes-from-defaults"),
        pytest.param("deals", "max_delete_fraction", 0.25, id="deals-fraction-from-defaults"),
        pytest.param("deals", "allow_mass_delete", False, id="deals-mass-delete-off"),
        pytest.param("deals", "run_timeout", 600.0, id="deals-timeout-from-defaults"),
        pytest.param("contacts", "schedule", "0 3 * * *", id="contacts-schedule"),
        pytest.param("contacts", "timezone", "UTC", id="contacts-timezone"),
        pytest.param("contacts", "target_schema", "crm", id="contacts-schema"),
        pytest.param("contacts", "target_table", "people", id="contacts-table"),
        pytest.param("contacts", "deletes", "hard", id="contacts-deletes"),
        pytest.param("contacts", "max_delete_fraction", 0.9, id="contacts-fraction"),
        pytest.param("contacts", "allow_mass_delete", True, id="contacts-mass-delete"),
        pytest.param("contacts", "run_timeout", 60.0, id="contacts-timeout"),
        pytest.param("open-tasks", "target_table", "open_tasks", id="tasks-table-dash-to-underscore"),
    ],
)
def test_load_config_full_file_values(
    full_config: Config, job_name: str, attribute: str, expected: object
) -> None:
    assert getattr(full_config.job(job_name), attribute) == expected


def test_load_config_keeps_job_order(full_config: Config) -> None:
    assert [job.name for job in full_config.jobs] == ["deals", "contacts", "open-tasks"]


def test_load_config_rate_limit_from_defaults(full_config: Config) -> None:
    assert (full_config.rate_limit_requests, full_config.rate_limit_window) == (50, 10.0)


@pytest.mark.parametrize(
    ("job_name", "expected"),
    [
        pytest.param("deals", "env-token-123", id="environment"),
        pytest.param("contacts", "literal-token-456", id="literal"),
        pytest.param("open-tasks", "file-token-789", id="token-file"),
    ],
)
def test_load_config_full_file_tokens(full_config: Config, job_name: str, expected: str) -> None:
    token = full_config.job(job_name).token

    assert token is not None
    assert token.get_secret_value() == expected


# Built-in defaults when the file has no [defaults] table.


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        pytest.param("schedule", "0 * * * *", id="schedule-hourly"),
        pytest.param("timezone", "UTC", id="timezone-utc"),
        pytest.param("target_schema", "coda", id="schema-coda"),
        pytest.param("target_table", "my_deals", id="table-from-name"),
        pytest.param("deletes", "hard", id="deletes-hard"),
        pytest.param("max_delete_fraction", 0.5, id="fraction-half"),
        pytest.param("allow_mass_delete", False, id="mass-delete-off"),
        pytest.param("run_timeout", 1800.0, id="timeout-30-min"),
    ],
)
def test_load_config_builtin_defaults(write_config: ConfigWriter, attribute: str, expected: object) -> None:
    config = load_config(write_config(job_toml("my-deals")), {})

    assert getattr(config.job("my-deals"), attribute) == expected


def test_load_config_builtin_rate_limit(write_config: ConfigWriter) -> None:
    config = load_config(write_config(job_toml()), {})

    assert (config.rate_limit_requests, config.rate_limit_window) == (100, 6.0)


def test_load_config_table_for_digit_name(write_config: ConfigWriter) -> None:
    config = load_config(write_config(job_toml("2024-deals")), {})

    assert config.job("2024-deals").target_table == "_2024_deals"


def test_load_config_no_jobs(write_config: ConfigWriter) -> None:
    assert load_config(write_config("[defaults]\n"), {}).jobs == ()


# Token resolution.


def test_load_config_token_from_environ(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(token="${CODA_TOKEN_DEALS}"))
    job = load_config(path, {"CODA_TOKEN_DEALS": "  env-token  \n"}).job("deals")

    assert job.token == SecretStr("env-token")
    assert job.token_problem is None


def test_load_config_literal_token(write_config: ConfigWriter) -> None:
    job = load_config(write_config(job_toml(token=CANARY)), {}).job("deals")

    assert job.token == SecretStr(CANARY)
    assert job.token_problem is None


def test_load_config_token_file_relative(
    write_config: ConfigWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(job_toml(token=None, token_file="secret/deals.token"))
    (path.parent / "secret").mkdir()
    (path.parent / "secret" / "deals.token").write_text(f"{CANARY}\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    job = load_config(path, {}).job("deals")

    assert job.token == SecretStr(CANARY)
    assert job.token_problem is None


def test_load_config_token_file_absolute(write_config: ConfigWriter, tmp_path: Path) -> None:
    token_file = tmp_path / "absolute.token"
    token_file.write_text(CANARY, encoding="utf-8")

    job = load_config(write_config(job_toml(token=None, token_file=str(token_file))), {}).job("deals")

    assert job.token == SecretStr(CANARY)


def test_load_config_token_file_missing(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(token=None, token_file="missing.token"))

    job = load_config(path, {}).job("deals")

    assert job.token is None
    assert job.token_problem is not None
    assert str(path.parent / "missing.token") in job.token_problem
    assert "cannot be read" in job.token_problem


def test_load_config_token_file_empty(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(token=None, token_file="empty.token"))
    (path.parent / "empty.token").write_text(" \n", encoding="utf-8")

    job = load_config(path, {}).job("deals")

    assert job.token is None
    assert job.token_problem is not None
    assert "empty.token" in job.token_problem
    assert "is empty" in job.token_problem


def test_load_config_unset_variable(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(token="${CODA_TOKEN_MISSING}") + job_toml("other", table_id="grid-2"))

    job = load_config(path, {}).job("deals")

    assert job.token is None
    assert job.token_problem is not None
    assert "CODA_TOKEN_MISSING" in job.token_problem
    assert "not set" in job.token_problem


def test_load_config_unset_variable_keeps_others(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(token="${CODA_TOKEN_MISSING}") + job_toml("other", table_id="grid-2"))

    other = load_config(path, {}).job("other")

    assert other.token == SecretStr(CANARY)
    assert other.token_problem is None


def test_load_config_empty_variable(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(token="${CODA_TOKEN_DEALS}"))

    job = load_config(path, {"CODA_TOKEN_DEALS": "  "}).job("deals")

    assert job.token is None
    assert job.token_problem == "environment variable CODA_TOKEN_DEALS is empty"


# Config errors: each names the file, the job, the key and what is expected.

BAD_TOML = f'[[jobs]]\nname = "deals"\ntoken = "{CANARY}\n'

JOB_ERROR_CASES = [
    pytest.param(job_toml(tokn="x"), "deals", "tokn", "unknown key", id="unknown-key"),
    pytest.param(job_toml(doc_id=None), "deals", "doc_id", "required key is missing", id="missing-doc-id"),
    pytest.param(
        job_toml("Deals Table"), "Deals Table", "name", "lowercase letters", id="name-capitals-space"
    ),
    pytest.param(job_toml(doc_id="doc/1"), "deals", "doc_id", "invalid doc id", id="bad-doc-id"),
    pytest.param(
        job_toml(schedule="0 0 0 * * * *"), "deals", "schedule", "expected 5 fields", id="cron-7-fields"
    ),
    pytest.param(
        job_toml(schedule="every hour please"), "deals", "schedule", "expected 5 fields", id="cron-words"
    ),
    pytest.param(
        job_toml(schedule="a b c d e"), "deals", "schedule", "invalid cron expression", id="cron-nonsense"
    ),
    pytest.param(
        job_toml(schedule="61 * * * *"), "deals", "schedule", "invalid cron expression", id="cron-minute-61"
    ),
    pytest.param(job_toml(schedule="0 9 * * 8"), "deals", "schedule", "invalid weekday", id="cron-weekday-8"),
    pytest.param(job_toml(timezone="Mars/Olympus"), "deals", "timezone", "IANA name", id="unknown-timezone"),
    pytest.param(
        job_toml(target_table="Deals-Table"), "deals", "target_table", "lowercase letters", id="bad-table"
    ),
    pytest.param(
        job_toml(target_schema="1schema"), "deals", "target_schema", "lowercase letters", id="bad-schema"
    ),
    pytest.param(
        job_toml(token=CANARY, token_file="deals.token"), "deals", "token_file", "not both", id="token-twice"
    ),
    pytest.param(job_toml(token=None), "deals", "token", "is missing", id="token-missing"),
    pytest.param(
        job_toml(token=f"Bearer ${{CODA_TOKEN}} {CANARY}"),
        "deals",
        "token",
        "environment reference as the whole value",
        id="reference-inside-string",
    ),
    pytest.param(
        job_toml(max_delete_fraction=1.5),
        "deals",
        "max_delete_fraction",
        "less than or equal to 1",
        id="fraction-above-one",
    ),
]


@pytest.mark.parametrize(("text", "job_name", "key", "expected"), JOB_ERROR_CASES)
def test_load_config_job_error_message(
    write_config: ConfigWriter, text: str, job_name: str, key: str, expected: str
) -> None:
    path = write_config(text)

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    message = str(caught.value)
    assert str(path) in message
    assert f"job {job_name!r}" in message
    assert key in message
    assert expected in message


def test_load_config_job_error_unnamed_entry(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(name=None))

    with pytest.raises(ConfigError, match=r"jobs entry 1, key 'name': required key is missing"):
        load_config(path, {})


def test_load_config_reserved_default_schema(write_config: ConfigWriter) -> None:
    path = write_config('[defaults]\ntarget_schema = "coda_sync"\n' + job_toml())

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    message = str(caught.value)
    assert str(path) in message
    assert "key 'defaults.target_schema'" in message
    assert "reserved" in message


def test_load_config_reserved_job_schema(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(target_schema="coda_sync"))

    with pytest.raises(ConfigError, match=r"job 'deals', key 'target_schema'.*reserved"):
        load_config(path, {})


def test_load_config_bad_default_schedule(write_config: ConfigWriter) -> None:
    path = write_config('[defaults]\nschedule = "every day"\n')

    with pytest.raises(ConfigError, match=r"key 'defaults.schedule'"):
        load_config(path, {})


def test_load_config_empty_schedule(write_config: ConfigWriter) -> None:
    path = write_config(job_toml(schedule=""))

    with pytest.raises(ConfigError, match=r"job 'deals', key 'schedule'"):
        load_config(path, {})


def test_load_config_six_field_schedule(write_config: ConfigWriter) -> None:
    config = load_config(write_config(job_toml(schedule="30 0 * * * *")), {})

    assert config.job("deals").schedule == "30 0 * * * *"


def test_load_config_duplicate_names(write_config: ConfigWriter) -> None:
    path = write_config(job_toml() + job_toml(table_id="grid-2", target_table="deals_2"))

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    message = str(caught.value)
    assert str(path) in message
    assert "job 'deals' is defined twice" in message
    assert "names must be unique" in message


def test_load_config_shared_target_table(write_config: ConfigWriter) -> None:
    path = write_config(job_toml() + job_toml("copy", target_table="deals"))

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    message = str(caught.value)
    assert str(path) in message
    assert "jobs 'deals' and 'copy' both write to coda.deals" in message
    assert "target_table" in message


def test_load_config_same_table_other_schema(write_config: ConfigWriter) -> None:
    path = write_config(job_toml() + job_toml("copy", target_table="deals", target_schema="archive"))

    assert load_config(path, {}).job("copy").target_schema == "archive"


def test_load_config_invalid_toml(write_config: ConfigWriter) -> None:
    path = write_config(BAD_TOML)

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    message = str(caught.value)
    assert str(path) in message
    assert "invalid TOML" in message


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    message = str(caught.value)
    assert str(path) in message
    assert "not found" in message
    assert "--config" in message


def test_config_job_unknown_name(full_config: Config) -> None:
    with pytest.raises(ConfigError) as caught:
        full_config.job("nope")

    message = str(caught.value)
    assert "no job named 'nope'" in message
    assert "deals, contacts, open-tasks" in message


# The token never leaks into errors or reprs.


@pytest.mark.parametrize(
    "text",
    [*(case.values[0] for case in JOB_ERROR_CASES), BAD_TOML],
    ids=[*(str(case.id) for case in JOB_ERROR_CASES), "invalid-toml"],
)
def test_load_config_error_hides_token(write_config: ConfigWriter, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(text), {})

    assert CANARY not in str(caught.value)


def test_load_config_unique_error_hides_token(write_config: ConfigWriter) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(job_toml() + job_toml()), {})

    assert CANARY not in str(caught.value)


@pytest.mark.parametrize(
    "token",
    [pytest.param(CANARY, id="literal"), pytest.param("${CODA_TOKEN_DEALS}", id="environment")],
)
def test_config_repr_hides_token(write_config: ConfigWriter, token: str) -> None:
    config = load_config(write_config(job_toml(token=token)), {"CODA_TOKEN_DEALS": CANARY})

    assert CANARY not in repr(config)
    assert CANARY not in repr(config.job("deals"))


# Fingerprints.


@pytest.fixture
def canary_job(write_config: ConfigWriter) -> Job:
    return load_config(write_config(job_toml()), {}).job("deals")


def test_token_fingerprint_is_12_hex(canary_job: Job) -> None:
    assert canary_job.token_fingerprint is not None
    assert re.fullmatch(r"[0-9a-f]{12}", canary_job.token_fingerprint)


def test_token_fingerprint_hides_token(canary_job: Job) -> None:
    assert canary_job.token_fingerprint is not None
    assert CANARY not in canary_job.token_fingerprint


def test_token_fingerprint_stable(write_config: ConfigWriter, canary_job: Job) -> None:
    reloaded = load_config(write_config(job_toml(schedule="5 * * * *")), {}).job("deals")

    assert reloaded.token_fingerprint == canary_job.token_fingerprint


def test_token_fingerprint_differs_per_token(canary_job: Job) -> None:
    other = dataclasses.replace(canary_job, token=SecretStr("canary-SECRET-124"))

    assert other.token_fingerprint != canary_job.token_fingerprint


def test_token_fingerprint_none_without_token(write_config: ConfigWriter) -> None:
    job = load_config(write_config(job_toml(token="${UNSET}")), {}).job("deals")

    assert job.token_fingerprint is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("token", SecretStr("canary-SECRET-124"), id="token"),
        pytest.param("token", None, id="token-unresolved"),
        pytest.param("doc_id", "doc2", id="doc"),
        pytest.param("table_id", "grid-2", id="table"),
    ],
)
def test_config_fingerprint_changes(canary_job: Job, field: str, value: object) -> None:
    changes: dict[str, Any] = {field: value}
    changed = dataclasses.replace(canary_job, **changes)

    assert changed.config_fingerprint != canary_job.config_fingerprint


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("schedule", "*/5 * * * *", id="schedule"),
        pytest.param("timezone", "Europe/Berlin", id="timezone"),
        pytest.param("target_table", "renamed", id="target-table"),
    ],
)
def test_config_fingerprint_ignores(canary_job: Job, field: str, value: object) -> None:
    changes: dict[str, Any] = {field: value}
    changed = dataclasses.replace(canary_job, **changes)

    assert changed.config_fingerprint == canary_job.config_fingerprint


def test_config_fingerprint_hides_token(canary_job: Job) -> None:
    assert CANARY not in canary_job.config_fingerprint
