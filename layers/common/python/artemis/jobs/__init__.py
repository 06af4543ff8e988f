"""Background work: the outbox relay, gc-site, tombstone purge, outbox
purge, drift detection, reconcile repair and backfill. Each job is a plain function of the
Runtime, an injected clock and a Deadline (artemis.deadlines), so Lambda handlers, the local
scheduler and `artemis-admin run` all call the same code."""
