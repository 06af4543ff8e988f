-- Every verdict artemis.drift_report can close a sweep with. The first list predates the
-- aliased_tombstoned and written_after_finalize verdicts (a sweep ending on one of them could
-- not be closed) and alias_mismatch: alias rows disagreeing with alias objects, a warning.
ALTER TABLE drift_runs DROP CONSTRAINT drift_runs_verdict_check;
ALTER TABLE drift_runs ADD CONSTRAINT drift_runs_verdict_check
    CHECK (verdict IN ('selfcheck', 'aliased_missing', 'aliased_tombstoned',
                       'written_after_finalize', 'unreadable', 'alias_mismatch', 'reclaimable',
                       'clean'));
