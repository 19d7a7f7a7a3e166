-- Operators by admin-signed commands and one bootstrap, each recorded; a key
-- id is registered once and a revoked key stays revoked (see the PostgreSQL
-- migration of the same name).
ALTER TABLE control.operator_keys ADD COLUMN added_by text;
ALTER TABLE control.operator_keys ADD COLUMN revoked_by text;

CREATE TRIGGER control.operator_keys_never_deleted BEFORE DELETE ON operator_keys
BEGIN
    SELECT RAISE(ABORT, 'control.operator_keys rows are never deleted: revoke the key');
END;
CREATE TRIGGER control.operator_keys_revoked_stay_revoked BEFORE UPDATE ON operator_keys
WHEN OLD.revoked_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a revoked operator key stays revoked');
END;
CREATE TRIGGER control.operator_keys_unchanged BEFORE UPDATE ON operator_keys
WHEN NEW.key_id IS NOT OLD.key_id OR NEW.public_key IS NOT OLD.public_key
  OR NEW.principal IS NOT OLD.principal OR NEW.roles IS NOT OLD.roles
BEGIN
    SELECT RAISE(ABORT, 'an operator key cannot be changed: register a new key id');
END;

CREATE TABLE control.operator_changes (
    seq          integer PRIMARY KEY AUTOINCREMENT,
    at           text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    kind         text NOT NULL CHECK (kind IN ('operator.bootstrap', 'operator.add', 'operator.revoke', 'setup.add', 'setup.revoke')),
    key_id       text NOT NULL,
    principal    text NOT NULL,
    roles        text NOT NULL DEFAULT '[]' CHECK (json_type(roles) = 'array'),
    by_principal text NOT NULL,
    by_key_id    text,
    command_id   text,
    note         text
) STRICT;

CREATE TRIGGER control.operator_changes_no_update BEFORE UPDATE ON operator_changes
BEGIN
    SELECT RAISE(ABORT, 'control.operator_changes is append-only');
END;
CREATE TRIGGER control.operator_changes_no_delete BEFORE DELETE ON operator_changes
BEGIN
    SELECT RAISE(ABORT, 'control.operator_changes is append-only');
END;
