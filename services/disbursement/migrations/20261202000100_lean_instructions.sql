-- The lean instruction record (issue 4's benchmark): an instruction row is
-- written with one B-tree index entry instead of five, and the outbox moves
-- from a change counter on every row to one row per committed batch.
--
-- Why: writing 400,000 instructions cost PostgreSQL about 4.9 s of one
-- backend with the text primary key (libc collation), the composite UNIQUE,
-- the unpublished and the open partial indexes and a sequence default, and
-- every row was updated once more to mark it published. The same rows with
-- only a "C"-collated primary key take about 1.3 s (docs/benchmarks.md).
--
-- - One instruction per (crisis, household, kind, tranche, part) is still
--   enforced by the database: the primary key is the instruction id, which
--   is derived from exactly those columns (src/instruction.rs, the SQL
--   function disbursement.instruction_id), so a second row for the same
--   part has the same key. The composite UNIQUE repeated that.
-- - A crisis's instructions are found through a BRIN index on crisis_id:
--   they are written together, so block ranges rarely mix crises, and a
--   BRIN costs next to nothing to keep while rows are written.
-- - The outbox is disbursement.instruction_batches: the transaction that
--   creates (or re-issues) attempts also inserts one row listing them; the
--   relay publishes a batch and then marks that one row.
-- - Deadlines are watched per batch too: every attempt of a batch shares
--   its deadline, so flagging what is overdue reads the few batches whose
--   deadline passed instead of an index over every open instruction.
CREATE TABLE disbursement.instruction_batches (
    batch_id         bigserial PRIMARY KEY,
    crisis_id        text NOT NULL,
    -- The attempts of the batch, in publication order.
    ids              text[] COLLATE "C" NOT NULL,
    attempts         integer[] NOT NULL,
    -- The W3C trace context its messages continue (the crisis's).
    traceparent      text,
    deadline_at      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    deadline_checked boolean NOT NULL DEFAULT false,
    CHECK (cardinality(ids) = cardinality(attempts) AND cardinality(ids) > 0)
);
-- A batch lists up to 10,000 ids: kept out of line uncompressed, since
-- pglz spent more time compressing each list than writing it.
ALTER TABLE disbursement.instruction_batches ALTER COLUMN ids SET STORAGE EXTERNAL,
    ALTER COLUMN attempts SET STORAGE EXTERNAL;
CREATE INDEX instruction_batches_unpublished_idx ON disbursement.instruction_batches (batch_id)
    WHERE published_at IS NULL;
CREATE INDEX instruction_batches_deadline_idx ON disbursement.instruction_batches (deadline_at)
    WHERE NOT deadline_checked;

-- What the old outbox had not published yet becomes one batch per crisis.
INSERT INTO disbursement.instruction_batches (crisis_id, ids, attempts, traceparent, deadline_at)
SELECT i.crisis_id, array_agg(i.instruction_id ORDER BY i.change_seq), array_agg(i.attempt ORDER BY i.change_seq),
       (SELECT c.traceparent FROM disbursement.crises c WHERE c.crisis_id = i.crisis_id), max(i.deadline_at)
FROM disbursement.instructions i
WHERE i.published_seq IS DISTINCT FROM i.change_seq AND i.status = 'instructed'
GROUP BY i.crisis_id;
-- Open attempts already published keep their deadline watch, one batch per
-- crisis and deadline (marked published: they are not sent again).
INSERT INTO disbursement.instruction_batches (crisis_id, ids, attempts, deadline_at, published_at)
SELECT i.crisis_id, array_agg(i.instruction_id ORDER BY i.instruction_id), array_agg(i.attempt ORDER BY i.instruction_id),
       i.deadline_at, now()
FROM disbursement.instructions i
WHERE i.published_seq IS NOT DISTINCT FROM i.change_seq AND i.status IN ('instructed', 'received', 'pending')
  AND NOT i.overdue
GROUP BY i.crisis_id, i.deadline_at;

DROP INDEX disbursement.instructions_unpublished_idx;
DROP INDEX disbursement.instructions_open_idx;
DROP INDEX disbursement.instructions_retry_idx;
ALTER TABLE disbursement.instructions DROP CONSTRAINT instructions_one_per_part;
ALTER TABLE disbursement.instructions DROP COLUMN change_seq, DROP COLUMN published_seq;
DROP SEQUENCE disbursement.change_seq;

-- Ids compare byte-wise: with the database's libc collation every key
-- comparison of an insert was a strcoll() call. The columns instructions
-- are joined with by id follow, so that the joins keep one collation.
ALTER TABLE disbursement.instructions ALTER COLUMN instruction_id TYPE text COLLATE "C";
ALTER TABLE disbursement.status_log ALTER COLUMN instruction_id TYPE text COLLATE "C";
ALTER TABLE disbursement.verification_tasks ALTER COLUMN instruction_id TYPE text COLLATE "C";

-- Scheduled retries, by when they are due. The predicate names the column
-- it indexes, not the status, so that a status change that leaves the
-- retry time alone (received, pending, succeeded) can be a HOT update.
CREATE INDEX instructions_retry_idx ON disbursement.instructions (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX instructions_crisis_brin ON disbursement.instructions USING brin (crisis_id)
    WITH (autosummarize = on);
-- A crisis's entitlements in household order: the pass joins them with the
-- registry by merging two index scans, so its first rows come at once
-- instead of after a hash of every household is built.
CREATE INDEX disb_entitlements_crisis_household_idx ON disbursement.entitlements (crisis_id, household_id)
    WHERE status = 'entitled';
DROP INDEX disbursement.disb_entitlements_crisis_idx;
-- Room on each page for a status change to stay on it (HOT).
ALTER TABLE disbursement.instructions SET (fillfactor = 90);
