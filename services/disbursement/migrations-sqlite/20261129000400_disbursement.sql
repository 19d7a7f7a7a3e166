-- The disbursement service on the embedded default's SQLite file
-- (`disbursement` is an attached database): its projections of crises and
-- entitlements, the instructions (which double as the outbox of instruction
-- events), provider status history and field-verification tasks — the
-- tables migrations/ builds on PostgreSQL, in their current shape.
-- Timestamps are RFC 3339 text in UTC with milliseconds
-- ('2026-11-29T21:00:00.000Z', as strftime('%Y-%m-%dT%H:%M:%fZ') writes
-- them and sumud_shared::db::sqlite::timestamp binds them), so that they
-- compare as text. Instruction ids and beneficiary pseudonyms are derived in
-- Rust (src/instruction.rs) on this backend.
CREATE TABLE disbursement.crises (
    crisis_id      text PRIMARY KEY NOT NULL,
    state          text NOT NULL CHECK (state IN ('proposed', 'active', 'closed')),
    revision       integer NOT NULL,
    currency       text NOT NULL,
    budget_minor   integer NOT NULL CHECK (budget_minor > 0),
    -- Money reserved by live instructions; the CHECK is the budget cap.
    reserved_minor integer NOT NULL DEFAULT 0,
    activated_at   text,
    updated_at     text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- The W3C trace context of the crisis event that last changed the crisis.
    traceparent    text,
    CHECK (reserved_minor >= 0 AND reserved_minor <= budget_minor)
) STRICT;

CREATE TABLE disbursement.entitlements (
    entitlement_id  text PRIMARY KEY NOT NULL,
    crisis_id       text NOT NULL,
    household_id    text NOT NULL,
    kind            text NOT NULL,
    status          text NOT NULL,
    amount_minor    integer NOT NULL,
    currency        text NOT NULL,
    tranches        integer NOT NULL,
    interval_days   integer NOT NULL,
    crisis_revision integer NOT NULL,
    change_seq      integer NOT NULL
) STRICT;
CREATE INDEX disbursement.disb_entitlements_crisis_idx ON entitlements (crisis_id) WHERE status = 'entitled';

-- PostgreSQL's disbursement.change_seq sequence: one row, the last value.
CREATE TABLE disbursement.change_counter (
    singleton integer PRIMARY KEY NOT NULL CHECK (singleton = 1),
    value     integer NOT NULL
) STRICT;
INSERT INTO disbursement.change_counter (singleton, value) VALUES (1, 0);

CREATE TABLE disbursement.instructions (
    instruction_id  text PRIMARY KEY NOT NULL,
    crisis_id       text NOT NULL,
    household_id    text NOT NULL,
    kind            text NOT NULL,
    tranche         integer NOT NULL CHECK (tranche >= 1),
    -- 0 for the tranche as first instructed, n for its n-th top-up.
    part            integer NOT NULL DEFAULT 0 CHECK (part >= 0),
    amount_minor    integer NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL,
    beneficiary_ref text NOT NULL,
    channel         text NOT NULL,
    provider        text NOT NULL,
    account_token   text NOT NULL,
    scheduled_at    text NOT NULL,
    crisis_revision integer NOT NULL,
    attempt         integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    status          text NOT NULL DEFAULT 'instructed'
        CHECK (status IN ('instructed', 'received', 'pending', 'succeeded', 'retry_scheduled', 'failed', 'reversed')),
    reason_code     text,
    provider_ref    text,
    next_attempt_at text,
    deadline_at     text NOT NULL,
    overdue         integer NOT NULL DEFAULT 0 CHECK (overdue IN (0, 1)),
    created_at      text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Outbox: an attempt is published once its change is acknowledged. The
    -- triggers below number every new instruction and every new attempt,
    -- as PostgreSQL's statements do with nextval.
    change_seq      integer NOT NULL DEFAULT 0,
    published_seq   integer,
    -- One instruction per part of a tranche of an entitlement, whatever happens.
    CONSTRAINT instructions_one_per_part UNIQUE (crisis_id, household_id, kind, tranche, part)
) STRICT;
CREATE INDEX disbursement.instructions_unpublished_idx ON instructions (change_seq)
    WHERE published_seq IS NOT change_seq;
CREATE INDEX disbursement.instructions_retry_idx ON instructions (next_attempt_at) WHERE status = 'retry_scheduled';
CREATE INDEX disbursement.instructions_open_idx ON instructions (deadline_at) WHERE status IN ('instructed', 'received', 'pending');

CREATE TRIGGER disbursement.instructions_numbered_insert AFTER INSERT ON instructions
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE instructions SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER disbursement.instructions_numbered_attempt AFTER UPDATE OF attempt ON instructions
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE instructions SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;

-- Every status report applied or ignored, once (the processed-message table).
CREATE TABLE disbursement.status_log (
    event_id       text PRIMARY KEY NOT NULL,
    instruction_id text NOT NULL,
    attempt        integer NOT NULL,
    provider       text NOT NULL,
    status         text NOT NULL,
    reason_code    text,
    applied        integer NOT NULL CHECK (applied IN (0, 1)),
    note           text,
    at             text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX disbursement.status_log_instruction_idx ON status_log (instruction_id);

CREATE TABLE disbursement.verification_tasks (
    task_id        integer PRIMARY KEY AUTOINCREMENT,
    household_id   text NOT NULL,
    instruction_id text NOT NULL UNIQUE,
    reason_code    text NOT NULL,
    created_at     text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resolved_at    text
) STRICT;
