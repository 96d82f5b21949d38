-- Run history, worker heartbeats, slot claims for replicas, and staleness.
CREATE TABLE coda_sync.job_runs (
    run_id text PRIMARY KEY,
    job_name text NOT NULL,
    instance_id text,
    scheduled_for timestamptz,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    outcome text NOT NULL,
    error_kind text,
    error text,
    rows_read bigint,
    rows_inserted bigint,
    rows_updated bigint,
    rows_deleted bigint,
    requests integer,
    retries integer,
    duration_seconds double precision
);

CREATE INDEX job_runs_job_started ON coda_sync.job_runs (job_name, started_at DESC);
CREATE INDEX job_runs_started ON coda_sync.job_runs (started_at);

CREATE TABLE coda_sync.workers (
    instance_id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    beat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz
);

ALTER TABLE coda_sync.job_status
    ADD COLUMN last_slot timestamptz,
    ADD COLUMN schedule text,
    ADD COLUMN schedule_interval_seconds double precision,
    ADD COLUMN registered_at timestamptz NOT NULL DEFAULT now();

-- A job is stale when it is enabled, still configured, and has not succeeded within twice its
-- schedule interval (counted from its registration when it never succeeded).
CREATE VIEW coda_sync.job_health AS
SELECT
    s.*,
    (s.enabled AND s.in_config AND s.schedule_interval_seconds IS NOT NULL
     AND COALESCE(s.last_success_at, s.registered_at)
         < now() - make_interval(secs => 2 * s.schedule_interval_seconds)) AS stale
FROM coda_sync.job_status s;
