-- The outbox of instruction attempts moves from a change counter on every
-- instruction row to one row per committed batch, as on PostgreSQL (see
-- migrations/20261202000100_lean_instructions.sql for why). `attempts` is
-- a JSON array of the batch's [instruction id, attempt] pairs in
-- publication order (one array, so that json_each reads it in one pass).
-- The composite UNIQUE stays on this backend: it serves the pass's probe
-- for tranches already instructed, and dropping a table constraint in
-- SQLite means rebuilding the table.
CREATE TABLE disbursement.instruction_batches (
    batch_id         integer PRIMARY KEY AUTOINCREMENT,
    crisis_id        text NOT NULL,
    attempts         text NOT NULL CHECK (json_valid(attempts) AND json_array_length(attempts) > 0),
    traceparent      text,
    deadline_at      text NOT NULL,
    created_at       text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at     text,
    deadline_checked integer NOT NULL DEFAULT 0 CHECK (deadline_checked IN (0, 1))
) STRICT;
CREATE INDEX disbursement.instruction_batches_unpublished_idx ON instruction_batches (batch_id)
    WHERE published_at IS NULL;
CREATE INDEX disbursement.instruction_batches_deadline_idx ON instruction_batches (deadline_at)
    WHERE NOT deadline_checked;

-- What the old outbox had not published yet: one batch per crisis.
INSERT INTO disbursement.instruction_batches (crisis_id, attempts, traceparent, deadline_at)
SELECT o.crisis_id, json_group_array(json_array(o.instruction_id, o.attempt)),
       (SELECT c.traceparent FROM disbursement.crises c WHERE c.crisis_id = o.crisis_id), max(o.deadline_at)
FROM (SELECT crisis_id, instruction_id, attempt, deadline_at FROM disbursement.instructions
      WHERE published_seq IS NOT change_seq AND status = 'instructed' ORDER BY change_seq) o
GROUP BY o.crisis_id;
-- Open attempts already published keep their deadline watch.
INSERT INTO disbursement.instruction_batches (crisis_id, attempts, deadline_at, published_at)
SELECT crisis_id, json_group_array(json_array(instruction_id, attempt)), deadline_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM disbursement.instructions
WHERE published_seq IS change_seq AND status IN ('instructed', 'received', 'pending') AND NOT overdue
GROUP BY crisis_id, deadline_at;

DROP TRIGGER disbursement.instructions_numbered_insert;
DROP TRIGGER disbursement.instructions_numbered_attempt;
DROP INDEX disbursement.instructions_unpublished_idx;
DROP INDEX disbursement.instructions_open_idx;
DROP INDEX disbursement.instructions_retry_idx;
ALTER TABLE disbursement.instructions DROP COLUMN published_seq;
ALTER TABLE disbursement.instructions DROP COLUMN change_seq;
DROP TABLE disbursement.change_counter;

-- Scheduled retries, by when they are due.
CREATE INDEX disbursement.instructions_retry_idx ON instructions (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
