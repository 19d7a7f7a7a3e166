-- The decision trail is evidence: the database refuses to change or remove
-- an entry after the fact (as control.audit does).
CREATE TRIGGER eligibility.decision_log_no_update BEFORE UPDATE ON decision_log
BEGIN
    SELECT RAISE(ABORT, 'eligibility.decision_log is append-only');
END;
CREATE TRIGGER eligibility.decision_log_no_delete BEFORE DELETE ON decision_log
BEGIN
    SELECT RAISE(ABORT, 'eligibility.decision_log is append-only');
END;
