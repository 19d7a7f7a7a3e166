-- The budget an operator last authorised, kept beside the cap.
--
-- Why: a budget cut below what is already reserved stores the reserved
-- amount as budget_minor (money already instructed cannot be
-- un-instructed, and the CHECK holds reserved_minor <= budget_minor). Without
-- the authorised figure, money released afterwards (failed or reversed
-- payments) could be instructed again up to that raised cap, above the
-- budget the operator had cut to. Releasing now lowers budget_minor towards
-- authorised_minor, so new instructions fit the cut budget.
--
-- NULL (rows of earlier versions) means the stored budget is the authorised
-- one: a cut that landed before this migration cannot be told apart from a
-- raise.
ALTER TABLE disbursement.crises ADD COLUMN authorised_minor bigint;
ALTER TABLE disbursement.crises ADD CONSTRAINT crises_authorised_within_cap
    CHECK (authorised_minor > 0 AND authorised_minor <= budget_minor);
