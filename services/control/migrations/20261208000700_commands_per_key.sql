-- A command id is judged once per signing key, not across keys: a rival
-- or revoked operator key could otherwise use up the ids another
-- operator's client will send (refused or applied under that id, the
-- later command was dead-lettered as a replay), as field commands,
-- partner records and referral answers are already judged per key.
ALTER TABLE control.commands DROP CONSTRAINT commands_pkey;
ALTER TABLE control.commands ADD PRIMARY KEY (key_id, command_id);
ALTER TABLE control.rejected_commands DROP CONSTRAINT rejected_commands_pkey;
ALTER TABLE control.rejected_commands ADD PRIMARY KEY (key_id, command_id);
