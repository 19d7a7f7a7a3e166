-- The provider simulator's own ledger: every (instruction, attempt) it was
-- asked to pay, what the instruction said, how often it arrived, and what the
-- simulator did. Tests read it to prove nothing was paid twice.
CREATE SCHEMA IF NOT EXISTS provider_sim;

CREATE TABLE provider_sim.ledger (
    reference_id     text NOT NULL,
    attempt          integer NOT NULL,
    provider         text NOT NULL,
    amount_minor     bigint NOT NULL,
    content_hash     text NOT NULL,
    -- Set when the same (instruction, attempt) arrived again with different content.
    content_conflict boolean NOT NULL DEFAULT false,
    times_seen       integer NOT NULL DEFAULT 1,
    outcome          text NOT NULL,
    paid             boolean NOT NULL,
    first_seen       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reference_id, attempt)
);
