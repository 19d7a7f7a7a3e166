-- Incidents the payment state machine finds (payment_state.rs): a reference
-- paid twice (two successes with different provider references) or paid
-- after it was given up on and its money released. Recorded, never
-- silently absorbed: reconcile and the dashboard show them until an
-- operator resolves them with the provider.
CREATE TABLE disbursement.incidents (
    incident_id    bigserial PRIMARY KEY,
    instruction_id text NOT NULL,
    crisis_id      text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('duplicate_payment', 'paid_after_failure')),
    attempt        integer NOT NULL,
    provider       text NOT NULL,
    provider_ref   text,
    -- The status event that revealed it: a redelivery records nothing new.
    event_id       text NOT NULL UNIQUE,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);
CREATE INDEX incidents_by_crisis ON disbursement.incidents (crisis_id);
