-- The control service: operator keys, crises, the audit trail, seen commands
-- and the outbox of crisis lifecycle events.
CREATE SCHEMA IF NOT EXISTS control;

CREATE TABLE control.operator_keys (
    key_id      text PRIMARY KEY,
    principal   text NOT NULL,
    -- Ed25519 public key, base64url (the JWK "x" member).
    public_key  text NOT NULL,
    roles       text[] NOT NULL CHECK (roles <@ ARRAY['declare', 'approve', 'close', 'admin']::text[] AND cardinality(roles) > 0),
    added_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE control.crises (
    crisis_id        text PRIMARY KEY,
    state            text NOT NULL CHECK (state IN ('proposed', 'active', 'closed')),
    revision         integer NOT NULL CHECK (revision >= 1),
    definition       jsonb NOT NULL,
    -- A declaration or amendment awaiting four-eyes approval.
    pending          jsonb,
    pending_by       text,
    approvals        text[] NOT NULL DEFAULT '{}',
    declared_by      text NOT NULL,
    trigger          jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((pending IS NULL) = (pending_by IS NULL))
);

-- Every command that took effect, once: the replay guard.
CREATE TABLE control.commands (
    command_id  text PRIMARY KEY,
    kind        text NOT NULL,
    crisis_id   text NOT NULL,
    principal   text NOT NULL,
    key_id      text NOT NULL,
    issued_at   timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only audit trail of every transition.
CREATE TABLE control.audit (
    seq         bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
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
);

CREATE FUNCTION control.audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'control.audit is append-only';
END $$;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON control.audit
    FOR EACH ROW EXECUTE FUNCTION control.audit_is_append_only();

CREATE TABLE control.outbox (
    seq          bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      bytea NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON control.outbox (seq) WHERE published_at IS NULL;
