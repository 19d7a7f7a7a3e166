//! Creating the instructions now due on PostgreSQL.
//!
//! One pass reads what is due through a cursor on one snapshot while two
//! writers `COPY` chunks in transactions of their own, so that reading,
//! rendering and both writers' index work overlap on the machine's cores.
//! The writers *commit in chunk order*: each copies its chunk, then waits
//! for the chunk before it to have committed (or given up) and only then
//! reserves the chunk's amount and records its outbox batch, in one
//! statement that refuses a reservation past the budget, and commits. So
//! chunks commit, are numbered in the outbox and reach the relay in the
//! order they were read, and when the budget runs out what was created is
//! a prefix of the read order: the chunk it cuts is redone under the
//! crisis row's lock with the prefix that fits, and the chunks after it
//! roll back.
//!
//! A chunk that meets an instruction another pass (another instance) has
//! just created fails its `COPY` on the primary key; it is redone the same
//! careful way, skipping what exists.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use sumud_shared::Result;
use tokio::sync::{mpsc, watch, Mutex};
use tracing::debug;

use super::{fitting, Chunk, Due, CHUNK};
use crate::config::DisbursementConfig;
use crate::publisher::Handoff;

/// The tranches due and not yet instructed, and the top-ups of tranches an
/// amendment raised, with what their instructions need. Each branch joins
/// the registry itself, so that the first (nearly everything) streams from
/// a merge of the entitlements' and the households' indexes. A household a
/// field team found ineligible (`entitlement_stops`) gets nothing more. `$1` crisis,
/// `$2` seconds per day.
const DUE: &str = "SELECT e.household_id, e.kind, t AS tranche, 0 AS part, e.amount_minor, e.currency, e.crisis_revision, \
            c.activated_at + make_interval(secs => (t - 1) * e.interval_days * $2::float8) AS scheduled_at, \
            h.payment_channel, h.payment_provider, h.account_token \
     FROM disbursement.entitlements e \
     JOIN disbursement.crises c ON c.crisis_id = e.crisis_id \
     JOIN registry.households_v h ON h.household_id = e.household_id \
     CROSS JOIN LATERAL generate_series(1, e.tranches) AS t \
     WHERE e.crisis_id = $1 AND e.status = 'entitled' AND c.state = 'active' \
       AND NOT EXISTS (SELECT 1 FROM disbursement.entitlement_stops s \
                       WHERE s.crisis_id = e.crisis_id AND s.household_id = e.household_id) \
       AND c.activated_at + make_interval(secs => (t - 1) * e.interval_days * $2::float8) <= now() \
       /* Not instructed yet, and not paid under the household's other \
          kind (a registry change switched it): one payment per tranche \
          period. */ \
       AND NOT EXISTS (SELECT 1 FROM disbursement.instructions i \
                       WHERE i.crisis_id = e.crisis_id AND i.household_id = e.household_id \
                         AND i.tranche = t \
                         AND (i.kind = e.kind OR i.status NOT IN ('failed', 'reversed'))) \
     UNION ALL \
     /* Top-ups: tranches already instructed for less than the \
        entitlement's amount now, under an earlier crisis revision (an \
        amendment raised it; a registry change keeps the revision and \
        raises future tranches only), none of whose parts failed or was \
        reversed, and still among its tranches (a cut cannot take back \
        one already paid, but it gets no top-up); due at once. */ \
     SELECT e.household_id, e.kind, p.tranche, p.next_part, (e.amount_minor - p.instructed)::bigint, e.currency, \
            e.crisis_revision, now(), h.payment_channel, h.payment_provider, h.account_token \
     FROM disbursement.entitlements e \
     JOIN disbursement.crises c ON c.crisis_id = e.crisis_id \
     JOIN (SELECT household_id, kind, tranche, sum(amount_minor)::bigint AS instructed, max(part) + 1 AS next_part, \
                  bool_or(status IN ('failed', 'reversed')) AS broken, max(crisis_revision) AS revision \
           FROM disbursement.instructions WHERE crisis_id = $1 \
           GROUP BY household_id, kind, tranche) p \
       ON p.household_id = e.household_id AND p.kind = e.kind \
     JOIN registry.households_v h ON h.household_id = e.household_id \
     WHERE e.crisis_id = $1 AND e.status = 'entitled' AND c.state = 'active' \
       AND NOT EXISTS (SELECT 1 FROM disbursement.entitlement_stops s \
                       WHERE s.crisis_id = e.crisis_id AND s.household_id = e.household_id) \
       AND e.amount_minor > p.instructed AND NOT p.broken AND p.tranche <= e.tranches \
       AND e.crisis_revision > p.revision";

