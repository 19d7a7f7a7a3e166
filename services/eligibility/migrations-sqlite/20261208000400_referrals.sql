-- See the PostgreSQL migration of the same name.
CREATE TABLE eligibility.outbox (
    seq          integer PRIMARY KEY AUTOINCREMENT,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      blob NOT NULL,
    traceparent  text,
    created_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at text
) STRICT;
CREATE INDEX eligibility.outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX eligibility.outbox_key_idx ON outbox (key);

CREATE TABLE eligibility.referrals (
    referral_id  text PRIMARY KEY NOT NULL,
    crisis_id    text NOT NULL REFERENCES crises (crisis_id),
    household_id text NOT NULL,
    area_code    text NOT NULL,
    governorate  text NOT NULL,
    service      text NOT NULL,
    provider     text NOT NULL,
    status       text NOT NULL CHECK (status IN ('referred', 'accepted', 'served', 'declined')),
    reason       text NOT NULL,
    note         text,
    referred_at  text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    change_seq   integer NOT NULL DEFAULT 0,
    published_seq integer,
    UNIQUE (crisis_id, household_id, service)
);
CREATE INDEX eligibility.referrals_household_idx ON referrals (household_id);
CREATE INDEX eligibility.referrals_unpublished_idx ON referrals (change_seq)
    WHERE published_seq IS NOT change_seq;
-- Numbered by the counter decisions use (see 20261129000300).
CREATE TRIGGER eligibility.referrals_numbered_insert AFTER INSERT ON referrals
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE referrals SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER eligibility.referrals_numbered_update AFTER UPDATE OF status, note ON referrals
BEGIN
    UPDATE change_counter SET value = value + 1;
    UPDATE referrals SET change_seq = (SELECT value FROM change_counter) WHERE rowid = NEW.rowid;
END;

CREATE TABLE eligibility.referral_answers (
    referral_id text NOT NULL REFERENCES referrals (referral_id),
    status      text NOT NULL,
    note        text,
    agency      text NOT NULL,
    kid         text NOT NULL,
    jti         text NOT NULL,
    answered_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (kid, jti)
);
CREATE INDEX eligibility.referral_answers_referral_idx ON referral_answers (referral_id);
