-- See migrations/20261208000500_verification_task_lifecycle.sql. SQLite
-- cannot drop a column's UNIQUE nor add a CHECK to a table: the table is
-- rebuilt with the lifecycle's columns and constraints.
CREATE TABLE disbursement.verification_tasks_lifecycle (
    task_id            integer PRIMARY KEY AUTOINCREMENT,
    household_id       text NOT NULL,
    instruction_id     text NOT NULL,
    attempt            integer NOT NULL,
    reason_code        text NOT NULL,
    created_at         text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    resolved_at        text,
    state              text NOT NULL DEFAULT 'open',
    assigned_to        text,
    assigned_at        text,
    outcome            text,
    resolved_by        text,
    note               text,
    corrected_channel  text,
    corrected_provider text,
    corrected_token    text,
    reissued_attempt   integer,
    CONSTRAINT verification_tasks_one_per_attempt UNIQUE (instruction_id, attempt),
    CONSTRAINT verification_tasks_state CHECK (
        (state = 'open' AND assigned_to IS NULL AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'assigned' AND assigned_to IS NOT NULL AND assigned_at IS NOT NULL
            AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'resolved' AND outcome IS NOT NULL AND resolved_at IS NOT NULL
            AND resolved_by IS NOT NULL)),
    CONSTRAINT verification_tasks_outcome CHECK (
        outcome IN ('details_corrected', 'ineligible', 'unreachable')),
    CONSTRAINT verification_tasks_correction CHECK (
        CASE WHEN outcome = 'details_corrected'
             THEN corrected_channel IS NOT NULL AND corrected_provider IS NOT NULL
                  AND corrected_token IS NOT NULL AND reissued_attempt = attempt + 1
             ELSE corrected_channel IS NULL AND corrected_provider IS NULL
                  AND corrected_token IS NULL AND reissued_attempt IS NULL END)
) STRICT;

INSERT INTO disbursement.verification_tasks_lifecycle
    (task_id, household_id, instruction_id, attempt, reason_code, created_at, resolved_at,
     state, outcome, resolved_by, note)
SELECT t.task_id, t.household_id, t.instruction_id,
       coalesce((SELECT i.attempt FROM disbursement.instructions i
                 WHERE i.instruction_id = t.instruction_id), 1),
       t.reason_code, t.created_at, t.resolved_at,
       CASE WHEN t.resolved_at IS NULL THEN 'open' ELSE 'resolved' END,
       CASE WHEN t.resolved_at IS NULL THEN NULL ELSE 'unreachable' END,
       CASE WHEN t.resolved_at IS NULL THEN NULL ELSE 'migration' END,
       CASE WHEN t.resolved_at IS NULL THEN NULL
            ELSE 'resolved before task outcomes were recorded' END
FROM disbursement.verification_tasks t;

DROP TABLE disbursement.verification_tasks;
ALTER TABLE disbursement.verification_tasks_lifecycle RENAME TO verification_tasks;

CREATE UNIQUE INDEX disbursement.verification_tasks_one_unresolved
    ON verification_tasks (instruction_id) WHERE state <> 'resolved';
CREATE INDEX disbursement.verification_tasks_state_idx ON verification_tasks (state);

CREATE TRIGGER disbursement.verification_tasks_resolved_final BEFORE UPDATE ON verification_tasks
    WHEN OLD.state = 'resolved'
BEGIN
    SELECT RAISE(ABORT, 'verification task is resolved: a resolved task cannot change');
END;
CREATE TRIGGER disbursement.verification_tasks_resolved_kept BEFORE DELETE ON verification_tasks
    WHEN OLD.state = 'resolved'
BEGIN
    SELECT RAISE(ABORT, 'verification task is resolved: a resolved task cannot change');
END;

CREATE TABLE disbursement.entitlement_stops (
    crisis_id    text NOT NULL,
    household_id text NOT NULL,
    task_id      integer NOT NULL UNIQUE REFERENCES verification_tasks (task_id),
    stopped_at   text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (crisis_id, household_id)
) STRICT;
