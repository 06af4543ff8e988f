-- The site registry: slug → owning GitHub teams.
CREATE TABLE sites (
    slug       text        PRIMARY KEY,
    teams      text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by text        NOT NULL DEFAULT ''
);
