-- The repo-creation queue (the /api/repo routes). Unused by cleanup.
CREATE TABLE repo_requests (
    id            text        PRIMARY KEY,
    name          text        NOT NULL,
    owner         text        NOT NULL DEFAULT '',
    description   text        NOT NULL DEFAULT '',
    template      text        NOT NULL DEFAULT '',
    visibility    text        NOT NULL DEFAULT 'private',
    status        text        NOT NULL
                  CHECK (status IN ('pending', 'approved', 'active', 'rejected', 'failed')),
    url           text        NOT NULL DEFAULT '',
    error         text        NOT NULL DEFAULT '',
    requested_by  text        NOT NULL DEFAULT '',
    approver      text        NOT NULL DEFAULT '',
    reject_reason text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- One live claim per repository name, case-insensitively.
CREATE UNIQUE INDEX repo_requests_name_claim ON repo_requests (lower(name))
    WHERE status IN ('pending', 'approved', 'active');
CREATE INDEX repo_requests_created_idx ON repo_requests (created_at, id);
