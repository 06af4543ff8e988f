-- The `jti` of every GitHub Actions OIDC token accepted, kept until the token could no longer
-- pass its expiry check: a token is accepted once (artemis.oidc). In Postgres rather than
-- Redis because Postgres is always there and does not evict: an evicted key would admit the
-- same token twice.
CREATE TABLE oidc_replay (
    jti         text PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
-- The purge of expired rows (each remember) reads this.
CREATE INDEX oidc_replay_expires_at ON oidc_replay (expires_at);
