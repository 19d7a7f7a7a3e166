-- A reference is the provider's unit of work: paid at most once, whatever
-- the attempt (see migrations/20261206000200_paid_once_per_reference.sql).
CREATE UNIQUE INDEX provider_sim.ledger_paid_once ON ledger (reference_id) WHERE paid;
