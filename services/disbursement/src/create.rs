//! Creating the instructions now due: the one place where money is reserved
//! against a crisis budget as instructions come into being.
//!
//! A pass reads what is due for one crisis through a cursor, in due order,
//! and writes it in chunks. COPY with the table's indexes is the cost, and
//! one connection runs it on one core, so [`WRITERS`] chunks are written at
//! once on their own connections; but they commit strictly in order, and
//! each reserves its own amount as its last statement before commit:
//! - change counters rise with commit order (a chunk draws its block of
//!   counters before the next one does), so the outbox relay, which reads
//!   above the last counter it saw, is not handed rows behind its back;
//! - what is created is always a prefix of the due order: a chunk commits
//!   only after the one before it did, and one that cannot commit stops
//!   every one after it;
//! - the budget holds: the pass plans against the room it read at its
//!   start, and the CHECK on the crisis row refuses a reservation that a
//!   concurrent change made too large; that chunk and the rest roll back,
//!   and the next pass starts from what was committed.
//!
//! Passes over the same crisis never overlap (a transaction-scoped advisory
//! lock per crisis): two passes interleaving chunks of the same rows could
//! otherwise wait on each other's uncommitted rows and on commit order at
//! once, a deadlock PostgreSQL could not see.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use sumud_shared::Result;
use tokio::sync::{oneshot, Notify};

/// Instructions per chunk (one transaction): big enough that COPY's fixed
/// costs vanish, small enough that the relay starts publishing early.
const CHUNK: usize = 20_000;

/// Chunks written at once, each on its own connection; two keep both cores
/// of a small machine busy with index maintenance while Kafka and the relay
/// take their share.
const WRITERS: usize = 2;

/// Instructions created in one pass past which the table is analysed at once.
const ANALYZE_AFTER: u64 = 10_000;

/// A tranche now due, read in due order with what its instruction needs.
#[derive(sqlx::FromRow)]
struct Due {
    household_id: String,
    kind: String,
    tranche: i32,
    part: i32,
    amount_minor: i64,
    currency: String,
    crisis_revision: i32,
    scheduled_at: DateTime<Utc>,
    payment_channel: String,
    payment_provider: String,
    account_token: String,
}

