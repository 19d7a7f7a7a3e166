-- The agencies' match key of each household with a national id
-- (shared/src/match_key.rs), written when SUMUD_MATCH_KEY is set: partner
-- agencies' records of assistance name a household by it, and no identity
-- ever travels. Keyed by household and version: a reader joins the
-- household's current version in registry.households_v.
CREATE TABLE registry.match_keys (
    household_id text PRIMARY KEY,
    version      bigint NOT NULL,
    match_key    text NOT NULL
);
CREATE INDEX match_keys_key_idx ON registry.match_keys (match_key);