/// The due order: what a pass creates when the budget cannot cover all.
const DUE_ORDER: &str = " ORDER BY scheduled_at, household_id, kind, tranche, part";

/// Whether the remaining budget covers every tranche of every entitled
/// entitlement, due or not, instructed or not: a bound on what any pass
/// can need (a top-up is less than its tranche) that reads each
/// entitlement once; no row if the crisis is not active. `$1` crisis.
const ROOM_FOR_ALL: &str = "SELECT c.budget_minor - c.reserved_minor >= coalesce( \
            (SELECT sum(e.amount_minor * e.tranches) FROM disbursement.entitlements e \
             WHERE e.crisis_id = c.crisis_id AND e.status = 'entitled'), 0) \
     FROM disbursement.crises c WHERE c.crisis_id = $1 AND c.state = 'active'";

/// The same bound counting only the tranches due now (a tenth of a second
/// more per 100,000 entitlements), asked when [`ROOM_FOR_ALL`] says no.
/// `$1` crisis, `$2` seconds per day.
const ROOM_FOR_DUE: &str = "SELECT c.budget_minor - c.reserved_minor >= coalesce( \
            (SELECT sum(e.amount_minor) FROM disbursement.entitlements e \
             CROSS JOIN LATERAL generate_series(1, e.tranches) AS t \
             WHERE e.crisis_id = c.crisis_id AND e.status = 'entitled' \
               AND c.activated_at + make_interval(secs => (t - 1) * e.interval_days * $2::float8) <= now()), 0) \
     FROM disbursement.crises c WHERE c.crisis_id = $1 AND c.state = 'active'";

/// See [`super::create_due`].
pub(super) async fn create_due(
    pool: &PgPool,
    crisis_id: &str,
    config: &DisbursementConfig,
    handoff: &Handoff,
) -> Result<u64> {
    let started = std::time::Instant::now();
    refresh_stale_statistics(pool).await?;
    // One snapshot for the whole pass, read through a cursor. Sorting a
    // large crisis would spill to disk with the default work_mem; its row
    // estimates (a generate_series per entitlement) are far off, so JIT
    // would cost more than it saves; and parallel workers would take the
    // cores the writers and the broker need.
    let mut read = pool.begin().await?;
    for setting in [
        "SET LOCAL jit = off",
        "SET LOCAL work_mem = '64MB'",
        "SET LOCAL max_parallel_workers_per_gather = 0",
    ] {
        sqlx::query(setting).execute(&mut *read).await?;
    }
    let room: Option<bool> = sqlx::query_scalar(ROOM_FOR_ALL)
        .bind(crisis_id)
        .fetch_optional(&mut *read)
        .await?;
    let covers_all = match room {
        None => return Ok(0),
        Some(true) => true,
        Some(false) => {
            sqlx::query_scalar(ROOM_FOR_DUE)
                .bind(crisis_id)
                .bind(config.day_seconds)
                .fetch_one(&mut *read)
                .await?
        }
    };
    debug!(
        crisis = crisis_id,
        covers_all,
        ms = started.elapsed().as_millis() as u64,
        "Pass planned."
    );
    // Order matters only when the budget may run out part way.
    let order = if covers_all { "" } else { DUE_ORDER };
    sqlx::query(&format!("DECLARE due NO SCROLL CURSOR FOR {DUE}{order}"))
        .bind(crisis_id)
        .bind(config.day_seconds)
        .execute(&mut *read)
        .await?;

    let (chunks, next_chunk) = mpsc::channel::<Prepared>(1);
    let next_chunk = Mutex::new(next_chunk);
    let turn = watch::Sender::new(Turn::default());
    let created = AtomicU64::new(0);
    let pass = Pass {
        pool,
        handoff,
        turn: &turn,
        next_chunk: &next_chunk,
        created: &created,
    };
    let reading = read_chunks(&mut read, crisis_id, config, chunks);
    // Two writers: each index insert costs PostgreSQL about as much as the
    // row itself, and two connections spread that over both cores.
    let writers = async { tokio::try_join!(pass.write_chunks(), pass.write_chunks()).map(drop) };
    let (read_result, write_result) = tokio::join!(reading, writers);
    read.rollback().await?;
    write_result?;
    read_result?;
    Ok(created.load(Ordering::Acquire))
}

