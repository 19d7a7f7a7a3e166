-- Operators are managed by admin-signed commands (operator.add,
-- operator.revoke) and one documented bootstrap, each recorded here; a key
-- id is registered once and a revoked key stays revoked (issue 27). Before,
-- `operators add` on a revoked key id silently un-revoked it and swapped its
-- public key and principal, with no trace.
ALTER TABLE control.operator_keys ADD COLUMN added_by text;
ALTER TABLE control.operator_keys ADD COLUMN revoked_by text;

CREATE FUNCTION control.operator_key_is_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'control.operator_keys rows are never deleted: revoke the key';
    END IF;
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'operator key % is revoked and stays revoked', OLD.key_id;
    END IF;
    IF NEW.key_id <> OLD.key_id OR NEW.public_key <> OLD.public_key
       OR NEW.principal <> OLD.principal OR NEW.roles <> OLD.roles THEN
        RAISE EXCEPTION 'operator key % cannot be changed: register a new key id', OLD.key_id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER operator_keys_settled BEFORE UPDATE OR DELETE ON control.operator_keys
    FOR EACH ROW EXECUTE FUNCTION control.operator_key_is_settled();

-- Append-only record of every change to the operator keys.
CREATE TABLE control.operator_changes (
    seq          bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL CHECK (kind IN ('operator.bootstrap', 'operator.add', 'operator.revoke', 'setup.add', 'setup.revoke')),
    key_id       text NOT NULL,
    principal    text NOT NULL,
    roles        text[] NOT NULL DEFAULT '{}',
    by_principal text NOT NULL,
    by_key_id    text,
    command_id   text,
    note         text
);

CREATE FUNCTION control.operator_changes_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'control.operator_changes is append-only';
END $$;

CREATE TRIGGER operator_changes_append_only BEFORE UPDATE OR DELETE ON control.operator_changes
    FOR EACH ROW EXECUTE FUNCTION control.operator_changes_are_append_only();
