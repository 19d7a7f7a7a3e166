-- The alerts service: every CAP alert received (the record of what the
-- early-warning feed said and what Sumud did about it), indicator time
-- series, the triggers fired by indicator rules, and the outbox of signed
-- commands for sumud.control.v1.
CREATE SCHEMA IF NOT EXISTS alerts;

CREATE TABLE alerts.alerts (
    sender       text NOT NULL,
    identifier   text NOT NULL,
    sent         timestamptz NOT NULL,
    status       text NOT NULL,
    msg_type     text NOT NULL,
    refs         text[] NOT NULL DEFAULT '{}',
    events       text[] NOT NULL DEFAULT '{}',
    areas        text[] NOT NULL DEFAULT '{}',
    outcome      text NOT NULL,
    rule_id      text,
    rule_version integer,
    crisis_id    text,
    command      jsonb,
    document     text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    -- CAP: the identifier is unique per sender.
    PRIMARY KEY (sender, identifier)
);
CREATE INDEX alerts_crisis_idx ON alerts.alerts (crisis_id) WHERE crisis_id IS NOT NULL;

CREATE TABLE alerts.readings (
    indicator   text NOT NULL,
    area        text NOT NULL,
    source      text NOT NULL,
    period_end  date NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (indicator, area, source, period_end)
);

CREATE TABLE alerts.triggers (
    rule_id      text NOT NULL,
    rule_version integer NOT NULL,
    area         text NOT NULL,
    period_end   date NOT NULL,
    crisis_id    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, area, period_end)
);

CREATE TABLE alerts.outbox (
    seq          bigserial PRIMARY KEY,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      bytea NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON alerts.outbox (seq) WHERE published_at IS NULL;
