-- See migrations/20261206000500_crisis_attention.sql.
ALTER TABLE disbursement.crises ADD COLUMN pass_failures integer NOT NULL DEFAULT 0;
ALTER TABLE disbursement.crises ADD COLUMN last_pass_error text;
ALTER TABLE disbursement.crises ADD COLUMN last_pass_failed_at text;
