-- The eligibility service on the embedded default's SQLite file
-- (`eligibility` is an attached database): its projection of crises, the
-- entitlements it decided (which double as the outbox of decision events),
-- and the decision trail — the tables migrations/ builds on PostgreSQL, in
-- their current shape. jsonb holds JSON text, timestamps are RFC 3339 text
-- in UTC.
CREATE TABLE eligibility.crises (
    crisis_id       text PRIMARY KEY NOT NULL,
    state           text NOT NULL CHECK (state IN ('proposed', 'active', 'closed')),
    revision        integer NOT NULL,
    definition      text NOT NULL CHECK (json_type(definition) = 'object'),
    resolved        text NOT NULL CHECK (json_type(resolved) = 'object'),
    currency        text NOT NULL,
    budget_minor    integer NOT NULL CHECK (budget_minor > 0),
    -- Sum of committed_minor of the crisis's entitlements; the CHECK makes
    -- the database refuse any statement that would exceed the budget.
    committed_minor integer NOT NULL DEFAULT 0,
    updated_at      text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- The W3C trace context of the crisis event that last changed the crisis.
    traceparent     text,
    CHECK (committed_minor >= 0 AND committed_minor <= budget_minor)
) STRICT;

-- PostgreSQL's eligibility.change_seq sequence: one row, the last value.
CREATE TABLE eligibility.change_counter (
    singleton integer PRIMARY KEY NOT NULL CHECK (singleton = 1),
    value     integer NOT NULL
) STRICT;
INSERT INTO eligibility.change_counter (singleton, value) VALUES (1, 0);

CREATE TABLE eligibility.entitlements (
    entitlement_id   text PRIMARY KEY NOT NULL,
    crisis_id        text NOT NULL REFERENCES crises (crisis_id),
    household_id     text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('vertical', 'horizontal')),
    status           text NOT NULL CHECK (status IN ('entitled', 'waitlisted', 'cancelled')),
    amount_minor     integer NOT NULL CHECK (amount_minor >= 0),
    currency         text NOT NULL,
    tranches         integer NOT NULL CHECK (tranches >= 1),
    interval_days    integer NOT NULL CHECK (interval_days >= 0),
    -- What this entitlement holds against the crisis budget.
    committed_minor  integer NOT NULL CHECK (committed_minor >= 0),
    priority         integer NOT NULL,
    -- The household as decided on (a snapshot: later registry changes keep history).
    members          integer NOT NULL,
    welfare_score    real NOT NULL,
    area_code        text NOT NULL,
    governorate      text NOT NULL,
    district         text,
    crisis_revision  integer NOT NULL,
    registry_version integer NOT NULL,
    playbook         text NOT NULL,
    reason           text NOT NULL,
    decided_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Outbox: a changed row is republished; change_seq orders publication.
    -- The triggers below number every insert and every change of a
    -- decision, as PostgreSQL's statements do with nextval.
    change_seq       integer NOT NULL DEFAULT 0,
    published_seq    integer,
    UNIQUE (crisis_id, household_id, kind),
    CHECK (status = 'entitled' OR committed_minor = 0)
) STRICT;
CREATE INDEX eligibility.entitlements_unpublished_idx ON entitlements (change_seq)
    WHERE published_seq IS NOT change_seq;
CREATE INDEX eligibility.entitlements_household_idx ON entitlements (household_id);

CREATE TRIGGER eligibility.entitlements_numbered_insert AFTER INSERT ON entitlements
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE entitlements SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER eligibility.entitlements_numbered_update
AFTER UPDATE OF status, amount_minor, tranches, interval_days, committed_minor, crisis_revision,
                reason, registry_version ON entitlements
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE entitlements SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;

-- Every change to an existing decision, append-only: the decision trail.
CREATE TABLE eligibility.decision_log (
    seq             integer PRIMARY KEY AUTOINCREMENT,
    at              text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    entitlement_id  text NOT NULL,
    crisis_id       text NOT NULL,
    household_id    text NOT NULL,
    status          text NOT NULL,
    amount_minor    integer NOT NULL,
    crisis_revision integer NOT NULL,
    reason          text NOT NULL
) STRICT;
CREATE INDEX eligibility.decision_log_household_idx ON decision_log (household_id, crisis_id);
