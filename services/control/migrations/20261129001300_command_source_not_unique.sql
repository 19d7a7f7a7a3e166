-- A position is not an identity: a recreated topic (or the embedded broker,
-- whose topics live in memory, after a restart) numbers its messages from 0
-- again, so a new command can arrive at a topic, partition and offset an
-- earlier command was applied from. Redelivery is now recognised by the
-- position *and* the command id (control::db::applied_from); the position
-- index stays for that lookup, without uniqueness. The command id's own
-- primary key still allows one application per command.
DROP INDEX IF EXISTS control.commands_source_position;
CREATE INDEX IF NOT EXISTS commands_source_position
    ON control.commands (source_topic, source_partition, source_offset)
    WHERE source_topic IS NOT NULL;
