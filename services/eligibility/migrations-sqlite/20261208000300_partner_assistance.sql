-- See the PostgreSQL migration of the same name.
CREATE TABLE eligibility.partner_keys (
    kid        text PRIMARY KEY,
    agency     text NOT NULL,
    public_x   text NOT NULL,
    added_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at text
);

CREATE TABLE eligibility.partner_records (
    agency       text NOT NULL,
    record_id    text NOT NULL,
    match_key    text NOT NULL,
    household_id text,
    amount_minor integer NOT NULL CHECK (amount_minor > 0),
    currency     text NOT NULL,
    period_from  text NOT NULL,
    period_to    text NOT NULL,
    programme    text,
    status       text NOT NULL CHECK (status IN ('given', 'reversed')),
    last_jti     text NOT NULL,
    updated_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (agency, record_id),
    CHECK (period_from <= period_to)
);
CREATE INDEX eligibility.partner_records_household_idx ON partner_records (household_id);

CREATE TABLE eligibility.partner_messages (
    jti              text NOT NULL,
    kid              text NOT NULL,
    agency           text NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    integer NOT NULL,
    refused_code     text,
    refused_detail   text,
    judged_at        text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (kid, jti)
);

ALTER TABLE eligibility.entitlements
    ADD COLUMN partner_minor integer NOT NULL DEFAULT 0 CHECK (partner_minor >= 0);
-- The most a decision ever stood for over its period: a decision lowered
-- from the next tranche on may already have paid tranches at the higher
-- amount, so the ledger never counts it below this.
ALTER TABLE eligibility.entitlements
    ADD COLUMN ledger_floor_minor integer NOT NULL DEFAULT 0 CHECK (ledger_floor_minor >= 0);

DROP VIEW eligibility.assistance_ledger;
CREATE VIEW eligibility.assistance_ledger AS
SELECT e.household_id,
       'crisis' AS source,
       e.crisis_id AS source_id,
       e.entitlement_id AS reference,
       e.kind,
       e.amount_minor,
       e.tranches,
       max(e.amount_minor * e.tranches, e.ledger_floor_minor) AS total_minor,
       e.currency,
       json_extract(c.definition, '$.starts_on') AS period_from,
       json_extract(c.definition, '$.ends_on') AS period_to,
       e.decided_at AS recorded_at
FROM entitlements e
JOIN crises c ON c.crisis_id = e.crisis_id
WHERE e.status = 'entitled'
UNION ALL
SELECT p.household_id, 'partner', p.agency, p.record_id, 'partner', p.amount_minor, 1,
       p.amount_minor, p.currency, p.period_from, p.period_to, p.updated_at
FROM partner_records p
WHERE p.status = 'given' AND p.household_id IS NOT NULL;