/// A chunk ready to be written: its place in the pass, the instructions
/// with their messages, the `COPY` data of its rows and their deadline.
struct Prepared {
    index: usize,
    chunk: Chunk,
    copy: Vec<u8>,
    deadline_at: DateTime<Utc>,
}

/// The first chunk of a pass: small, so that the first instructions are
/// committed (and published) while the next chunks are still being read,
/// instead of after a whole chunk's preparation and `COPY`.
const FIRST_CHUNK: usize = 2_000;

/// Reads the cursor chunk by chunk. Each chunk is prepared (ids,
/// pseudonyms, messages, `COPY` text) on a blocking thread while the next
/// is fetched: reading and preparing, not writing, set the pace of a pass.
async fn read_chunks(
    read: &mut PgConnection,
    crisis_id: &str,
    config: &DisbursementConfig,
    chunks: mpsc::Sender<Prepared>,
) -> Result<()> {
    let mut preparing: Option<tokio::task::JoinHandle<Prepared>> = None;
    for index in 0.. {
        // A deadline counts from the chunk's creation.
        let deadline_at: DateTime<Utc> =
            sqlx::query_scalar("SELECT clock_timestamp() + make_interval(secs => $1::float8)")
                .bind(config.deadline_secs as f64)
                .fetch_one(&mut *read)
                .await?;
        let size = if index == 0 { FIRST_CHUNK } else { CHUNK };
        let started = std::time::Instant::now();
        let due: Vec<Due> = sqlx::query_as(&format!("FETCH {size} FROM due"))
            .fetch_all(&mut *read)
            .await?;
        debug!(
            chunk = index,
            rows = due.len(),
            fetch_ms = started.elapsed().as_millis() as u64,
            "Chunk fetched."
        );
        if let Some(previous) = preparing.take() {
            if !hand_on(previous, &chunks).await? {
                // The writers stopped (the budget ran out, or one failed).
                return Ok(());
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        let last = due.len() < size;
        let (crisis, secret) = (crisis_id.to_owned(), config.pseudonym_secret.clone());
        preparing = Some(tokio::task::spawn_blocking(move || {
            let chunk = Chunk::new(&crisis, &secret, due);
            let copy = copy_rows(&chunk, deadline_at);
            Prepared {
                index,
                chunk,
                copy,
                deadline_at,
            }
        }));
        if last {
            break;
        }
    }
    if let Some(previous) = preparing {
        hand_on(previous, &chunks).await?;
    }
    Ok(())
}

/// Waits for a chunk's preparation and hands it to the writers; false if
/// they have stopped.
async fn hand_on(
    preparing: tokio::task::JoinHandle<Prepared>,
    chunks: &mpsc::Sender<Prepared>,
) -> Result<bool> {
    let prepared = preparing
        .await
        .map_err(|e| sumud_shared::Error::Other(format!("preparing a chunk failed: {e}")))?;
    Ok(chunks.send(prepared).await.is_ok())
}

/// Whose turn it is to commit, and whether the pass has stopped.
#[derive(Debug, Default, Clone, Copy)]
struct Turn {
    next: usize,
    stopped: bool,
}

/// What the writers of a pass share.
#[derive(Clone, Copy)]
struct Pass<'a> {
    pool: &'a PgPool,
    handoff: &'a Handoff,
    turn: &'a watch::Sender<Turn>,
    next_chunk: &'a Mutex<mpsc::Receiver<Prepared>>,
    created: &'a AtomicU64,
}

/// How a chunk ended.
enum Outcome {
    /// Committed; the pass goes on.
    Done,
    /// Committed what fitted, or nothing: the budget ran out or the crisis
    /// is no longer active. The pass ends.
    Stop,
}

impl Pass<'_> {
    /// One writer: takes chunks until there are none or the pass stopped.
    async fn write_chunks(self) -> Result<()> {
        loop {
            let Some(p) = self.next_chunk.lock().await.recv().await else {
                return Ok(());
            };
            let index = p.index;
            let outcome = self.write(p).await;
            let go_on = matches!(outcome, Ok(Outcome::Done));
            // Pass the turn whatever happened: a stop or a failure stops
            // every chunk after this one.
            self.turn.send_modify(|t| {
                t.next = index + 1;
                t.stopped |= !go_on;
            });
            if !go_on {
                self.next_chunk.lock().await.close();
                return outcome.map(drop);
            }
        }
    }

    /// Waits until chunk `index` may commit, or the pass has stopped.
    async fn wait_for_turn(&self, index: usize) -> Turn {
        let mut turn = self.turn.subscribe();
        loop {
            let now = *turn.borrow_and_update();
            if now.next == index || now.stopped {
                return now;
            }
            // The sender lives as long as the pass: changed() cannot fail.
            let _ = turn.changed().await;
        }
    }

    /// Copies a chunk, then commits it in its turn.
    async fn write(&self, p: Prepared) -> Result<Outcome> {
        // The COPY runs beside the other writer's; a failure is dealt with
        // in this chunk's turn.
        let started = std::time::Instant::now();
        let copied = copy(self.pool, &p.copy).await;
        // The rows are in the transaction: their COPY data can go.
        drop(p.copy);
        let copy_ms = started.elapsed().as_millis() as u64;
        let now = self.wait_for_turn(p.index).await;
        debug!(
            chunk = p.index,
            copy_ms,
            turn_ms = started.elapsed().as_millis() as u64 - copy_ms,
            "Chunk copied."
        );
        if now.stopped {
            // An earlier chunk stopped the pass; this one rolls back.
            return Ok(Outcome::Stop);
        }
        let tx = match copied {
            Ok(tx) => tx,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                // Another pass created some of these since this one read.
                return self.write_locked(p.chunk, p.deadline_at).await;
            }
            Err(e) => return Err(e.into()),
        };
        match reserve(tx, &p.chunk, p.deadline_at).await? {
            Some((batch_id, traceparent)) => {
                let n = p.chunk.len() as u64;
                self.handoff
                    .committed(p.chunk.committed(batch_id, traceparent))
                    .await;
                self.created.fetch_add(n, Ordering::AcqRel);
                Ok(Outcome::Done)
            }
            // Refused: the budget cannot take the whole chunk (or the
            // crisis was closed). Redo it with what fits, and stop.
            None => {
                self.write_locked(p.chunk, p.deadline_at).await?;
                Ok(Outcome::Stop)
            }
        }
    }

    /// Writes a chunk under the crisis row's lock: the prefix that fits the
    /// remaining budget, skipping instructions that exist. The pass goes on
    /// only if the whole chunk fitted.
    async fn write_locked(&self, mut chunk: Chunk, deadline_at: DateTime<Utc>) -> Result<Outcome> {
        let mut tx = self.pool.begin().await?;
        let locked: Option<(i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT budget_minor, reserved_minor, traceparent FROM disbursement.crises \
             WHERE crisis_id = $1 AND state = 'active' FOR UPDATE",
        )
        .bind(&chunk.crisis_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((budget, reserved, traceparent)) = locked else {
            return Ok(Outcome::Stop);
        };
        let fits = fitting(
            chunk.news.iter().map(|n| n.row.amount_minor),
            budget - reserved,
        );
        let complete = fits == chunk.len();
        chunk.truncate(fits);
        let inserted = insert_new(&mut tx, &chunk, deadline_at).await?;
        chunk.retain_ids(&inserted);
        if chunk.len() > 0 {
            let batch_id: i64 = sqlx::query_scalar(
                "WITH r AS (UPDATE disbursement.crises SET reserved_minor = reserved_minor + $2 \
                            WHERE crisis_id = $1) \
                 INSERT INTO disbursement.instruction_batches (crisis_id, ids, attempts, traceparent, deadline_at) \
                 VALUES ($1, $3, $4, $5, $6) RETURNING batch_id",
            )
            .bind(&chunk.crisis_id)
            .bind(chunk.total())
            .bind(ids(&chunk))
            .bind(vec![1i32; chunk.len()])
            .bind(&traceparent)
            .bind(deadline_at)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            let n = chunk.len() as u64;
            self.handoff
                .committed(chunk.committed(batch_id, traceparent))
                .await;
            self.created.fetch_add(n, Ordering::AcqRel);
        }
        Ok(if complete {
            Outcome::Done
        } else {
            Outcome::Stop
        })
    }
}

