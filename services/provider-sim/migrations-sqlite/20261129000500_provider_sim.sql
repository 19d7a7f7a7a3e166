-- The provider simulator's own ledger on the embedded default's SQLite file
-- (`provider_sim` is an attached database): every (instruction, attempt) it
-- was asked to pay, what the instruction said, how often it arrived, and
-- what the simulator did. Tests read it to prove nothing was paid twice.
CREATE TABLE provider_sim.ledger (
    reference_id     text NOT NULL,
    attempt          integer NOT NULL,
    provider         text NOT NULL,
    amount_minor     integer NOT NULL,
    content_hash     text NOT NULL,
    -- Set when the same (instruction, attempt) arrived again with different content.
    content_conflict integer NOT NULL DEFAULT 0 CHECK (content_conflict IN (0, 1)),
    times_seen       integer NOT NULL DEFAULT 1,
    outcome          text NOT NULL,
    paid             integer NOT NULL CHECK (paid IN (0, 1)),
    first_seen       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (reference_id, attempt)
) STRICT;
