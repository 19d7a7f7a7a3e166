-- Incidents the payment state machine finds; see
-- migrations/20261206000100_payment_incidents.sql.
CREATE TABLE disbursement.incidents (
    incident_id    integer PRIMARY KEY AUTOINCREMENT,
    instruction_id text NOT NULL,
    crisis_id      text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('duplicate_payment', 'paid_after_failure')),
    attempt        integer NOT NULL,
    provider       text NOT NULL,
    provider_ref   text,
    event_id       text NOT NULL UNIQUE,
    recorded_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resolved_at    text
) STRICT;
CREATE INDEX disbursement.incidents_by_crisis ON incidents (crisis_id);
