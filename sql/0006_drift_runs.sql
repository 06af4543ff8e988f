-- Resumable, sharded drift sweeps (artemis.jobs.drift), so a sweep fits Lambda's time limit.
-- A sweep visits sites in sorted order, one batch per transaction: each batch stores its
-- per-site results and advances `cursor` (the last dirname swept) with a compare-and-set, so an
-- invocation cut off by its deadline loses nothing and the next one resumes after `cursor`.
-- The verdict is written when the last batch has been swept.
CREATE TABLE drift_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin      text        NOT NULL DEFAULT 'schedule' CHECK (origin IN ('schedule', 'operator')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    as_of       timestamptz NOT NULL,   -- the one instant every batch classifies against
    expires_at  timestamptz NOT NULL,   -- sites not swept by then count as unreadable
    cursor      text        NOT NULL DEFAULT '',
    batches     integer     NOT NULL DEFAULT 0,
    totals      jsonb       NOT NULL DEFAULT '{}',
    -- set when the run closes:
    active_rows_total bigint,
    selfcheck   jsonb       NOT NULL DEFAULT '[]',
    verdict     text CHECK (verdict IN
                    ('selfcheck', 'aliased_missing', 'unreadable', 'reclaimable', 'clean')),
    finished_at timestamptz
);
-- At most one unfinished scheduled sweep: overlapping ticks join it instead of starting another.
CREATE UNIQUE INDEX drift_runs_one_open_idx ON drift_runs ((true))
    WHERE finished_at IS NULL AND origin = 'schedule';
CREATE INDEX drift_runs_as_of_idx ON drift_runs (origin, as_of DESC);

-- Per-site results, kept only for sites with findings, faults or read errors (a clean site
-- adds only to the run's totals).
CREATE TABLE drift_site_results (
    run_id bigint NOT NULL REFERENCES drift_runs (id) ON DELETE CASCADE,
    site   text   NOT NULL,
    result jsonb  NOT NULL,
    PRIMARY KEY (run_id, site)
);
