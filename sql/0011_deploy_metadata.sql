-- Issue 14: a deploy carries its context. The metadata init accepted (all optional, validated
-- by artemis.deploy_metadata), and what finalize measured: when, and how many files.
-- Nullable: rows written before this migration, by reconcile or by backfill know none of it.
ALTER TABLE deploys ADD COLUMN branch text;
ALTER TABLE deploys ADD COLUMN message text;
ALTER TABLE deploys ADD COLUMN pr integer;
ALTER TABLE deploys ADD COLUMN repo text;
ALTER TABLE deploys ADD COLUMN ci_url text;
ALTER TABLE deploys ADD COLUMN finalized_at timestamptz;
ALTER TABLE deploys ADD COLUMN files integer;

-- A delete drops the deploy's row; its context travels with the tombstone (so the deploy list
-- shows a deleted deploy's branch and message) and comes back with a restore.
ALTER TABLE tombstones ADD COLUMN deploy_meta jsonb;