/// Creates every instruction now due for one crisis (see the module
/// documentation for how chunks, commit order and the budget interlock).
/// `committed` is nudged after each commit. Returns how many were created.
pub async fn create_due(
    pool: &PgPool,
    crisis_id: &str,
    secret: &str,
    day_seconds: f64,
    deadline_secs: i64,
    committed: &Notify,
) -> Result<u64> {
    // One snapshot for the whole pass, read through a cursor, after any
    // other pass over this crisis has finished.
    let mut read = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('sumud-disbursement-pass:' || $1, 0))",
    )
    .bind(crisis_id)
    .execute(&mut *read)
    .await?;
    let room: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT budget_minor - reserved_minor, now() + make_interval(secs => $2::float8) \
         FROM disbursement.crises WHERE crisis_id = $1 AND state = 'active'",
    )
    .bind(crisis_id)
    .bind(deadline_secs as f64)
    .fetch_optional(&mut *read)
    .await?;
    let Some((mut room, deadline_at)) = room else {
        read.rollback().await?;
        return Ok(0);
    };
    // The query's row estimates (a generate_series per entitlement) are far
    // off: JIT-compiling it costs more than it saves, and sorting a large
    // crisis would spill to disk.
    sqlx::query("SET LOCAL jit = off")
        .execute(&mut *read)
        .await?;
    sqlx::query("SET LOCAL work_mem = '64MB'")
        .execute(&mut *read)
        .await?;
    sqlx::query(
        "DECLARE due NO SCROLL CURSOR FOR \
         SELECT d.household_id, d.kind, d.tranche, d.part, d.amount_minor, d.currency, d.crisis_revision, d.scheduled_at, \
                h.payment_channel, h.payment_provider, h.account_token \
         FROM (SELECT e.household_id, e.kind, t AS tranche, 0 AS part, e.amount_minor, e.currency, e.crisis_revision, \
                      c.activated_at + make_interval(secs => (t - 1) * e.interval_days * $2::float8) AS scheduled_at \
               FROM disbursement.entitlements e \
               JOIN disbursement.crises c ON c.crisis_id = e.crisis_id \
               CROSS JOIN LATERAL generate_series(1, e.tranches) AS t \
               WHERE e.crisis_id = $1 AND e.status = 'entitled' AND c.state = 'active' \
                 AND c.activated_at + make_interval(secs => (t - 1) * e.interval_days * $2::float8) <= now() \
                 AND NOT EXISTS (SELECT 1 FROM disbursement.instructions i \
                                 WHERE i.crisis_id = e.crisis_id AND i.household_id = e.household_id \
                                   AND i.kind = e.kind AND i.tranche = t) \
               UNION ALL \
               /* Top-ups: tranches already instructed for less than the \
                  entitlement's amount now (an amendment raised it), none of \
                  whose parts failed or was reversed; due at once. */ \
               SELECT e.household_id, e.kind, p.tranche, p.next_part, (e.amount_minor - p.instructed)::bigint, e.currency, \
                      e.crisis_revision, now() \
               FROM disbursement.entitlements e \
               JOIN disbursement.crises c ON c.crisis_id = e.crisis_id \
               JOIN (SELECT household_id, kind, tranche, sum(amount_minor)::bigint AS instructed, max(part) + 1 AS next_part, \
                            bool_or(status IN ('failed', 'reversed')) AS broken \
                     FROM disbursement.instructions WHERE crisis_id = $1 \
                     GROUP BY household_id, kind, tranche) p \
                 ON p.household_id = e.household_id AND p.kind = e.kind \
               WHERE e.crisis_id = $1 AND e.status = 'entitled' AND c.state = 'active' \
                 AND e.amount_minor > p.instructed AND NOT p.broken \
               OFFSET 0) d \
         JOIN registry.households_v h ON h.household_id = d.household_id \
         ORDER BY d.scheduled_at, d.household_id, d.kind, d.tranche, d.part",
    )
    .bind(crisis_id)
    .bind(day_seconds)
    .execute(&mut *read)
    .await?;
    let fetch = format!("FETCH {CHUNK} FROM due");
    let mut writing: VecDeque<tokio::task::JoinHandle<Result<Option<u64>>>> = VecDeque::new();
    let mut previous: Option<oneshot::Receiver<bool>> = None;
    let mut created = 0u64;
    let mut stopped = false;
    while !stopped {
        let due: Vec<Due> = sqlx::query_as(&fetch).fetch_all(&mut *read).await?;
        if due.is_empty() {
            break;
        }
        let full = due.len() == CHUNK;
        let mut chunk = Chunk::new(crisis_id, secret, &due);
        drop(due);
        // The running total in due order stops at the room left.
        let mut running = 0i64;
        let fits = chunk
            .amounts
            .iter()
            .take_while(|a| {
                running = running.saturating_add(**a);
                running <= room
            })
            .count();
        if fits == 0 {
            break;
        }
        stopped = fits < chunk.len() || !full;
        chunk.truncate(fits);
        room -= chunk.amounts.iter().sum::<i64>();
        // Counters are drawn here, one chunk after the other, so that they
        // rise with commit order.
        let mut seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT nextval('disbursement.change_seq') FROM generate_series(1, $1)",
        )
        .bind(fits as i32)
        .fetch_all(&mut *read)
        .await?;
        seqs.sort_unstable();
        chunk.seqs = seqs;
        let (done, now_done) = oneshot::channel();
        let before = previous.replace(now_done);
        writing.push_back(tokio::spawn(write(
            pool.clone(),
            chunk,
            deadline_at,
            before,
            done,
        )));
        if writing.len() >= WRITERS {
            let oldest = writing.pop_front().expect("non-empty");
            match account(pool, oldest, &mut created, committed).await? {
                true => {}
                false => stopped = true,
            }
        }
    }
    // Later chunks learn of an earlier failure through their predecessor's
    // signal, so every one of them is waited for.
    let mut result = Ok(());
    while let Some(w) = writing.pop_front() {
        if let Err(e) = account(pool, w, &mut created, committed).await {
            result = result.and(Err(e));
        }
    }
    read.rollback().await?;
    result?;
    if created >= ANALYZE_AFTER {
        analyze_instructions(pool).await?;
    }
    Ok(created)
}

/// Waits for a writer; counts what it committed and nudges the relay.
/// Returns whether it committed.
async fn account(
    pool: &PgPool,
    writer: tokio::task::JoinHandle<Result<Option<u64>>>,
    created: &mut u64,
    committed: &Notify,
) -> Result<bool> {
    let outcome = writer
        .await
        .map_err(|e| sumud_shared::Error::Other(format!("instruction writer panicked: {e}")))??;
    let Some(n) = outcome else {
        return Ok(false);
    };
    let first = *created == 0;
    *created += n;
    if first && n > 0 {
        // The relay reads these rows as they commit, through plans chosen
        // on the table's statistics, which autovacuum would refresh only
        // later: without them it reads every unpublished row for each batch.
        analyze_instructions(pool).await?;
    }
    if n > 0 {
        committed.notify_one();
    }
    Ok(true)
}

