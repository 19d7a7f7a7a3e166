-- A crisis whose scheduler pass fails for a reason of its own (its data
-- breaks a constraint, say) is left alone for a while and tried again,
-- while every other crisis keeps paying (scheduler.rs, `isolated`). The
-- failures are kept here, beside the metric, so that the dashboard can
-- show which crisis is stuck and why: how many passes failed, and the
-- last error (cleared by the next pass that succeeds).
ALTER TABLE disbursement.crises ADD COLUMN pass_failures integer NOT NULL DEFAULT 0;
ALTER TABLE disbursement.crises ADD COLUMN last_pass_error text;
ALTER TABLE disbursement.crises ADD COLUMN last_pass_failed_at timestamptz;
