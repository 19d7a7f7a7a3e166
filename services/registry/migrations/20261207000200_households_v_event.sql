-- The published read model gains the id of the event that set each record,
-- so that `sumud explain` can name the registry event behind a decision.
-- Added at the end: readers that name their columns are unaffected.
CREATE OR REPLACE VIEW registry.households_v AS
SELECT household_id, version, area_code, governorate, district, members, welfare_score,
       flags, programmes, payment_channel, payment_provider, account_token, updated_at,
       event_id
FROM registry.households
WHERE NOT removed;
