-- See the PostgreSQL migration of the same name.
ALTER TABLE eligibility.partner_records ADD COLUMN ambiguous integer NOT NULL DEFAULT 0;
CREATE INDEX eligibility.partner_records_match_key_idx ON partner_records (match_key);
CREATE INDEX eligibility.partner_records_ambiguous_idx ON partner_records (agency, record_id)
    WHERE ambiguous;
