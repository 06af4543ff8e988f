-- The append-only audit trail. Rows can never be changed or removed: statement-level
-- triggers reject UPDATE, DELETE and TRUNCATE, so writers must get a row right first time.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    site        text        NOT NULL DEFAULT '',
    deploy_id   text        NOT NULL DEFAULT '',
    outcome     text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}',
    request_id  text        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_occurred_id_idx ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX audit_log_site_idx ON audit_log (site) WHERE site <> '';
CREATE INDEX audit_log_action_idx ON audit_log (action);
CREATE INDEX audit_log_actor_idx ON audit_log (actor);

CREATE FUNCTION audit_log_reject_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % rejected', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_mutation();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_mutation();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_mutation();
