-- Field-verification tasks get a lifecycle: open → assigned (to a named
-- field worker or team) → resolved, with an outcome (docs/field-teams.md).
-- The database holds the states, not only the code: the CHECKs below allow
-- exactly the three shapes of a row, and a resolved task is final (the
-- trigger refuses any change to it). A task is raised per failed attempt
-- (an instruction re-issued to corrected details that fails again raises a
-- new one), and an instruction has at most one unresolved task.
ALTER TABLE disbursement.verification_tasks
    ADD COLUMN attempt            integer,
    ADD COLUMN state              text NOT NULL DEFAULT 'open',
    ADD COLUMN assigned_to        text,
    ADD COLUMN assigned_at        timestamptz,
    ADD COLUMN outcome            text,
    ADD COLUMN resolved_by        text,
    ADD COLUMN note               text,
    ADD COLUMN corrected_channel  text,
    ADD COLUMN corrected_provider text,
    ADD COLUMN corrected_token    text,
    ADD COLUMN reissued_attempt   integer;

-- Tasks raised before this migration: the attempt that failed is the
-- instruction's current one (nothing re-issued a failed instruction).
-- Nothing resolved them before (no code set resolved_at); should a row say
-- otherwise, it is kept resolved and says that its outcome was not recorded.
UPDATE disbursement.verification_tasks t SET attempt = i.attempt
FROM disbursement.instructions i WHERE i.instruction_id = t.instruction_id;
UPDATE disbursement.verification_tasks SET attempt = 1 WHERE attempt IS NULL;
UPDATE disbursement.verification_tasks
SET state = 'resolved', outcome = 'unreachable', resolved_by = 'migration',
    note = 'resolved before task outcomes were recorded'
WHERE resolved_at IS NOT NULL;

ALTER TABLE disbursement.verification_tasks
    ALTER COLUMN attempt SET NOT NULL,
    DROP CONSTRAINT verification_tasks_instruction_id_key,
    ADD CONSTRAINT verification_tasks_one_per_attempt UNIQUE (instruction_id, attempt),
    ADD CONSTRAINT verification_tasks_state CHECK (
        (state = 'open' AND assigned_to IS NULL AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'assigned' AND assigned_to IS NOT NULL AND assigned_at IS NOT NULL
            AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'resolved' AND outcome IS NOT NULL AND resolved_at IS NOT NULL
            AND resolved_by IS NOT NULL)),
    ADD CONSTRAINT verification_tasks_outcome CHECK (
        outcome IN ('details_corrected', 'ineligible', 'unreachable')),
    -- A corrected destination (tokens only) and the attempt re-issued to it
    -- go with `details_corrected`, and only with it.
    ADD CONSTRAINT verification_tasks_correction CHECK (
        CASE WHEN outcome = 'details_corrected'
             THEN corrected_channel IS NOT NULL AND corrected_provider IS NOT NULL
                  AND corrected_token IS NOT NULL AND reissued_attempt = attempt + 1
             ELSE corrected_channel IS NULL AND corrected_provider IS NULL
                  AND corrected_token IS NULL AND reissued_attempt IS NULL END);

CREATE UNIQUE INDEX verification_tasks_one_unresolved
    ON disbursement.verification_tasks (instruction_id) WHERE state <> 'resolved';
CREATE INDEX verification_tasks_state_idx ON disbursement.verification_tasks (state);

CREATE FUNCTION disbursement.resolved_task_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'verification task % is resolved (%): a resolved task cannot change', OLD.task_id, OLD.outcome;
END $$;
CREATE TRIGGER verification_tasks_resolved_final BEFORE UPDATE OR DELETE ON disbursement.verification_tasks
    FOR EACH ROW WHEN (OLD.state = 'resolved') EXECUTE FUNCTION disbursement.resolved_task_is_final();

-- Households a field team found ineligible for a crisis: disbursement
-- instructs none of their later tranches and re-issues none of their
-- retries. Disbursement's own record (eligibility's tables are
-- eligibility's); `sumud explain` shows it through the task.
CREATE TABLE disbursement.entitlement_stops (
    crisis_id    text NOT NULL,
    household_id text NOT NULL,
    task_id      bigint NOT NULL UNIQUE REFERENCES disbursement.verification_tasks (task_id),
    stopped_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (crisis_id, household_id)
);
