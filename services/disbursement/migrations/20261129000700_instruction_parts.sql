-- A tranche may be paid in parts: part 0 is the tranche as first instructed;
-- part n > 0 is the n-th top-up, instructed when an amendment raised the
-- entitlement's amount after the tranche had gone out. Each part is its own
-- instruction (own id, own reservation against the budget), and there is
-- one per (tranche, part) whatever happens.
ALTER TABLE disbursement.instructions
    ADD COLUMN part integer NOT NULL DEFAULT 0 CHECK (part >= 0);
ALTER TABLE disbursement.instructions
    DROP CONSTRAINT IF EXISTS instructions_crisis_id_household_id_kind_tranche_key;
ALTER TABLE disbursement.instructions
    ADD CONSTRAINT instructions_one_per_part UNIQUE (crisis_id, household_id, kind, tranche, part);
