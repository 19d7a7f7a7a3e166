-- Overlap between crises: what a decision was weighed against, and the
-- assistance ledger it was weighed from.
--
-- assisted_minor / assisted_by: the assistance the household already held
-- for a period overlapping the crisis's when the decision was first made
-- (0 / NULL: none). Kept on the decision so that an amendment or a registry
-- change re-prices it under the same overlap rule.
ALTER TABLE eligibility.entitlements
    ADD COLUMN assisted_minor bigint NOT NULL DEFAULT 0 CHECK (assisted_minor >= 0),
    ADD COLUMN assisted_by text;

-- One row per assistance a household holds: today every entitled decision
-- of every crisis, with the crisis's period (ISO dates, inclusive). The
-- expansion weighs the rows of other crises whose period overlaps its own;
-- `sumud ledger` reads it.
CREATE VIEW eligibility.assistance_ledger AS
SELECT e.household_id,
       'crisis'::text AS source,
       e.crisis_id AS source_id,
       e.entitlement_id AS reference,
       e.kind,
       e.amount_minor,
       e.tranches,
       e.amount_minor * e.tranches AS total_minor,
       e.currency,
       c.definition ->> 'starts_on' AS period_from,
       c.definition ->> 'ends_on' AS period_to,
       e.decided_at AS recorded_at
FROM eligibility.entitlements e
JOIN eligibility.crises c ON c.crisis_id = e.crisis_id
WHERE e.status = 'entitled';
