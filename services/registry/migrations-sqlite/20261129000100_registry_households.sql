-- The registry service's versioned copy of the social registry, on the
-- embedded default's SQLite file (`registry` is an attached database; see
-- shared/src/db/sqlite.rs). The same table as migrations/ builds on
-- PostgreSQL: text[] columns hold JSON arrays, jsonb holds JSON text and
-- timestamps are RFC 3339 text in UTC.
CREATE TABLE registry.households (
    household_id     text PRIMARY KEY NOT NULL,
    version          integer NOT NULL CHECK (version >= 1),
    removed          integer NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    area_code        text,
    governorate      text,
    district         text,
    members          integer CHECK (members >= 1),
    welfare_score    real CHECK (welfare_score >= 0 AND welfare_score <= 100),
    flags            text NOT NULL DEFAULT '[]' CHECK (json_type(flags) = 'array'),
    programmes       text NOT NULL DEFAULT '[]' CHECK (json_type(programmes) = 'array'),
    payment_channel  text CHECK (payment_channel IN ('e_wallet', 'bank', 'cash_pickup')),
    payment_provider text,
    account_token    text,
    -- Personal identifiers live here and nowhere else.
    personal         text CHECK (personal IS NULL OR json_type(personal) = 'object'),
    event_id         text    NOT NULL,
    src_partition    integer NOT NULL,
    src_offset       integer NOT NULL,
    updated_at       text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (removed OR (area_code IS NOT NULL AND governorate IS NOT NULL AND members IS NOT NULL
                       AND welfare_score IS NOT NULL AND payment_channel IS NOT NULL))
) STRICT;

CREATE INDEX registry.households_governorate_idx ON households (governorate) WHERE NOT removed;
CREATE INDEX registry.households_district_idx ON households (district) WHERE NOT removed;

-- The documented read-only view other services use: live households without
-- personal data.
CREATE VIEW registry.households_v AS
SELECT household_id, version, area_code, governorate, district, members, welfare_score,
       flags, programmes, payment_channel, payment_provider, account_token, updated_at
FROM households
WHERE NOT removed;
