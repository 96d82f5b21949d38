from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import DEFAULT_API_BASE_URL, load_settings

PASSWORD = "canary-PW-4711"
DATABASE_URL = f"postgresql://coda:{PASSWORD}@127.0.0.1:5432/coda"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Remove every variable the settings read, so the developer's shell cannot change results."""
    for name in list(os.environ):
        if name.startswith("CODA_SYNC_") or name == "CODA_API_BASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_load_settings_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL", DATABASE_URL)

    url = load_settings().resolved_database_url()

    assert url is not None
    assert url.get_secret_value() == DATABASE_URL


def test_load_settings_database_url_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url_file = tmp_path / "database-url"
    url_file.write_text(f"  {DATABASE_URL}\n", encoding="utf-8")
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL_FILE", str(url_file))

    url = load_settings().resolved_database_url()

    assert url is not None
    assert url.get_secret_value() == DATABASE_URL


def test_load_settings_no_database_url() -> None:
    assert load_settings().resolved_database_url() is None


def test_load_settings_both_database_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL_FILE", str(tmp_path / "database-url"))

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert "CODA_SYNC_DATABASE_URL " in message
    assert "CODA_SYNC_DATABASE_URL_FILE" in message
    assert "not both" in message
    assert PASSWORD not in message


def test_load_settings_both_sources_label(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL_FILE", str(tmp_path / "database-url"))

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "CODA_SYNC_SETTINGS" not in str(caught.value)


def test_resolved_database_url_file_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url_file = tmp_path / "absent"
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL_FILE", str(url_file))
    settings = load_settings()

    with pytest.raises(ConfigError) as caught:
        settings.resolved_database_url()

    message = str(caught.value)
    assert f"CODA_SYNC_DATABASE_URL_FILE={str(url_file)!r}" in message
    assert "cannot be read" in message


def test_resolved_database_url_file_empty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url_file = tmp_path / "empty"
    url_file.write_text("\n  \n", encoding="utf-8")
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL_FILE", str(url_file))
    settings = load_settings()

    with pytest.raises(ConfigError) as caught:
        settings.resolved_database_url()

    message = str(caught.value)
    assert "CODA_SYNC_DATABASE_URL_FILE" in message
    assert "is empty" in message


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        pytest.param({}, DEFAULT_API_BASE_URL, id="default"),
        pytest.param({"CODA_API_BASE_URL": "http://127.0.0.1:8080/a"}, "http://127.0.0.1:8080/a", id="alias"),
        pytest.param(
            {"CODA_SYNC_API_BASE_URL": "http://127.0.0.1:8081/b"}, "http://127.0.0.1:8081/b", id="prefixed"
        ),
    ],
)
def test_load_settings_api_base_url(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert load_settings().api_base_url == expected


def test_load_settings_invalid_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODA_SYNC_LOG_FORMAT", "xml")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert "CODA_SYNC_LOG_FORMAT" in message
    assert "'text' or 'json'" in message


def test_load_settings_json_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODA_SYNC_LOG_FORMAT", "json")

    assert load_settings().log_format == "json"


def test_load_settings_invalid_parallel_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODA_SYNC_MAX_PARALLEL_JOBS", "0")

    with pytest.raises(ConfigError, match=r"CODA_SYNC_MAX_PARALLEL_JOBS: .*greater than or equal to 1"):
        load_settings()


@pytest.mark.parametrize("render", [pytest.param(repr, id="repr"), pytest.param(str, id="str")])
def test_settings_text_hides_password(
    monkeypatch: pytest.MonkeyPatch, render: Callable[[object], str]
) -> None:
    monkeypatch.setenv("CODA_SYNC_DATABASE_URL", DATABASE_URL)
    settings = load_settings()

    assert PASSWORD not in render(settings)
