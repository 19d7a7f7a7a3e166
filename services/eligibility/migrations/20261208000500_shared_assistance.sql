-- Sumud's own assistance on sumud.assistance.v1 (issue 29): a pass reads
-- the decisions changed since last shared with the partner agencies and
-- writes their records (given, corrected, reversed) to eligibility's
-- outbox in the same transaction that marks them shared.

-- The change of the decision last shared (NULL: never looked at).
ALTER TABLE eligibility.entitlements ADD COLUMN shared_seq bigint;
-- Whether the partners hold it as given (a later cancellation is reversed).
ALTER TABLE eligibility.entitlements ADD COLUMN shared_live boolean NOT NULL DEFAULT false;
-- The opaque id partners know the current record by: a fresh one each time
-- the decision is given again after a reversal, and never the household id.
ALTER TABLE eligibility.entitlements ADD COLUMN shared_record text;
CREATE INDEX entitlements_unshared_idx ON eligibility.entitlements (change_seq)
    WHERE shared_seq IS DISTINCT FROM change_seq;
