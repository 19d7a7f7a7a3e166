-- Every signed command that was judged and refused, once: a command is
-- judged at one moment, so one refused ("nothing is awaiting approval") can
-- never take effect later when a new proposal makes it fit (issue 27). Only
-- commands whose signature verified are kept (an unverified id proves
-- nothing), and not those refused for the Kafka key alone: anyone who can
-- write the topic could copy an operator's command onto another partition
-- and so veto it.
CREATE TABLE control.rejected_commands (
    command_id       text PRIMARY KEY,
    kind             text NOT NULL,
    crisis_id        text NOT NULL,
    principal        text NOT NULL,
    key_id           text NOT NULL,
    issued_at        timestamptz NOT NULL,
    reason           text NOT NULL,
    detail           text NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    rejected_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_commands_crisis ON control.rejected_commands (crisis_id, rejected_at);
