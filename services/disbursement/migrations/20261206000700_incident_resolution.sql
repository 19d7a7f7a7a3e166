-- An incident is an operator's recovery task: it stays open (reconcile
-- exits 1, the dashboard counts it) until someone who settled it with the
-- provider resolves it, saying who and how (`sumud incidents resolve`).
ALTER TABLE disbursement.incidents ADD COLUMN resolved_by text;
ALTER TABLE disbursement.incidents ADD COLUMN resolution text;
