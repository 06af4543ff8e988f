-- Every outbox row is updated twice (claimed, then published). Free space on each page lets
-- the claim update stay on its page as a heap-only tuple (no new index entries): the claim
-- touches no indexed column. The publish mark changes `published_at`, which the partial
-- indexes name, so it always writes index entries; that cost is unavoidable.
ALTER TABLE outbox SET (fillfactor = 50);
