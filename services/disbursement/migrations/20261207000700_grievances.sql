-- Grievances: a household's complaint or appeal about a crisis, taken by a
-- hotline or a field worker (`sumud grievances file`). Each is a task with
-- the field tasks' lifecycle — open → assigned → resolved, once — whose
-- answer cites `sumud explain`: the explanation in force when it was
-- answered is kept with it, so what the household was told can be shown
-- later exactly as it was.
CREATE TABLE disbursement.grievances (
    grievance_id   bigserial PRIMARY KEY,
    crisis_id      text NOT NULL,
    household_id   text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('not_included', 'wrong_amount', 'not_received')),
    channel        text NOT NULL CHECK (channel IN ('hotline', 'field')),
    filed_by       text NOT NULL CHECK (filed_by <> ''),
    -- The payment the household names (not_received, wrong_amount), if any.
    instruction_id text,
    -- The household's area when it complained (the dashboard counts by it).
    area_code      text,
    note           text NOT NULL DEFAULT '',
    state          text NOT NULL DEFAULT 'open',
    assigned_to    text,
    assigned_at    timestamptz,
    outcome        text,
    resolved_by    text,
    resolved_at    timestamptz,
    -- The answer given, and the explanation (sumud explain --json) it cites.
    answer         text,
    explanation    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grievances_state CHECK (
        (state = 'open' AND assigned_to IS NULL AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'assigned' AND assigned_to IS NOT NULL AND assigned_at IS NOT NULL
            AND outcome IS NULL AND resolved_at IS NULL)
        OR (state = 'resolved' AND outcome IS NOT NULL AND resolved_at IS NOT NULL
            AND resolved_by IS NOT NULL AND answer IS NOT NULL AND explanation IS NOT NULL)),
    CONSTRAINT grievances_outcome CHECK (outcome IN ('explained', 'upheld', 'unreachable'))
);
-- One unresolved grievance of a kind per household and crisis: a second
-- call about the same thing joins the first.
CREATE UNIQUE INDEX grievances_one_unresolved
    ON disbursement.grievances (crisis_id, household_id, kind) WHERE state <> 'resolved';
CREATE INDEX grievances_state_idx ON disbursement.grievances (state);

CREATE FUNCTION disbursement.resolved_grievance_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'grievance % is resolved (%): a resolved grievance cannot change', OLD.grievance_id, OLD.outcome;
END $$;
CREATE TRIGGER grievances_resolved_final BEFORE UPDATE OR DELETE ON disbursement.grievances
    FOR EACH ROW WHEN (OLD.state = 'resolved') EXECUTE FUNCTION disbursement.resolved_grievance_is_final();