/// The ids of a chunk, in order.
fn ids(chunk: &Chunk) -> Vec<&str> {
    chunk
        .news
        .iter()
        .map(|n| n.row.instruction_id.as_str())
        .collect()
}

/// Copies a chunk's rows in a transaction of its own, left open.
async fn copy(
    pool: &PgPool,
    text: &[u8],
) -> std::result::Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY disbursement.instructions (instruction_id, crisis_id, household_id, kind, tranche, part, \
             amount_minor, currency, beneficiary_ref, channel, provider, account_token, scheduled_at, \
             crisis_revision, deadline_at) FROM STDIN (FORMAT binary)",
        )
        .await?;
    copy.send(text).await?;
    copy.finish().await?;
    Ok(tx)
}

/// Reserves a copied chunk's amount and records its outbox batch, in one
/// statement that refuses a reservation past the budget or on a crisis no
/// longer active; commits if it was taken. Returns the batch id and the
/// crisis's trace context, or `None` (rolled back) if refused.
async fn reserve(
    mut tx: Transaction<'static, Postgres>,
    chunk: &Chunk,
    deadline_at: DateTime<Utc>,
) -> Result<Option<(i64, Option<String>)>> {
    let batch: Option<(i64, Option<String>)> = sqlx::query_as(
        "WITH r AS (UPDATE disbursement.crises SET reserved_minor = reserved_minor + $2 \
                    WHERE crisis_id = $1 AND state = 'active' AND reserved_minor + $2 <= budget_minor \
                    RETURNING traceparent) \
         INSERT INTO disbursement.instruction_batches (crisis_id, ids, attempts, traceparent, deadline_at) \
         SELECT $1, $3, $4, r.traceparent, $5 FROM r RETURNING batch_id, traceparent",
    )
    .bind(&chunk.crisis_id)
    .bind(chunk.total())
    .bind(ids(chunk))
    .bind(vec![1i32; chunk.len()])
    .bind(deadline_at)
    .fetch_optional(&mut *tx)
    .await?;
    if batch.is_some() {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(batch)
}

/// Inserts a chunk's rows, skipping those that exist; returns the ids
/// inserted.
async fn insert_new(
    tx: &mut PgConnection,
    chunk: &Chunk,
    deadline_at: DateTime<Utc>,
) -> Result<HashSet<String>> {
    let c = Columns::of(chunk);
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO disbursement.instructions \
            (instruction_id, crisis_id, household_id, kind, tranche, part, amount_minor, currency, beneficiary_ref, \
             channel, provider, account_token, scheduled_at, crisis_revision, deadline_at) \
         SELECT u.id, $1, u.household, u.kind, u.tranche, u.part, u.amount, u.currency, u.ref, u.channel, u.provider, \
                u.token, u.scheduled, u.revision, $2 \
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[], $8::int8[], $9::text[], \
                     $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::int4[]) \
              AS u(id, household, kind, tranche, part, amount, currency, ref, channel, provider, token, scheduled, revision) \
         ON CONFLICT DO NOTHING \
         RETURNING instruction_id",
    )
    .bind(&chunk.crisis_id)
    .bind(deadline_at)
    .bind(c.ids)
    .bind(c.households)
    .bind(c.kinds)
    .bind(c.tranches)
    .bind(c.parts)
    .bind(c.amounts)
    .bind(c.currencies)
    .bind(c.refs)
    .bind(c.channels)
    .bind(c.providers)
    .bind(c.tokens)
    .bind(c.scheduled)
    .bind(c.revisions)
    .fetch_all(tx)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// A chunk as columns, for `UNNEST`.
