"""Schema migrations against a real PostgreSQL."""

from __future__ import annotations

from worker.database import Database, migrate, migration_scripts


def test_migrate_creates_status_table(db: Database) -> None:
    with db.connection() as conn:
        row = conn.execute("SELECT to_regclass('coda_sync.job_status')").fetchone()
    assert row is not None
    assert row[0] == "coda_sync.job_status"


def test_migrate_records_every_version(db: Database) -> None:
    with db.connection() as conn:
        versions = [
            row[0] for row in conn.execute("SELECT version FROM coda_sync.schema_migrations ORDER BY 1")
        ]
    assert versions == [version for version, _, _ in migration_scripts()]


def test_migrate_twice_applies_nothing(db: Database) -> None:
    assert migrate(db) == []
