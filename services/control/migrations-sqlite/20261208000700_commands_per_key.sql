-- See the PostgreSQL migration of the same name (SQLite cannot change a
-- primary key in place: both tables are rebuilt, their indexes with them).
CREATE TABLE control.commands_per_key (
    command_id       text NOT NULL,
    kind             text NOT NULL,
    crisis_id        text NOT NULL,
    principal        text NOT NULL,
    key_id           text NOT NULL,
    issued_at        text NOT NULL,
    applied_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    source_topic     text,
    source_partition integer,
    source_offset    integer,
    PRIMARY KEY (key_id, command_id)
) STRICT;
INSERT INTO control.commands_per_key
    (command_id, kind, crisis_id, principal, key_id, issued_at, applied_at,
     source_topic, source_partition, source_offset)
SELECT command_id, kind, crisis_id, principal, key_id, issued_at, applied_at,
       source_topic, source_partition, source_offset
FROM control.commands;
DROP TABLE control.commands;
ALTER TABLE control.commands_per_key RENAME TO commands;
CREATE INDEX control.commands_source_position
    ON commands (source_topic, source_partition, source_offset)
    WHERE source_topic IS NOT NULL;

CREATE TABLE control.rejected_commands_per_key (
    command_id       text NOT NULL,
    kind             text NOT NULL,
    crisis_id        text NOT NULL,
    principal        text NOT NULL,
    key_id           text NOT NULL,
    issued_at        text NOT NULL,
    reason           text NOT NULL,
    detail           text NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    integer NOT NULL,
    rejected_at      text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (key_id, command_id)
);
INSERT INTO control.rejected_commands_per_key
    (command_id, kind, crisis_id, principal, key_id, issued_at, reason, detail,
     source_topic, source_partition, source_offset, rejected_at)
SELECT command_id, kind, crisis_id, principal, key_id, issued_at, reason, detail,
       source_topic, source_partition, source_offset, rejected_at
FROM control.rejected_commands;
DROP TABLE control.rejected_commands;
ALTER TABLE control.rejected_commands_per_key RENAME TO rejected_commands;
CREATE INDEX control.rejected_commands_crisis ON rejected_commands (crisis_id, rejected_at);
