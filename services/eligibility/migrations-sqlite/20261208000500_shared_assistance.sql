-- See the PostgreSQL migration of the same name.
ALTER TABLE eligibility.entitlements ADD COLUMN shared_seq integer;
ALTER TABLE eligibility.entitlements ADD COLUMN shared_live integer NOT NULL DEFAULT 0;
ALTER TABLE eligibility.entitlements ADD COLUMN shared_record text;
CREATE INDEX eligibility.entitlements_unshared_idx ON entitlements (change_seq)
    WHERE shared_seq IS NOT change_seq;
