-- Beneficiary pseudonyms are now HMAC-SHA-256 of the household id under
-- the deployment secret, computed in Rust (src/instruction.rs) and stored
-- with each instruction. The SQL function of the UUIDv5 rule they replace
-- no longer agrees with them, and nothing calls it: dropped, so that no
-- later statement can derive a pseudonym the old way by mistake.
DROP FUNCTION disbursement.beneficiary_ref(text, text);
