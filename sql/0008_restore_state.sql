-- A restore marks its tombstone 'restoring' before it moves any byte back, so a restore cut
-- off part-way can be resumed (and only then may bytes already sit at the live prefix); every
-- other restore refuses a live prefix that holds objects.
ALTER TABLE tombstones DROP CONSTRAINT tombstones_move_state_check;
ALTER TABLE tombstones ADD CONSTRAINT tombstones_move_state_check
    CHECK (move_state IN ('pending', 'moved', 'restoring'));
