-- The registry service's versioned copy of the social registry.
-- One row per household: the highest version seen, or a tombstone.
CREATE SCHEMA IF NOT EXISTS registry;

CREATE TABLE registry.households (
    household_id     text PRIMARY KEY,
    version          bigint  NOT NULL CHECK (version >= 1),
    removed          boolean NOT NULL DEFAULT false,
    area_code        text,
    governorate      text,
    district         text,
    members          integer CHECK (members >= 1),
    welfare_score    double precision CHECK (welfare_score >= 0 AND welfare_score <= 100),
    flags            text[]  NOT NULL DEFAULT '{}',
    programmes       text[]  NOT NULL DEFAULT '{}',
    payment_channel  text CHECK (payment_channel IN ('e_wallet', 'bank', 'cash_pickup')),
    payment_provider text,
    account_token    text,
    -- Personal identifiers live here and nowhere else.
    personal         jsonb,
    -- Provenance: which event set this row, and where it was read from, so a
    -- redelivered message is recognised as such.
    event_id         text    NOT NULL,
    src_partition    integer NOT NULL,
    src_offset       bigint  NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- A live household has every field; a tombstone may have none.
    CHECK (removed OR (area_code IS NOT NULL AND governorate IS NOT NULL AND members IS NOT NULL
                       AND welfare_score IS NOT NULL AND payment_channel IS NOT NULL))
);

CREATE INDEX households_governorate_idx ON registry.households (governorate) WHERE NOT removed;
CREATE INDEX households_district_idx ON registry.households (district) WHERE NOT removed;

-- The documented read-only view other services use: live households without
-- personal data.
CREATE VIEW registry.households_v AS
SELECT household_id, version, area_code, governorate, district, members, welfare_score,
       flags, programmes, payment_channel, payment_provider, account_token, updated_at
FROM registry.households
WHERE NOT removed;
