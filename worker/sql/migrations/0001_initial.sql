-- The worker's own schema: one status row per configured job and the columns Coda reported.
CREATE SCHEMA IF NOT EXISTS coda_sync;

CREATE TABLE coda_sync.job_status (
    job_name text PRIMARY KEY,
    doc_id text NOT NULL,
    table_id text NOT NULL,
    resolved_table_id text,
    target_table text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    disabled_at timestamptz,
    reenabled_at timestamptz,
    reenabled_by text,
    in_config boolean NOT NULL DEFAULT true,
    last_outcome text CHECK (last_outcome IN ('succeeded', 'failed', 'disabled', 'interrupted')),
    last_error_kind text,
    last_error text,
    needs_attention boolean NOT NULL DEFAULT false,
    last_started_at timestamptz,
    last_finished_at timestamptz,
    last_success_at timestamptz,
    last_duration_seconds double precision,
    consecutive_failures integer NOT NULL DEFAULT 0,
    rows_total bigint,
    rows_read bigint,
    rows_inserted bigint,
    rows_updated bigint,
    rows_deleted bigint,
    deletes_withheld bigint,
    last_requests integer,
    last_retries integer,
    next_run_at timestamptz,
    token_fingerprint text,
    config_fingerprint text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE coda_sync.table_columns (
    job_name text NOT NULL REFERENCES coda_sync.job_status (job_name) ON DELETE CASCADE,
    column_id text NOT NULL,
    name text NOT NULL,
    position integer NOT NULL,
    format jsonb NOT NULL,
    display boolean NOT NULL,
    calculated boolean NOT NULL,
    PRIMARY KEY (job_name, column_id)
);
