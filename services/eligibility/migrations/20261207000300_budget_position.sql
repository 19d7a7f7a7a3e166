-- Where a decision stood against the budget when it was made: its rank in
-- the priority order of the expansion (or waitlist promotion) that decided
-- it, and how much of the budget was left when its turn came. An auditor
-- asks it of every waitlisted household; `sumud explain` prints it.
-- Decisions made before this column existed have none.
ALTER TABLE eligibility.entitlements ADD COLUMN budget_rank integer;
ALTER TABLE eligibility.entitlements ADD COLUMN budget_left_minor bigint;
