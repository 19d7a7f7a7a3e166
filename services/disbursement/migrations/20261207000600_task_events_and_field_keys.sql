-- Field teams on the tasks topic (sumud.tasks.v1): disbursement publishes
-- every change of a verification task through an outbox of its own
-- (written in the transaction that changes the task), and judges the
-- field teams' signed commands once each.

-- The outbox of task events (the shared relay's shape, src/outbox.rs).
-- Rows are kept after publication: a task event read back from the topic
-- is ours only if its exact bytes are here (anyone else's is
-- dead-lettered as untrusted_sender).
CREATE TABLE disbursement.outbox (
    seq          bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      bytea NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON disbursement.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_key_idx ON disbursement.outbox (key);

-- The keys field teams sign task commands with (`sumud field-keys
-- add|revoke`). A key id is never reused, and a revoked key stays revoked.
CREATE TABLE disbursement.field_keys (
    kid          text PRIMARY KEY,
    -- The team or device holding it; recorded as who assigned or resolved.
    principal    text NOT NULL CHECK (principal <> ''),
    -- Ed25519 public key (JWK `x`, base64url).
    public_x     text NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- Every task command whose signature verified, judged once: applied or
-- refused with its reason. The same message read again (same topic
-- position) is acknowledged without effect; the same jti from anywhere
-- else is a replay.
CREATE TABLE disbursement.task_commands (
    jti             text PRIMARY KEY,
    kid             text NOT NULL REFERENCES disbursement.field_keys (kid),
    principal       text NOT NULL,
    cmd             text NOT NULL CHECK (cmd IN ('task.assign', 'task.resolve', 'grievance.file')),
    -- What it is bound to: the task id, or the household of a grievance.
    subject         text NOT NULL,
    source_topic    text NOT NULL,
    source_partition integer NOT NULL,
    source_offset   bigint NOT NULL,
    refused_reason  text,
    refused_detail  text,
    judged_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((refused_reason IS NULL) = (refused_detail IS NULL))
);
