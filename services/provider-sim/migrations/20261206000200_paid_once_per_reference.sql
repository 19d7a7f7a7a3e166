-- A reference is the provider's unit of work (docs/contracts.md): the
-- simulator pays each reference at most once, whatever the attempt, and
-- the database holds it to that.
CREATE UNIQUE INDEX ledger_paid_once ON provider_sim.ledger (reference_id) WHERE paid;
