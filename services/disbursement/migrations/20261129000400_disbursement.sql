-- The disbursement service: its projections of crises and entitlements, the
-- instructions (which double as the outbox of instruction events), provider
-- status history and field-verification tasks.
CREATE SCHEMA IF NOT EXISTS disbursement;

CREATE TABLE disbursement.crises (
    crisis_id      text PRIMARY KEY,
    state          text NOT NULL CHECK (state IN ('proposed', 'active', 'closed')),
    revision       integer NOT NULL,
    currency       text NOT NULL,
    budget_minor   bigint NOT NULL CHECK (budget_minor > 0),
    -- Money reserved by live instructions; the CHECK is the budget cap.
    reserved_minor bigint NOT NULL DEFAULT 0,
    activated_at   timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (reserved_minor >= 0 AND reserved_minor <= budget_minor)
);

CREATE TABLE disbursement.entitlements (
    entitlement_id  text PRIMARY KEY,
    crisis_id       text NOT NULL,
    household_id    text NOT NULL,
    kind            text NOT NULL,
    status          text NOT NULL,
    amount_minor    bigint NOT NULL,
    currency        text NOT NULL,
    tranches        integer NOT NULL,
    interval_days   integer NOT NULL,
    crisis_revision integer NOT NULL,
    change_seq      bigint NOT NULL
);
CREATE INDEX disb_entitlements_crisis_idx ON disbursement.entitlements (crisis_id) WHERE status = 'entitled';

CREATE SEQUENCE disbursement.change_seq;

CREATE TABLE disbursement.instructions (
    instruction_id  text PRIMARY KEY,
    crisis_id       text NOT NULL,
    household_id    text NOT NULL,
    kind            text NOT NULL,
    tranche         integer NOT NULL CHECK (tranche >= 1),
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL,
    beneficiary_ref text NOT NULL,
    channel         text NOT NULL,
    provider        text NOT NULL,
    account_token   text NOT NULL,
    scheduled_at    timestamptz NOT NULL,
    crisis_revision integer NOT NULL,
    attempt         integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    status          text NOT NULL DEFAULT 'instructed'
        CHECK (status IN ('instructed', 'received', 'pending', 'succeeded', 'retry_scheduled', 'failed', 'reversed')),
    reason_code     text,
    provider_ref    text,
    next_attempt_at timestamptz,
    deadline_at     timestamptz NOT NULL,
    overdue         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Outbox: an attempt is published once its change is acknowledged.
    change_seq      bigint NOT NULL DEFAULT nextval('disbursement.change_seq'),
    published_seq   bigint,
    -- One instruction per tranche of an entitlement, whatever happens.
    UNIQUE (crisis_id, household_id, kind, tranche)
);
CREATE INDEX instructions_unpublished_idx ON disbursement.instructions (change_seq)
    WHERE published_seq IS DISTINCT FROM change_seq;
CREATE INDEX instructions_retry_idx ON disbursement.instructions (next_attempt_at) WHERE status = 'retry_scheduled';
CREATE INDEX instructions_open_idx ON disbursement.instructions (deadline_at) WHERE status IN ('instructed', 'received', 'pending');

-- Every status report applied or ignored, once (the processed-message table).
CREATE TABLE disbursement.status_log (
    event_id       text PRIMARY KEY,
    instruction_id text NOT NULL,
    attempt        integer NOT NULL,
    provider       text NOT NULL,
    status         text NOT NULL,
    reason_code    text,
    applied        boolean NOT NULL,
    note           text,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_log_instruction_idx ON disbursement.status_log (instruction_id);

CREATE TABLE disbursement.verification_tasks (
    task_id        bigserial PRIMARY KEY,
    household_id   text NOT NULL,
    instruction_id text NOT NULL UNIQUE,
    reason_code    text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);

-- Instruction ids and beneficiary pseudonyms, derived exactly as
-- src/instruction.rs derives them (UUIDv5, RFC 9562), so that set-based
-- inserts agree with the Rust rules; a test checks both give the same ids.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE FUNCTION disbursement.uuid_v5(ns uuid, name text) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
    WITH h AS (SELECT digest(decode(replace(ns::text, '-', ''), 'hex') || convert_to(name, 'UTF8'), 'sha1') AS d)
    SELECT encode(set_byte(set_byte(substring(d FROM 1 FOR 16),
                                    6, (get_byte(d, 6) & 15) | 80),
                           8, (get_byte(d, 8) & 63) | 128), 'hex')::uuid
    FROM h
$$;

CREATE FUNCTION disbursement.instruction_id(crisis text, household text, kind text, tranche int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT disbursement.uuid_v5('5d1f6c2b-91e4-4f0a-8a35-2c7eb0d491aa',
                                crisis || chr(31) || household || chr(31) || kind || chr(31) || tranche)::text
$$;

CREATE FUNCTION disbursement.beneficiary_ref(secret text, household text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'ben-' || replace(disbursement.uuid_v5(disbursement.uuid_v5('5d1f6c2b-91e4-4f0a-8a35-2c7eb0d491aa', secret), household)::text, '-', '')
$$;
