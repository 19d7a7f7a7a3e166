-- Social-service referrals (issue 29): the playbook's referral rules refer
-- households of a crisis's areas to a service beside cash; the provider's
-- signed answers move them. Every change is published on
-- sumud.referrals.v1 from the table itself (a table outbox).

-- Eligibility's outbox (the shared relay's shape, shared/src/outbox.rs):
-- Sumud's assistance shared with partners.
CREATE TABLE eligibility.outbox (
    seq          bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      bytea NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON eligibility.outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_key_idx ON eligibility.outbox (key);

-- One referral per crisis, household and service.
CREATE TABLE eligibility.referrals (
    referral_id  text PRIMARY KEY,
    crisis_id    text NOT NULL REFERENCES eligibility.crises (crisis_id),
    household_id text NOT NULL,
    area_code    text NOT NULL,
    governorate  text NOT NULL,
    service      text NOT NULL,
    provider     text NOT NULL,
    status       text NOT NULL CHECK (status IN ('referred', 'accepted', 'served', 'declined')),
    reason       text NOT NULL,
    note         text,
    referred_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- The table is its own outbox, as entitlements are: every change bumps
    -- change_seq, and a relay publishes rows whose published mark lags.
    change_seq   bigint NOT NULL DEFAULT nextval('eligibility.change_seq'),
    published_seq bigint,
    UNIQUE (crisis_id, household_id, service)
);
CREATE INDEX referrals_household_idx ON eligibility.referrals (household_id);
CREATE INDEX referrals_unpublished_idx ON eligibility.referrals (change_seq)
    WHERE published_seq IS DISTINCT FROM change_seq;

-- Every acknowledgement that moved a referral, in order: what `explain`
-- shows a social worker.
CREATE TABLE eligibility.referral_answers (
    referral_id text NOT NULL REFERENCES eligibility.referrals (referral_id),
    status      text NOT NULL,
    note        text,
    agency      text NOT NULL,
    kid         text NOT NULL,
    jti         text NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kid, jti)
);
CREATE INDEX referral_answers_referral_idx ON eligibility.referral_answers (referral_id);
