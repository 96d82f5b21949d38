"""Write one job's rows into its PostgreSQL data table.

A run streams every page into a temporary staging table with COPY, so memory does not grow
with the table. Only after the read is complete does `TableSink.merge` insert new rows,
update the rows whose content changed and delete (or mark) the rows Coda no longer has, all in
the caller's transaction: a run that fails before its commit changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from worker.records import UNSTORABLE, RowRecord, storable_json

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]

DDL_LOCK_KEY = 0x636F6464  # an arbitrary advisory lock key shared by every worker's DDL
STAGING = sql.Identifier("coda_sync_staging")
STAGING_UNIQUE = sql.Identifier("coda_sync_staging_unique")


@dataclass(frozen=True, kw_only=True)
class MergeCounts:
    """Counts of one merge: rows changed, and rows the delete guard left alone."""

    read: int  # distinct rows of the complete read
    inserted: int
    updated: int
    deleted: int
    total: int
    withheld: int = 0  # rows that a complete read no longer has but the delete guard kept


@dataclass(frozen=True, kw_only=True)
class DeletePlan:
    """Treatment of rows that a complete read no longer contains."""

    mode: Literal["hard", "soft", "withhold"]


def encode_values(values: dict[str, Any]) -> str:
    """Serialise cell values for a jsonb column.

    Every character is kept as Coda sent it, except those `storable_text` replaces: jsonb
    rejects the NUL character (which json.dumps writes as \\u0000) and UTF-8 cannot encode a
    lone surrogate.
    """
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text or UNSTORABLE.search(text):
        text = json.dumps(storable_json(values), ensure_ascii=False, separators=(",", ":"))
    return text


class TableSink:
    """The data table `<schema>.<table>` of one job, written inside one transaction."""

    def __init__(self, conn: Connection, schema: str, table: str) -> None:
        self.conn = conn
        self.schema = schema
        self.table = table
        self._target = sql.Identifier(schema, table)
        self._staged = 0
        self._distinct = 0
        self._read_finished = False

    @property
    def qualified_name(self) -> str:
        """The table's name as `schema.table`, for messages."""
        return f"{self.schema}.{self.table}"

    def ensure_table(self, *, soft_deletes: bool) -> None:
        """Create the schema and data table when missing; add `_coda_deleted_at` when needed.

        Call it in a short transaction of its own, before the run's long one: DDL on a shared
        schema would otherwise block every other job that writes to it until this run ends.
        """
        # Jobs starting together would race on CREATE SCHEMA IF NOT EXISTS, which fails with a
        # unique violation instead of waiting; one lock for all DDL makes them take turns.
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " _coda_row_id text PRIMARY KEY,"
                " _coda_row_name text,"
                " _coda_row_index bigint,"
                " _coda_created_at timestamptz,"
                " _coda_updated_at timestamptz,"
                " _coda_synced_at timestamptz NOT NULL,"
                " _coda_values jsonb NOT NULL)"
            ).format(self._target)
        )
        # ALTER TABLE takes an exclusive lock even when the column exists, which would queue
        # behind every reader of the table, so it runs only when the column is missing.
        if soft_deletes and not self._has_deleted_at():
            self.conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS _coda_deleted_at timestamptz").format(
                    self._target
                )
            )

    def start_staging(self) -> None:
        """Create an empty staging table that disappears with the transaction."""
        self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(STAGING))
        self.conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ("
                " seq bigint NOT NULL,"
                " row_id text NOT NULL,"
                " row_name text,"
                " row_index bigint,"
                " created_at timestamptz,"
                " updated_at timestamptz,"
                " row_values jsonb NOT NULL"
                ") ON COMMIT DROP"
            ).format(STAGING)
        )
        self._staged = 0
        self._read_finished = False

    def stage(self, rows: Sequence[RowRecord]) -> None:
        """Append one page of rows to the staging table with COPY."""
        statement = sql.SQL(
            "COPY {} (seq, row_id, row_name, row_index, created_at, updated_at, row_values) FROM STDIN"
        ).format(STAGING)
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                self._staged += 1
                copy.write_row(
                    (
                        self._staged,
                        row.id,
                        row.name,
                        row.index,
                        row.created_at,
                        row.updated_at,
                        encode_values(row.values),
                    )
                )

    def count_existing(self, *, soft_deletes: bool) -> int:
        """Return how many live rows the data table contains before the merge."""
        query = sql.SQL("SELECT count(*) FROM {}").format(self._target)
        if soft_deletes:
            query = sql.SQL("{} WHERE _coda_deleted_at IS NULL").format(query)
        row = self.conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def finish_read(self) -> int:
        """Close the staged read and return how many distinct rows it holds."""
        self._deduplicate()
        self._read_finished = True
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(STAGING_UNIQUE)).fetchone()
        self._distinct = int(row[0]) if row else 0
        return self._distinct

    def count_missing(self, *, soft_deletes: bool) -> int:
        """Return how many live rows of the data table the finished read does not contain."""
        if not self._read_finished:
            raise RuntimeError("count_missing() needs finish_read() first")
        live = sql.SQL(" AND t._coda_deleted_at IS NULL") if soft_deletes else sql.SQL("")
        row = self.conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} t WHERE NOT EXISTS"
                " (SELECT 1 FROM {} s WHERE s.row_id = t._coda_row_id){}"
            ).format(self._target, STAGING_UNIQUE, live)
        ).fetchone()
        return int(row[0]) if row else 0

    def merge(self, plan: DeletePlan) -> MergeCounts:
        """Apply the staged read to the data table; call only after a complete read."""
        if not self._read_finished:
            raise RuntimeError("merge() needs finish_read() first")
        soft = plan.mode == "soft" or self._has_deleted_at()
        updated = self._update_changed(soft)
        inserted = self._insert_new(soft)
        withheld = 0
        if plan.mode == "withhold":
            withheld = self.count_missing(soft_deletes=soft)
            deleted = 0
        elif plan.mode == "soft":
            deleted = self._mark_deleted()
        else:
            deleted = self._delete_missing()
        return MergeCounts(
            read=self._distinct,
            inserted=inserted,
            updated=updated,
            deleted=deleted,
            total=self.count_existing(soft_deletes=soft),
            withheld=withheld,
        )

    def _deduplicate(self) -> None:
        # The same row id can appear on two pages when rows move while we page; the copy seen
        # last is the newest, so it wins.
        self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(STAGING_UNIQUE))
        self.conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS"
                " SELECT DISTINCT ON (row_id) row_id, row_name, row_index, created_at,"
                " updated_at, row_values FROM {} ORDER BY row_id, seq DESC"
            ).format(STAGING_UNIQUE, STAGING)
        )
        self.conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (row_id)").format(STAGING_UNIQUE))
        self.conn.execute(sql.SQL("ANALYZE {}").format(STAGING_UNIQUE))

    def _has_deleted_at(self) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s AND column_name = '_coda_deleted_at'",
            (self.schema, self.table),
        ).fetchone()
        return row is not None

    def _update_changed(self, soft: bool) -> int:
        # Only rows whose content differs are touched, so an unchanged re-sync writes no tuple.
        revive_set = sql.SQL(", _coda_deleted_at = NULL") if soft else sql.SQL("")
        revive_test = sql.SQL(" OR t._coda_deleted_at IS NOT NULL") if soft else sql.SQL("")
        cursor = self.conn.execute(
            sql.SQL(
                "UPDATE {target} t SET"
                " _coda_row_name = s.row_name, _coda_row_index = s.row_index,"
                " _coda_created_at = s.created_at, _coda_updated_at = s.updated_at,"
                " _coda_values = s.row_values, _coda_synced_at = now(){revive_set}"
                " FROM {staged} s WHERE t._coda_row_id = s.row_id AND ("
                " (t._coda_row_name, t._coda_row_index, t._coda_created_at, t._coda_updated_at,"
                "  t._coda_values) IS DISTINCT FROM"
                " (s.row_name, s.row_index, s.created_at, s.updated_at, s.row_values){revive_test})"
            ).format(
                target=self._target,
                staged=STAGING_UNIQUE,
                revive_set=revive_set,
                revive_test=revive_test,
            )
        )
        return max(cursor.rowcount, 0)

    def _insert_new(self, soft: bool) -> int:
        cursor = self.conn.execute(
            sql.SQL(
                "INSERT INTO {target} (_coda_row_id, _coda_row_name, _coda_row_index,"
                " _coda_created_at, _coda_updated_at, _coda_synced_at, _coda_values)"
                " SELECT s.row_id, s.row_name, s.row_index, s.created_at, s.updated_at, now(),"
                " s.row_values FROM {staged} s"
                " WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t._coda_row_id = s.row_id)"
            ).format(target=self._target, staged=STAGING_UNIQUE)
        )
        return max(cursor.rowcount, 0)

    def _delete_missing(self) -> int:
        cursor = self.conn.execute(
            sql.SQL(
                "DELETE FROM {target} t"
                " WHERE NOT EXISTS (SELECT 1 FROM {staged} s WHERE s.row_id = t._coda_row_id)"
            ).format(target=self._target, staged=STAGING_UNIQUE)
        )
        return max(cursor.rowcount, 0)

    def _mark_deleted(self) -> int:
        cursor = self.conn.execute(
            sql.SQL(
                "UPDATE {target} t SET _coda_deleted_at = now(), _coda_synced_at = now()"
                " WHERE t._coda_deleted_at IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM {staged} s WHERE s.row_id = t._coda_row_id)"
            ).format(target=self._target, staged=STAGING_UNIQUE)
        )
        return max(cursor.rowcount, 0)
