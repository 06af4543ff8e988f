-- Named previews: an alias row may carry any name the alias rule admits (a lowercase DNS label
-- of 1-40 characters) beside the two fixed channels, and records who moved it last (shown by
-- the previews routes; a background job's moves record its system actor).
ALTER TABLE aliases DROP CONSTRAINT aliases_name_check;
ALTER TABLE aliases ADD CONSTRAINT aliases_name_check
    CHECK (name IN ('production', 'preview') OR name ~ '^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$');
ALTER TABLE aliases ADD COLUMN updated_by text;
