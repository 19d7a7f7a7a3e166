-- Partner records follow the registry (issue 29). A record whose match key
-- names two or more current households (a national id entered twice) is
-- matched to none of them and marked, so that the registry's correction
-- finds it again (the key the correction took away is no longer in
-- registry.match_keys to search by); a household that arrives or changes
-- its national id finds the records under its key through the new index.
ALTER TABLE eligibility.partner_records ADD COLUMN ambiguous boolean NOT NULL DEFAULT false;
CREATE INDEX partner_records_match_key_idx ON eligibility.partner_records (match_key);
CREATE INDEX partner_records_ambiguous_idx ON eligibility.partner_records (agency, record_id)
    WHERE ambiguous;
