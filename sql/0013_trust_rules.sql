-- Trust rules (issue 15): which GitHub Actions workflow runs may publish to a site, and to
-- which aliases. Keyed by the registry slug, as `sites` is; deleting or purging the site's
-- registry row removes its rules in the same statement (ON DELETE CASCADE), so a slug
-- registered again starts with no trust. The value rules live in artemis.trust_rules; the
-- checks here only keep a hand-written row from being nonsense.
CREATE TABLE trust_rules (
    id            text        PRIMARY KEY CHECK (id ~ '^tr_[0-9a-f]{20}$'),
    site          text        NOT NULL REFERENCES sites (slug) ON DELETE CASCADE,
    repository    text        NOT NULL,
    repository_id bigint      NOT NULL CHECK (repository_id > 0),
    workflow      text        NOT NULL,
    environment   text,
    ref           text,
    aliases       text[]      NOT NULL CHECK (cardinality(aliases) > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL DEFAULT ''
);

CREATE INDEX trust_rules_site ON trust_rules (site, created_at, id);
