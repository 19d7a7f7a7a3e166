-- Overlap between crises (see the PostgreSQL migration of the same name).
ALTER TABLE eligibility.entitlements
    ADD COLUMN assisted_minor integer NOT NULL DEFAULT 0 CHECK (assisted_minor >= 0);
ALTER TABLE eligibility.entitlements ADD COLUMN assisted_by text;

CREATE VIEW eligibility.assistance_ledger AS
SELECT e.household_id,
       'crisis' AS source,
       e.crisis_id AS source_id,
       e.entitlement_id AS reference,
       e.kind,
       e.amount_minor,
       e.tranches,
       e.amount_minor * e.tranches AS total_minor,
       e.currency,
       json_extract(c.definition, '$.starts_on') AS period_from,
       json_extract(c.definition, '$.ends_on') AS period_to,
       e.decided_at AS recorded_at
FROM entitlements e
JOIN crises c ON c.crisis_id = e.crisis_id
WHERE e.status = 'entitled';
