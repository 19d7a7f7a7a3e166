-- The payment providers Sumud pays through; see
-- migrations/20261206000300_providers.sql.
CREATE TABLE disbursement.providers (
    provider_id   text PRIMARY KEY NOT NULL,
    kid           text,
    public_x      text,
    registered_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at    text,
    CHECK ((kid IS NULL) = (public_x IS NULL))
) STRICT;
