"""Shared fixtures: a real PostgreSQL server and a fresh database per test.

Set `CODA_SYNC_TEST_DATABASE_URL` to a superuser URL of a PostgreSQL you own to run the suite
against it; otherwise one embedded PostgreSQL starts for the whole session in a temporary
folder and is deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from worker.database import Database, open_database

TEST_DATABASE_URL_VARIABLE = "CODA_SYNC_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A libpq URL of a PostgreSQL server on which tests may create databases."""
    external = os.environ.get(TEST_DATABASE_URL_VARIABLE)
    if external:
        yield external
        return

    from worker.embedded import start_embedded, stop_embedded

    folder = Path(tempfile.mkdtemp(prefix="coda-sync-test-pg-"))
    try:
        yield start_embedded(folder)
    finally:
        stop_embedded(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """The URL of a new, empty database that is dropped after the test."""
    name = f"coda_sync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**params)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An open, migrated pool on the test's own database."""
    database = open_database(database_url)
    try:
        yield database
    finally:
        database.close()