struct Columns<'a> {
    ids: Vec<&'a str>,
    households: Vec<&'a str>,
    kinds: Vec<&'a str>,
    tranches: Vec<i32>,
    parts: Vec<i32>,
    amounts: Vec<i64>,
    currencies: Vec<&'a str>,
    refs: Vec<&'a str>,
    channels: Vec<&'a str>,
    providers: Vec<&'a str>,
    tokens: Vec<&'a str>,
    scheduled: Vec<DateTime<Utc>>,
    revisions: Vec<i32>,
}

impl<'a> Columns<'a> {
    fn of(chunk: &'a Chunk) -> Self {
        let n = &chunk.news;
        Columns {
            ids: n.iter().map(|x| x.row.instruction_id.as_str()).collect(),
            households: n.iter().map(|x| x.household_id.as_str()).collect(),
            kinds: n.iter().map(|x| x.kind.as_str()).collect(),
            tranches: n.iter().map(|x| x.row.tranche).collect(),
            parts: n.iter().map(|x| x.row.part).collect(),
            amounts: n.iter().map(|x| x.row.amount_minor).collect(),
            currencies: n.iter().map(|x| x.row.currency.as_str()).collect(),
            refs: n.iter().map(|x| x.row.beneficiary_ref.as_str()).collect(),
            channels: n.iter().map(|x| x.row.channel.as_str()).collect(),
            providers: n.iter().map(|x| x.row.provider.as_str()).collect(),
            tokens: n.iter().map(|x| x.row.account_token.as_str()).collect(),
            scheduled: n.iter().map(|x| x.row.scheduled_at).collect(),
            revisions: n.iter().map(|x| x.row.crisis_revision).collect(),
        }
    }
}

