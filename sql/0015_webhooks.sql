-- Webhook subscriptions, their deliveries and each delivery's attempts (issue 16).
--
-- A subscription is keyed by the registry slug, like trust rules, but is not removed with the
-- site's registry row: deregistering a site announces `site.deleted` to its subscribers, so
-- the subscriptions are retired (`retired_at`) in that transaction instead, and their pending
-- deliveries still go out. A retired subscription is invisible to the API and gets no new
-- event, so a slug registered again starts with none.
CREATE TABLE hook_subscriptions (
    id          text        PRIMARY KEY CHECK (id ~ '^hk_[0-9a-f]{20}$'),
    site        text        NOT NULL,
    url         text        NOT NULL,
    events      text[]      NOT NULL CHECK (cardinality(events) > 0),
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL DEFAULT '',
    retired_at  timestamptz
);
CREATE INDEX hook_subscriptions_site ON hook_subscriptions (site, created_at, id)
    WHERE retired_at IS NULL;

-- One event for one subscription. `body` is the exact bytes every attempt sends (the
-- signature covers them), and `id` is the X-Artemis-Delivery header, the same on every retry.
CREATE TABLE hook_deliveries (
    id              text        PRIMARY KEY CHECK (id ~ '^dlv_[0-9a-f]{20}$'),
    subscription_id text        NOT NULL REFERENCES hook_subscriptions (id) ON DELETE CASCADE,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    body            bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Retries end HOOK_RETRY_WINDOW after this: the event, or the latest redelivery.
    retry_from      timestamptz NOT NULL DEFAULT now(),
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    finished_at     timestamptz,
    last_error      text
);
CREATE INDEX hook_deliveries_subscription ON hook_deliveries (subscription_id, created_at DESC);

CREATE TABLE hook_attempts (
    delivery_id  text        NOT NULL REFERENCES hook_deliveries (id) ON DELETE CASCADE,
    attempt      integer     NOT NULL CHECK (attempt > 0),
    at           timestamptz NOT NULL,
    status_code  integer,
    error        text,
    duration_ms  integer     NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- The commit a deploy was built from, as init was given it (the deploy id keeps 7 characters
-- of it): events carry it, and a GitHub deployment is created for it.
ALTER TABLE deploys ADD COLUMN sha text;

-- The GitHub deployment Artemis created for a deploy on an environment (an alias), so a
-- retry does not create a second one and the alias moving on can mark it inactive.
CREATE TABLE github_deployments (
    site          text        NOT NULL,
    deploy_id     text        NOT NULL,
    environment   text        NOT NULL,
    repo          text        NOT NULL,
    deployment_id bigint      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_state    text,
    last_error    text,
    PRIMARY KEY (site, deploy_id, environment)
);
