-- Grievances; see migrations/20261207000700_grievances.sql.
CREATE TABLE disbursement.grievances (
    grievance_id   integer PRIMARY KEY AUTOINCREMENT,
    crisis_id      text NOT NULL,
    household_id   text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('not_included', 'wrong_amount', 'not_received')),
    channel        text NOT NULL CHECK (channel IN ('hotline', 'field')),
    filed_by       text NOT NULL CHECK (filed_by <> ''),
    instruction_id text,
    area_code      text,
    note           text NOT NULL DEFAULT '',
    state          text NOT NULL DEFAULT 'open',
    assigned_to    text,
    assigned_at    text,
    outcome        text,
    resolved_by    text,
    resolved_at    text,
    answer         text,
    explanation    text,
    created_at     text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT grievances_state CHECK (
        (state = 'open' AND assigned_to IS NULL AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'assigned' AND assigned_to IS NOT NULL AND assigned_at IS NOT NULL
            AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'resolved' AND outcome IS NOT NULL AND resolved_at IS NOT NULL
            AND resolved_by IS NOT NULL AND answer IS NOT NULL AND explanation IS NOT NULL)),
    CONSTRAINT grievances_outcome CHECK (outcome IN ('explained', 'upheld', 'unreachable'))
) STRICT;
CREATE UNIQUE INDEX disbursement.grievances_one_unresolved
    ON grievances (crisis_id, household_id, kind) WHERE state <> 'resolved';
CREATE INDEX disbursement.grievances_state_idx ON grievances (state);
CREATE TRIGGER disbursement.grievances_resolved_final BEFORE UPDATE ON grievances
    WHEN OLD.state = 'resolved'
BEGIN
    SELECT RAISE(ABORT, 'grievance is resolved: a resolved grievance cannot change');
END;
CREATE TRIGGER disbursement.grievances_resolved_kept BEFORE DELETE ON grievances
    WHEN OLD.state = 'resolved'
BEGIN
    SELECT RAISE(ABORT, 'grievance is resolved: a resolved grievance cannot change');
END;