/// Writes one chunk in its own transaction and commits it right after the
/// chunk before it (`before`), reserving its amount last; tells the chunk
/// after it (`done`) whether it committed. `None` when it did not: the
/// chunk before did not, the crisis is no longer active, or the budget
/// refused the reservation.
async fn write(
    pool: PgPool,
    chunk: Chunk,
    deadline_at: DateTime<Utc>,
    before: Option<oneshot::Receiver<bool>>,
    done: oneshot::Sender<bool>,
) -> Result<Option<u64>> {
    let outcome = write_chunk(&pool, &chunk, deadline_at, before).await;
    // A dropped sender reads as "did not commit" too.
    let _ = done.send(matches!(outcome, Ok(Some(_))));
    outcome
}

async fn write_chunk(
    pool: &PgPool,
    chunk: &Chunk,
    deadline_at: DateTime<Utc>,
    before: Option<oneshot::Receiver<bool>>,
) -> Result<Option<u64>> {
    let mut tx = pool.begin().await?;
    // The rows were read as not instructed yet, and passes over one crisis
    // do not overlap; should a row exist anyway, the savepoint lets this
    // transaction skip it. COPY is much cheaper than an INSERT, all the
    // more one with ON CONFLICT's speculative insertion.
    sqlx::query("SAVEPOINT chunk").execute(&mut *tx).await?;
    let (count, amount) = match chunk.copy(&mut tx, deadline_at).await {
        Ok(c) => c,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            sqlx::query("ROLLBACK TO SAVEPOINT chunk")
                .execute(&mut *tx)
                .await?;
            chunk.insert(&mut tx, deadline_at).await?
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(before) = before {
        if !before.await.unwrap_or(false) {
            tx.rollback().await?;
            return Ok(None);
        }
    }
    // The reservation comes last: the crisis row stays locked only from
    // here to the commit, and the CHECK on it is the budget cap.
    let reserved = sqlx::query(
        "UPDATE disbursement.crises SET reserved_minor = reserved_minor + $2 \
         WHERE crisis_id = $1 AND state = 'active'",
    )
    .bind(&chunk.crisis_id)
    .bind(amount)
    .execute(&mut *tx)
    .await;
    match reserved {
        Ok(r) if r.rows_affected() == 1 => {}
        Ok(_) => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {
            tx.rollback().await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(Some(count as u64))
}

async fn analyze_instructions(pool: &PgPool) -> Result<()> {
    sqlx::query("ANALYZE disbursement.instructions")
        .execute(pool)
        .await?;
    Ok(())
}

/// The columns of a chunk of instructions, written in one statement.
struct Chunk {
    crisis_id: String,
    ids: Vec<String>,
    households: Vec<String>,
    kinds: Vec<String>,
    tranches: Vec<i32>,
    parts: Vec<i32>,
    amounts: Vec<i64>,
    currencies: Vec<String>,
    refs: Vec<String>,
    channels: Vec<String>,
    providers: Vec<String>,
    tokens: Vec<String>,
    scheduled: Vec<DateTime<Utc>>,
    revisions: Vec<i32>,
    /// Change counters, drawn once the chunk is cut to the budget.
    seqs: Vec<i64>,
}

impl Chunk {
    /// Ids and pseudonyms by the rules of `src/instruction.rs`.
    fn new(crisis_id: &str, secret: &str, due: &[Due]) -> Self {
        let col = |f: &dyn Fn(&Due) -> String| due.iter().map(f).collect::<Vec<String>>();
        Chunk {
            crisis_id: crisis_id.to_owned(),
            ids: col(&|d| {
                crate::instruction::part_id(
                    crisis_id,
                    &d.household_id,
                    &d.kind,
                    d.tranche as u32,
                    d.part as u32,
                )
            }),
            households: col(&|d| d.household_id.clone()),
            kinds: col(&|d| d.kind.clone()),
            tranches: due.iter().map(|d| d.tranche).collect(),
            parts: due.iter().map(|d| d.part).collect(),
            amounts: due.iter().map(|d| d.amount_minor).collect(),
            currencies: col(&|d| d.currency.clone()),
            refs: col(&|d| crate::instruction::beneficiary_ref(secret, &d.household_id)),
            channels: col(&|d| d.payment_channel.clone()),
            providers: col(&|d| d.payment_provider.clone()),
            tokens: col(&|d| d.account_token.clone()),
            scheduled: due.iter().map(|d| d.scheduled_at).collect(),
            revisions: due.iter().map(|d| d.crisis_revision).collect(),
            seqs: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Keeps the first `n` instructions.
    fn truncate(&mut self, n: usize) {
        self.ids.truncate(n);
        self.households.truncate(n);
        self.kinds.truncate(n);
        self.tranches.truncate(n);
        self.parts.truncate(n);
        self.amounts.truncate(n);
        self.currencies.truncate(n);
        self.refs.truncate(n);
        self.channels.truncate(n);
        self.providers.truncate(n);
        self.tokens.truncate(n);
        self.scheduled.truncate(n);
        self.revisions.truncate(n);
        self.seqs.truncate(n);
    }

    /// Copies the chunk in, in due order (hence change order): (count,
    /// amount). Fails as a whole on a duplicate.
    async fn copy(
        &self,
        conn: &mut PgConnection,
        deadline_at: DateTime<Utc>,
    ) -> std::result::Result<(i64, i64), sqlx::Error> {
        fn field(buf: &mut String, value: &str) {
            for c in value.chars() {
                match c {
                    '\\' => buf.push_str("\\\\"),
                    '\t' => buf.push_str("\\t"),
                    '\n' => buf.push_str("\\n"),
                    '\r' => buf.push_str("\\r"),
                    c => buf.push(c),
                }
            }
            buf.push('\t');
        }
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let deadline = time(&deadline_at);
        let mut text = String::with_capacity(self.ids.len() * 320);
        for i in 0..self.ids.len() {
            field(&mut text, &self.ids[i]);
            field(&mut text, &self.crisis_id);
            field(&mut text, &self.households[i]);
            field(&mut text, &self.kinds[i]);
            field(&mut text, &self.tranches[i].to_string());
            field(&mut text, &self.parts[i].to_string());
            field(&mut text, &self.amounts[i].to_string());
            field(&mut text, &self.currencies[i]);
            field(&mut text, &self.refs[i]);
            field(&mut text, &self.channels[i]);
            field(&mut text, &self.providers[i]);
            field(&mut text, &self.tokens[i]);
            field(&mut text, &time(&self.scheduled[i]));
            field(&mut text, &self.revisions[i].to_string());
            field(&mut text, &self.seqs[i].to_string());
            text.push_str(&deadline);
            text.push('\n');
        }
        let mut copy = conn
            .copy_in_raw(
                "COPY disbursement.instructions (instruction_id, crisis_id, household_id, kind, tranche, part, \
                 amount_minor, currency, beneficiary_ref, channel, provider, account_token, scheduled_at, \
                 crisis_revision, change_seq, deadline_at) FROM STDIN",
            )
            .await?;
        copy.send(text.into_bytes()).await?;
        let n = copy.finish().await?;
        Ok((n as i64, self.amounts.iter().sum()))
    }

    /// Inserts the chunk, skipping instructions that exist: (count, amount)
    /// inserted.
    async fn insert(
        &self,
        conn: &mut PgConnection,
        deadline_at: DateTime<Utc>,
    ) -> std::result::Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "WITH inserted AS ( \
                INSERT INTO disbursement.instructions \
                    (instruction_id, crisis_id, household_id, kind, tranche, part, amount_minor, currency, beneficiary_ref, \
                     channel, provider, account_token, scheduled_at, crisis_revision, change_seq, deadline_at) \
                SELECT u.id, $1, u.household, u.kind, u.tranche, u.part, u.amount, u.currency, u.ref, u.channel, u.provider, \
                       u.token, u.scheduled, u.revision, u.seq, $2 \
                FROM UNNEST($3::text[], $4::text[], $5::text[], $6::int4[], $7::int8[], $8::text[], $9::text[], \
                            $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::int4[], $15::int4[], $16::int8[]) \
                     AS u(id, household, kind, tranche, amount, currency, ref, channel, provider, token, scheduled, revision, part, seq) \
                ON CONFLICT DO NOTHING \
                RETURNING amount_minor) \
             SELECT count(*), coalesce(sum(amount_minor), 0)::bigint FROM inserted",
        )
        .bind(&self.crisis_id)
        .bind(deadline_at)
        .bind(&self.ids)
        .bind(&self.households)
        .bind(&self.kinds)
        .bind(&self.tranches)
        .bind(&self.amounts)
        .bind(&self.currencies)
        .bind(&self.refs)
        .bind(&self.channels)
        .bind(&self.providers)
        .bind(&self.tokens)
        .bind(&self.scheduled)
        .bind(&self.revisions)
        .bind(&self.parts)
        .bind(&self.seqs)
        .fetch_one(conn)
        .await
    }
}
