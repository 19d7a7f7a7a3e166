-- The W3C trace context of the crisis event that last changed a crisis, so
-- that the decisions published for it (the entitlements table is its own
-- outbox, written set-based) continue the crisis's trace.
ALTER TABLE eligibility.crises ADD COLUMN IF NOT EXISTS traceparent text;
