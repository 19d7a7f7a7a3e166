-- Field teams on the tasks topic; see
-- migrations/20261207000600_task_events_and_field_keys.sql.
CREATE TABLE disbursement.outbox (
    seq          integer PRIMARY KEY AUTOINCREMENT,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      blob NOT NULL,
    traceparent  text,
    created_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at text
) STRICT;
CREATE INDEX disbursement.outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX disbursement.outbox_key_idx ON outbox (key);

CREATE TABLE disbursement.field_keys (
    kid          text PRIMARY KEY NOT NULL,
    principal    text NOT NULL CHECK (principal <> ''),
    public_x     text NOT NULL,
    added_at     text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at   text
) STRICT;

CREATE TABLE disbursement.task_commands (
    jti             text PRIMARY KEY NOT NULL,
    kid             text NOT NULL REFERENCES field_keys (kid),
    principal       text NOT NULL,
    cmd             text NOT NULL CHECK (cmd IN ('task.assign', 'task.resolve', 'grievance.file')),
    subject         text NOT NULL,
    source_topic    text NOT NULL,
    source_partition integer NOT NULL,
    source_offset   integer NOT NULL,
    refused_reason  text,
    refused_detail  text,
    judged_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((refused_reason IS NULL) = (refused_detail IS NULL))
) STRICT;
