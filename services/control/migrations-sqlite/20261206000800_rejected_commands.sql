-- Every signed command that was judged and refused, once (see the
-- PostgreSQL migration of the same name for why, and what is not kept).
CREATE TABLE control.rejected_commands (
    command_id       text PRIMARY KEY,
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
    rejected_at      text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX control.rejected_commands_crisis ON rejected_commands (crisis_id, rejected_at);
