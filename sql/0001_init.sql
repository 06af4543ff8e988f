-- The deploy index, alias mirror, tombstones and the transactional outbox
-- (the API and the background jobs share them). Site columns hold the storage dirname.

CREATE TABLE deploys (
    site              text        NOT NULL,
    id                text        NOT NULL,
    mtime             timestamptz NOT NULL,
    bytes             bigint      NOT NULL DEFAULT 0,
    has_marker        boolean     NOT NULL DEFAULT false,
    state             text        NOT NULL DEFAULT 'active' CHECK (state IN ('pending', 'active')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    alias_released_at timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX deploys_site_mtime_idx ON deploys (site, mtime DESC);

CREATE TABLE aliases (
    site       text        NOT NULL,
    name       text        NOT NULL CHECK (name IN ('production', 'preview')),
    deploy_id  text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, name)
);

-- id '' marks a whole-site purge. move_state turns 'moved' only once the byte move completed,
-- so a later run can re-drive a move that failed after the row landed,
-- instead of stranding the rest of the deploy at its live prefix.
CREATE TABLE tombstones (
    site       text        NOT NULL,
    id         text        NOT NULL,
    trashed_at timestamptz NOT NULL DEFAULT now(),
    bytes      bigint      NOT NULL DEFAULT 0,
    move_state text        NOT NULL DEFAULT 'pending' CHECK (move_state IN ('pending', 'moved')),
    PRIMARY KEY (site, id)
);
CREATE INDEX tombstones_trashed_at_idx ON tombstones (trashed_at);
CREATE INDEX tombstones_pending_move_idx ON tombstones (site) WHERE move_state = 'pending';

CREATE TABLE outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic            text        NOT NULL,
    payload          jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    claimed_at       timestamptz,
    claim_expires_at timestamptz
);
-- The relay claims unpublished rows in id order; the purge finds old published rows.
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
