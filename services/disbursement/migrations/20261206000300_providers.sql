-- The payment providers Sumud pays through: who may report on the status
-- topic. A report is accepted only from the provider that holds the
-- instruction and is registered here; a provider with a key must sign its
-- reports with it (docs/contracts.md, "Signing a status report").
-- Registered and revoked with `sumud providers add|revoke`.
CREATE TABLE disbursement.providers (
    provider_id   text PRIMARY KEY,
    -- Ed25519 public key (JWK `x`, base64url) and its key id; both NULL
    -- for a provider that cannot sign (its reports are then bound only to
    -- the instruction it holds).
    kid           text,
    public_x      text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK ((kid IS NULL) = (public_x IS NULL))
);
