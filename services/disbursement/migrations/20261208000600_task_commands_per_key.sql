-- A field command's id is judged once per key, not across keys: a revoked
-- or rival field key could otherwise use up the ids another team's app
-- will send (its later command refused as a replay), as partner records
-- and referral answers are already judged per key.
ALTER TABLE disbursement.task_commands DROP CONSTRAINT task_commands_pkey;
ALTER TABLE disbursement.task_commands ADD PRIMARY KEY (kid, jti);
