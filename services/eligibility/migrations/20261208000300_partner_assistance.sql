-- Partner agencies (issue 29): their signing keys, the assistance they
-- recorded on sumud.assistance.v1 (one row per agency record, matched to a
-- household through the registry's match keys), every message judged once,
-- and the ledger now listing partners' assistance beside the crises'.

CREATE TABLE eligibility.partner_keys (
    kid        text PRIMARY KEY,
    agency     text NOT NULL,
    public_x   text NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE eligibility.partner_records (
    agency       text NOT NULL,
    record_id    text NOT NULL,
    match_key    text NOT NULL,
    -- The registry household the match key named when the record arrived
    -- (NULL: none yet).
    household_id text,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     text NOT NULL,
    period_from  text NOT NULL,
    period_to    text NOT NULL,
    programme    text,
    status       text NOT NULL CHECK (status IN ('given', 'reversed')),
    last_jti     text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency, record_id),
    CHECK (period_from <= period_to)
);
CREATE INDEX partner_records_household_idx ON eligibility.partner_records (household_id);

-- Every partner message whose signature verified, judged once per key:
-- its position, and the refusal if it was refused.
CREATE TABLE eligibility.partner_messages (
    jti              text NOT NULL,
    kid              text NOT NULL,
    agency           text NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    refused_code     text,
    refused_detail   text,
    judged_at        timestamptz NOT NULL DEFAULT now(),
    -- Per key: a revoked or rival key cannot use up another's message ids.
    PRIMARY KEY (kid, jti)
);

-- The partners' part of a decision's assisted_minor, so that a partner's
-- later record re-weighs the decision without counting itself twice.
ALTER TABLE eligibility.entitlements
    ADD COLUMN partner_minor bigint NOT NULL DEFAULT 0 CHECK (partner_minor >= 0);
-- The most a decision ever stood for over its period: a decision lowered
-- from the next tranche on may already have paid tranches at the higher
-- amount, so the ledger never counts it below this.
ALTER TABLE eligibility.entitlements
    ADD COLUMN ledger_floor_minor bigint NOT NULL DEFAULT 0 CHECK (ledger_floor_minor >= 0);

DROP VIEW eligibility.assistance_ledger;
CREATE VIEW eligibility.assistance_ledger AS
SELECT e.household_id,
       'crisis'::text AS source,
       e.crisis_id AS source_id,
       e.entitlement_id AS reference,
       e.kind,
       e.amount_minor,
       e.tranches,
       GREATEST(e.amount_minor * e.tranches, e.ledger_floor_minor) AS total_minor,
       e.currency,
       c.definition ->> 'starts_on' AS period_from,
       c.definition ->> 'ends_on' AS period_to,
       e.decided_at AS recorded_at
FROM eligibility.entitlements e
JOIN eligibility.crises c ON c.crisis_id = e.crisis_id
WHERE e.status = 'entitled'
UNION ALL
SELECT p.household_id, 'partner', p.agency, p.record_id, 'partner', p.amount_minor, 1,
       p.amount_minor, p.currency, p.period_from, p.period_to, p.updated_at
FROM eligibility.partner_records p
WHERE p.status = 'given' AND p.household_id IS NOT NULL;
