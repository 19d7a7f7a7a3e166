-- The W3C trace context of the crisis event that last changed a crisis, so
-- that the instructions the scheduler creates for it later (the
-- instructions table is its own outbox) continue the crisis's trace.
ALTER TABLE disbursement.crises ADD COLUMN IF NOT EXISTS traceparent text;
