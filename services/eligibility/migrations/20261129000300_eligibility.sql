-- The eligibility service: its projection of crises, the entitlements it
-- decided (which double as the outbox of decision events), and a log of
-- changes to decisions.
CREATE SCHEMA IF NOT EXISTS eligibility;

CREATE TABLE eligibility.crises (
    crisis_id       text PRIMARY KEY,
    state           text NOT NULL CHECK (state IN ('proposed', 'active', 'closed')),
    revision        integer NOT NULL,
    definition      jsonb NOT NULL,
    resolved        jsonb NOT NULL,
    currency        text NOT NULL,
    budget_minor    bigint NOT NULL CHECK (budget_minor > 0),
    -- Sum of committed_minor of the crisis's entitlements; the CHECK makes
    -- the database refuse any statement that would exceed the budget.
    committed_minor bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (committed_minor >= 0 AND committed_minor <= budget_minor)
);

CREATE SEQUENCE eligibility.change_seq;

CREATE TABLE eligibility.entitlements (
    entitlement_id   text PRIMARY KEY,
    crisis_id        text NOT NULL REFERENCES eligibility.crises (crisis_id),
    household_id     text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('vertical', 'horizontal')),
    status           text NOT NULL CHECK (status IN ('entitled', 'waitlisted', 'cancelled')),
    amount_minor     bigint NOT NULL CHECK (amount_minor >= 0),
    currency         text NOT NULL,
    tranches         integer NOT NULL CHECK (tranches >= 1),
    interval_days    integer NOT NULL CHECK (interval_days >= 0),
    -- What this entitlement holds against the crisis budget.
    committed_minor  bigint NOT NULL CHECK (committed_minor >= 0),
    priority         integer NOT NULL,
    -- The household as decided on (a snapshot: later registry changes keep history).
    members          integer NOT NULL,
    welfare_score    double precision NOT NULL,
    area_code        text NOT NULL,
    governorate      text NOT NULL,
    district         text,
    crisis_revision  integer NOT NULL,
    registry_version bigint NOT NULL,
    playbook         text NOT NULL,
    reason           text NOT NULL,
    decided_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Outbox: a changed row is republished; change_seq orders publication.
    change_seq       bigint NOT NULL DEFAULT nextval('eligibility.change_seq'),
    published_seq    bigint,
    UNIQUE (crisis_id, household_id, kind),
    CHECK (status = 'entitled' OR committed_minor = 0)
);
CREATE INDEX entitlements_unpublished_idx ON eligibility.entitlements (change_seq)
    WHERE published_seq IS DISTINCT FROM change_seq;
CREATE INDEX entitlements_household_idx ON eligibility.entitlements (household_id);

-- Every change to an existing decision, append-only: the decision trail.
CREATE TABLE eligibility.decision_log (
    seq             bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    entitlement_id  text NOT NULL,
    crisis_id       text NOT NULL,
    household_id    text NOT NULL,
    status          text NOT NULL,
    amount_minor    bigint NOT NULL,
    crisis_revision integer NOT NULL,
    reason          text NOT NULL
);
CREATE INDEX decision_log_household_idx ON eligibility.decision_log (household_id, crisis_id);
