-- The budget an operator last authorised, kept beside the cap (see
-- migrations/20261202000200_authorised_budget.sql for why): releasing
-- money after a cut lowers budget_minor towards it, so new instructions fit
-- the cut budget. NULL means the stored budget is the authorised one.
-- SQLite cannot add a CHECK to an existing table; save_crisis and release
-- are the only statements that write either column.
ALTER TABLE disbursement.crises ADD COLUMN authorised_minor integer;
