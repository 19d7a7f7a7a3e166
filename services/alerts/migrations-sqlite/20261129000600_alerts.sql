-- The alerts service on the embedded default's SQLite file (`alerts` is an
-- attached database): every CAP alert received, indicator time series, the
-- triggers fired by indicator rules, and the outbox of signed commands for
-- sumud.control.v1 — the tables migrations/ builds on PostgreSQL. text[]
-- columns hold JSON arrays, jsonb holds JSON text, dates are YYYY-MM-DD and
-- timestamps RFC 3339 text in UTC.
CREATE TABLE alerts.alerts (
    sender       text NOT NULL,
    identifier   text NOT NULL,
    sent         text NOT NULL,
    status       text NOT NULL,
    msg_type     text NOT NULL,
    refs         text NOT NULL DEFAULT '[]' CHECK (json_type(refs) = 'array'),
    events       text NOT NULL DEFAULT '[]' CHECK (json_type(events) = 'array'),
    areas        text NOT NULL DEFAULT '[]' CHECK (json_type(areas) = 'array'),
    outcome      text NOT NULL,
    rule_id      text,
    rule_version integer,
    crisis_id    text,
    command      text CHECK (command IS NULL OR json_valid(command)),
    document     text NOT NULL,
    received_at  text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- CAP: the identifier is unique per sender.
    PRIMARY KEY (sender, identifier)
) STRICT;
CREATE INDEX alerts.alerts_crisis_idx ON alerts (crisis_id) WHERE crisis_id IS NOT NULL;

CREATE TABLE alerts.readings (
    indicator   text NOT NULL,
    area        text NOT NULL,
    source      text NOT NULL,
    period_end  text NOT NULL CHECK (period_end = date(period_end)),
    value       real NOT NULL,
    unit        text,
    received_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (indicator, area, source, period_end)
) STRICT;

CREATE TABLE alerts.triggers (
    rule_id      text NOT NULL,
    rule_version integer NOT NULL,
    area         text NOT NULL,
    period_end   text NOT NULL CHECK (period_end = date(period_end)),
    crisis_id    text NOT NULL,
    created_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (rule_id, area, period_end)
) STRICT;

CREATE TABLE alerts.outbox (
    seq          integer PRIMARY KEY AUTOINCREMENT,
    topic        text NOT NULL,
    key          text NOT NULL,
    payload      blob NOT NULL,
    traceparent  text,
    created_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at text
) STRICT;
CREATE INDEX alerts.outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
