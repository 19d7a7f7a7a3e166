-- See the PostgreSQL migration of the same name (SQLite cannot change a
-- primary key in place: the table is rebuilt).
CREATE TABLE disbursement.task_commands_per_key (
    jti             text NOT NULL,
    kid             text NOT NULL REFERENCES field_keys (kid),
    principal       text NOT NULL,
    cmd             text NOT NULL CHECK (cmd IN ('task.assign', 'task.resolve', 'grievance.file')),
    subject         text NOT NULL,
    source_topic    text NOT NULL,
    source_partition integer NOT NULL,
    source_offset   integer NOT NULL,
    refused_reason  text,
    refused_detail  text,
    judged_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((refused_reason IS NULL) = (refused_detail IS NULL)),
    PRIMARY KEY (kid, jti)
) STRICT;
INSERT INTO disbursement.task_commands_per_key
    (jti, kid, principal, cmd, subject, source_topic, source_partition, source_offset,
     refused_reason, refused_detail, judged_at)
SELECT jti, kid, principal, cmd, subject, source_topic, source_partition, source_offset,
       refused_reason, refused_detail, judged_at
FROM disbursement.task_commands;
DROP TABLE disbursement.task_commands;
ALTER TABLE disbursement.task_commands_per_key RENAME TO task_commands;
