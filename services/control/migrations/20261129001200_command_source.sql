-- Where each applied command was read from. A command seen again at the
-- same topic, partition and offset is the consumer group re-reading after a
-- crash or a broker restart (at-least-once delivery), not a replay attack:
-- it is acknowledged without effect instead of being dead-lettered as
-- `replayed`. The same command id at any other position stays a replay.
ALTER TABLE control.commands
    ADD COLUMN IF NOT EXISTS source_topic text,
    ADD COLUMN IF NOT EXISTS source_partition integer,
    ADD COLUMN IF NOT EXISTS source_offset bigint;

CREATE UNIQUE INDEX IF NOT EXISTS commands_source_position
    ON control.commands (source_topic, source_partition, source_offset)
    WHERE source_topic IS NOT NULL;
