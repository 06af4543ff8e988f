-- One row per background run (gc-site, tombstone-purge, drift-detect, reconcile, backfill …):
-- what ran, for which site, how it ended, what it counted, and (GC) the plan it executed.
CREATE TABLE job_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text        NOT NULL,
    site        text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text        NOT NULL DEFAULT 'running'
                CHECK (outcome IN ('running', 'succeeded', 'failed', 'skipped')),
    dry_run     boolean     NOT NULL DEFAULT false,
    counts      jsonb       NOT NULL DEFAULT '{}',
    plan        jsonb,
    error       text
);
CREATE INDEX job_runs_job_started_idx ON job_runs (job, started_at DESC);
CREATE INDEX job_runs_running_idx ON job_runs (started_at) WHERE outcome = 'running';
