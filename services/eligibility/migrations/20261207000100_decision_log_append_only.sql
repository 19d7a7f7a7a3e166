-- The decision trail is evidence: an auditor must be able to trust that no
-- entry was changed or removed after the fact, so the database refuses it
-- (as control.audit does), whoever asks.
CREATE FUNCTION eligibility.decision_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eligibility.decision_log is append-only';
END $$;

CREATE TRIGGER decision_log_append_only BEFORE UPDATE OR DELETE ON eligibility.decision_log
    FOR EACH ROW EXECUTE FUNCTION eligibility.decision_log_is_append_only();
-- TRUNCATE skips row triggers; refuse it too.
CREATE TRIGGER decision_log_no_truncate BEFORE TRUNCATE ON eligibility.decision_log
    FOR EACH STATEMENT EXECUTE FUNCTION eligibility.decision_log_is_append_only();