/// The binary `COPY` data of a chunk's rows, in id order: the primary
/// key's pages are then filled one after another rather than at random,
/// which costs PostgreSQL about a third less per row, and binary spares it
/// parsing two timestamps and four numbers per row (docs/benchmarks.md).
fn copy_rows(chunk: &Chunk, deadline_at: DateTime<Utc>) -> Vec<u8> {
    use sumud_shared::db::copy::{bytes, int4, int8, row, timestamptz, HEADER, TRAILER};
    let mut order: Vec<&super::New> = chunk.news.iter().collect();
    order.sort_unstable_by(|a, b| a.row.instruction_id.cmp(&b.row.instruction_id));
    let mut out = Vec::with_capacity(HEADER.len() + chunk.len() * 300 + TRAILER.len());
    out.extend_from_slice(HEADER);
    for n in order {
        let r = &n.row;
        row(&mut out, 15);
        bytes(&mut out, r.instruction_id.as_bytes());
        bytes(&mut out, r.crisis_id.as_bytes());
        bytes(&mut out, n.household_id.as_bytes());
        bytes(&mut out, n.kind.as_bytes());
        int4(&mut out, r.tranche);
        int4(&mut out, r.part);
        int8(&mut out, r.amount_minor);
        bytes(&mut out, r.currency.as_bytes());
        bytes(&mut out, r.beneficiary_ref.as_bytes());
        bytes(&mut out, r.channel.as_bytes());
        bytes(&mut out, r.provider.as_bytes());
        bytes(&mut out, r.account_token.as_bytes());
        timestamptz(&mut out, r.scheduled_at);
        int4(&mut out, r.crisis_revision);
        timestamptz(&mut out, deadline_at);
    }
    out.extend_from_slice(TRAILER);
    out
}

/// Rows changed since a table was last analysed past which a pass analyses
/// it first, unless that is under a fifth of the rows it was analysed with.
const STALE_AFTER: i64 = 1_000;

/// Analyses the tables the pass reads if they changed a lot since they were
/// last analysed. Planned on statistics taken while a crisis's entitlements
/// or instructions were still arriving (autovacuum looks only once a
/// minute), the pass's read joins them by nested loops that rescan one
/// side per row of the other: 46 and 103 s for 8,000 tranches in the crash
/// test, against 40 ms once analysed.
async fn refresh_stale_statistics(pool: &PgPool) -> Result<()> {
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = 'disbursement' AND s.relname IN ('entitlements', 'instructions') \
           AND s.n_mod_since_analyze > greatest($1, 0.2 * c.reltuples)",
    )
    .bind(STALE_AFTER)
    .fetch_all(pool)
    .await?;
    for table in stale {
        // The name comes from the fixed list above.
        sqlx::query(&format!("ANALYZE disbursement.{table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::InstructionRow;

    #[test]
    fn copy_rows_are_binary_rows_in_id_order() {
        let at = DateTime::parse_from_rfc3339("2000-01-01T00:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        let new = |id: &str| super::super::New {
            row: InstructionRow {
                instruction_id: id.into(),
                attempt: 1,
                crisis_id: "FL-1".into(),
                crisis_revision: 2,
                beneficiary_ref: "ben-1".into(),
                account_token: "t\\tab".into(),
                amount_minor: 500,
                currency: "JOD".into(),
                channel: "bank".into(),
                provider: "bank-a".into(),
                tranche: 1,
                part: 0,
                scheduled_at: at,
            },
            household_id: "HH-1".into(),
            kind: "vertical".into(),
        };
        let chunk = Chunk {
            crisis_id: "FL-1".into(),
            news: vec![new("b"), new("a")],
            messages: Vec::new(),
        };
        let data = copy_rows(&chunk, at);
        let header = sumud_shared::db::copy::HEADER;
        assert!(data.starts_with(header));
        assert!(data.ends_with(&[0xff, 0xff]));
        // 15 fields, then the first id, which is the smaller one.
        let first = &data[header.len()..];
        assert_eq!(first[..2], 15i16.to_be_bytes());
        assert_eq!(first[2..6], 1i32.to_be_bytes());
        assert_eq!(first[6], b'a');
        // Text goes as it is, with no escaping.
        assert!(data.windows(5).any(|w| w == b"t\\tab"));
    }
}
