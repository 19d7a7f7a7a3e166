-- The control service on the embedded default's SQLite file (`control` is an
-- attached database): operator keys, crises, the audit trail, seen commands
-- and the outbox of crisis lifecycle events — the tables migrations/ builds
-- on PostgreSQL, in their current shape. text[] columns hold JSON arrays,
-- jsonb holds JSON text, timestamps are RFC 3339 text in UTC.
CREATE TABLE control.operator_keys (
    key_id      text PRIMARY KEY NOT NULL,
    principal   text NOT NULL,
    -- Ed25519 public key, base64url (the JWK "x" member).
    public_key  text NOT NULL,
    roles       text NOT NULL CHECK (json_type(roles) = 'array' AND json_array_length(roles) > 0),
    added_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at  text
) STRICT;

-- Only known roles (a CHECK may not hold a subquery in SQLite).
CREATE TRIGGER control.operator_roles_known_insert BEFORE INSERT ON operator_keys
WHEN EXISTS (SELECT 1 FROM json_each(NEW.roles) WHERE value NOT IN ('declare', 'approve', 'close', 'admin'))
BEGIN
    SELECT RAISE(ABORT, 'operator_keys.roles holds an unknown role');
END;
CREATE TRIGGER control.operator_roles_known_update BEFORE UPDATE OF roles ON operator_keys
WHEN EXISTS (SELECT 1 FROM json_each(NEW.roles) WHERE value NOT IN ('declare', 'approve', 'close', 'admin'))
BEGIN
    SELECT RAISE(ABORT, 'operator_keys.roles holds an unknown role');
END;

CREATE TABLE control.crises (
    crisis_id        text PRIMARY KEY NOT NULL,
    state            text NOT NULL CHECK (state IN ('proposed', 'active', 'closed')),
    revision         integer NOT NULL CHECK (revision >= 1),
    definition       text NOT NULL CHECK (json_type(definition) = 'object'),
    -- A declaration or amendment awaiting four-eyes approval.
    pending          text CHECK (pending IS NULL OR json_type(pending) = 'object'),
    pending_by       text,
    approvals        text NOT NULL DEFAULT '[]' CHECK (json_type(approvals) = 'array'),
    declared_by      text NOT NULL,
    trigger          text,
    created_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((pending IS NULL) = (pending_by IS NULL))
) STRICT;

-- Every command that took effect, once: the replay guard. Where it was read
-- from tells a redelivery (same position and command) from a replay.
CREATE TABLE control.commands (
    command_id       text PRIMARY KEY NOT NULL,
    kind             text NOT NULL,
    crisis_id        text NOT NULL,
    principal        text NOT NULL,
    key_id           text NOT NULL,
    issued_at        text NOT NULL,
    applied_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    source_topic     text,
    source_partition integer,
    source_offset    integer
) STRICT;
CREATE INDEX control.commands_source_position
    ON commands (source_topic, source_partition, source_offset)
    WHERE source_topic IS NOT NULL;

-- Append-only audit trail of every transition.
CREATE TABLE control.audit (
    seq         integer PRIMARY KEY AUTOINCREMENT,
    at          text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    crisis_id   text NOT NULL,
    command_id  text NOT NULL,
    kind        text NOT NULL,
    principal   text NOT NULL,
    key_id      text NOT NULL,
    revision    integer NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    outcome     text NOT NULL,
    note        text
) STRICT;

CREATE TRIGGER control.audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'control.audit is append-only');
END;
CREATE TRIGGER control.audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'control.audit is append-only');
END;

CREATE TABLE control.outbox (
    seq          integer PRIMARY KEY AUTOINCREMENT,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      blob NOT NULL,
    traceparent  text,
    created_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at text
) STRICT;
CREATE INDEX control.outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
