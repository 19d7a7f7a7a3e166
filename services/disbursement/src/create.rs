//! Creating the instructions now due: the one place where money is reserved
//! against a crisis budget as instructions come into being. On PostgreSQL
//! what is due is read once per pass, in due order, through a cursor, and
//! written in chunks, each in the transaction that locks the crisis row and
//! reserves its amount; on SQLite (`create/sqlite.rs`) each chunk is read
//! and written in one transaction that holds the file's write lock.

mod sqlite;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use sumud_shared::db::Store;
use sumud_shared::Result;

use crate::config::DisbursementConfig;

/// Instructions created per transaction of a pass: each transaction locks
/// the crisis row and reserves what it creates, and the relay can publish
/// one while the next is written.
const CHUNK: usize = 20_000;

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

/// Creates every instruction now due for one crisis. Each is inserted in the
/// transaction that reserves its amount against the budget, in transactions
/// of up to [`CHUNK`] that each lock the crisis and stop at the remaining
/// budget (a running total in due order); the CHECK on the crisis row is the
/// last line of defence. A pass ends at the first transaction the budget
/// cuts short, so what is created is always a prefix of the due order, as
/// one statement would have it. The schedule (seconds per day), the
/// deadline and the pseudonym secret come from `config`. `committed` is
/// nudged after each commit. Returns how many were created.
pub async fn create_due(
    store: &Store,
    crisis_id: &str,
    config: &DisbursementConfig,
    committed: &tokio::sync::Notify,
) -> Result<u64> {
    match store {
        Store::Postgres(pool) => create_due_postgres(pool, crisis_id, config, committed).await,
        Store::Sqlite(pool) => sqlite::create_due(pool, crisis_id, config, committed).await,
    }
}

/// [`create_due`] on PostgreSQL: what is due is read once, in due order,
/// through a cursor on one snapshot, while chunks are written by `COPY`.
async fn create_due_postgres(
    pool: &PgPool,
    crisis_id: &str,
    config: &DisbursementConfig,
    committed: &tokio::sync::Notify,
) -> Result<u64> {
    let (secret, day_seconds, deadline_secs) = (
        config.pseudonym_secret.as_str(),
        config.day_seconds,
        config.deadline_secs,
    );
    refresh_stale_statistics(pool).await?;
    // One snapshot for the whole pass, read through a cursor.
    let mut read = pool.begin().await?;
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
                  whose parts failed or was reversed, and still among its \
                  tranches (a cut cannot take back one already paid, but it \
                  gets no top-up); due at once. */ \
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
                 AND e.amount_minor > p.instructed AND NOT p.broken AND p.tranche <= e.tranches \
               OFFSET 0) d \
         JOIN registry.households_v h ON h.household_id = d.household_id \
         ORDER BY d.scheduled_at, d.household_id, d.kind, d.tranche, d.part",
    )
    .bind(crisis_id)
    .bind(day_seconds)
    .execute(&mut *read)
    .await?;
    let fetch = format!("FETCH {CHUNK} FROM due");
    let mut chunk = next_chunk(&mut read, &fetch, crisis_id, secret, deadline_secs).await?;
    let mut created = 0;
    while !chunk.is_empty() {
        let full = chunk.len() == CHUNK;
        // The next chunk is read (and prepared) while this one is written.
        let (done, following) = tokio::join!(create_chunk(pool, chunk), async {
            if full {
                next_chunk(&mut read, &fetch, crisis_id, secret, deadline_secs)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        });
        let (n, complete) = done?;
        let first = created == 0;
        created += n;
        let more = complete && full;
        if n > 0 && (!first || !more) {
            committed.notify_one();
        }
        if first && more {
            // The relay reads these rows as they commit, through plans
            // chosen on the table's statistics, which autovacuum would
            // refresh only later: without them it reads every unpublished
            // row for each batch.
            analyze_instructions(pool).await?;
            committed.notify_one();
        }
        match following? {
            Some(c) if more => chunk = c,
            _ => break,
        }
    }
    read.rollback().await?;
    if created >= ANALYZE_AFTER {
        analyze_instructions(pool).await?;
    }
    Ok(created)
}

/// The next chunk of the pass's cursor.
async fn next_chunk<'a>(
    read: &mut PgConnection,
    fetch: &str,
    crisis_id: &'a str,
    secret: &str,
    deadline_secs: i64,
) -> Result<Chunk<'a>> {
    let due: Vec<Due> = sqlx::query_as(fetch).fetch_all(read).await?;
    Ok(Chunk::new(crisis_id, secret, deadline_secs, &due))
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

async fn analyze_instructions(pool: &PgPool) -> Result<()> {
    sqlx::query("ANALYZE disbursement.instructions")
        .execute(pool)
        .await?;
    Ok(())
}

/// Creates the instructions of a chunk (in due order) in one transaction
/// that reserves their amounts, up to the remaining budget; returns how many
/// were created and whether all of them fitted (and the crisis is still
/// active).
async fn create_chunk(pool: &PgPool, mut rows: Chunk<'_>) -> Result<(u64, bool)> {
    let crisis_id = rows.crisis_id;
    let mut tx = pool.begin().await?;
    let locked: Option<(i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT budget_minor, reserved_minor, now() + make_interval(secs => $2::float8) \
         FROM disbursement.crises WHERE crisis_id = $1 AND state = 'active' FOR UPDATE",
    )
    .bind(crisis_id)
    .bind(rows.deadline_secs as f64)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((budget, reserved, deadline_at)) = locked else {
        return Ok((0, false));
    };
    let fits = fitting(&rows.amounts, budget - reserved);
    if fits == 0 {
        return Ok((0, false));
    }
    let complete = fits == rows.len();
    rows.truncate(fits);
    // The rows were read as not instructed yet, and the crisis row lock
    // keeps a concurrent pass from inserting them since, unless it read
    // before this one did: then the savepoint lets this transaction skip
    // what the other created. COPY is much cheaper than an INSERT, all the
    // more one with ON CONFLICT's speculative insertion.
    sqlx::query("SAVEPOINT chunk").execute(&mut *tx).await?;
    let inserted = match rows.copy(&mut tx, deadline_at).await {
        Ok(c) => c,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            sqlx::query("ROLLBACK TO SAVEPOINT chunk")
                .execute(&mut *tx)
                .await?;
            rows.insert(&mut tx).await?
        }
        Err(e) => return Err(e.into()),
    };
    if inserted.0 > 0 {
        sqlx::query("UPDATE disbursement.crises SET reserved_minor = reserved_minor + $2 WHERE crisis_id = $1")
            .bind(crisis_id)
            .bind(inserted.1)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((inserted.0 as u64, complete))
}

/// How many of `amounts`, in due order, fit in `room`: the running total
/// in due order stops at the remaining budget.
fn fitting(amounts: &[i64], room: i64) -> usize {
    let mut running = 0i64;
    amounts
        .iter()
        .take_while(|a| match running.checked_add(**a) {
            // An overflowing total fits no budget (saturating would let it
            // pass a room of i64::MAX).
            Some(total) if total <= room => {
                running = total;
                true
            }
            _ => false,
        })
        .count()
}

/// The columns of a chunk of instructions, written in one statement.
struct Chunk<'a> {
    crisis_id: &'a str,
    deadline_secs: i64,
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
}

impl<'a> Chunk<'a> {
    /// Ids and pseudonyms by the rules of `src/instruction.rs`.
    fn new(crisis_id: &'a str, secret: &str, deadline_secs: i64, due: &[Due]) -> Self {
        let col = |f: &dyn Fn(&Due) -> String| due.iter().map(f).collect::<Vec<String>>();
        Chunk {
            crisis_id,
            deadline_secs,
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
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
            field(&mut text, self.crisis_id);
            field(&mut text, &self.households[i]);
            field(&mut text, &self.kinds[i]);
            field(&mut text, &self.tranches[i].to_string());
            field(&mut text, &self.amounts[i].to_string());
            field(&mut text, &self.currencies[i]);
            field(&mut text, &self.refs[i]);
            field(&mut text, &self.channels[i]);
            field(&mut text, &self.providers[i]);
            field(&mut text, &self.tokens[i]);
            field(&mut text, &time(&self.scheduled[i]));
            field(&mut text, &self.revisions[i].to_string());
            field(&mut text, &self.parts[i].to_string());
            text.push_str(&deadline);
            text.push('\n');
        }
        let mut copy = conn
            .copy_in_raw(
                "COPY disbursement.instructions (instruction_id, crisis_id, household_id, kind, tranche, \
                 amount_minor, currency, beneficiary_ref, channel, provider, account_token, scheduled_at, \
                 crisis_revision, part, deadline_at) FROM STDIN",
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
    ) -> std::result::Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "WITH inserted AS ( \
                INSERT INTO disbursement.instructions \
                    (instruction_id, crisis_id, household_id, kind, tranche, part, amount_minor, currency, beneficiary_ref, \
                     channel, provider, account_token, scheduled_at, crisis_revision, deadline_at) \
                SELECT u.id, $1, u.household, u.kind, u.tranche, u.part, u.amount, u.currency, u.ref, u.channel, u.provider, \
                       u.token, u.scheduled, u.revision, now() + make_interval(secs => $2::float8) \
                FROM UNNEST($3::text[], $4::text[], $5::text[], $6::int4[], $7::int8[], $8::text[], $9::text[], \
                            $10::text[], $11::text[], $12::text[], $13::timestamptz[], $14::int4[], $15::int4[]) \
                     AS u(id, household, kind, tranche, amount, currency, ref, channel, provider, token, scheduled, revision, part) \
                ON CONFLICT DO NOTHING \
                RETURNING amount_minor) \
             SELECT count(*), coalesce(sum(amount_minor), 0)::bigint FROM inserted",
        )
        .bind(self.crisis_id)
        .bind(self.deadline_secs as f64)
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
        .fetch_one(conn)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::fitting;

    #[test]
    fn a_chunk_is_cut_where_the_running_total_passes_the_room() {
        assert_eq!(fitting(&[3, 4, 5], 7), 2);
        assert_eq!(fitting(&[3, 4, 5], 6), 1);
        assert_eq!(fitting(&[3, 4, 5], 12), 3);
        assert_eq!(fitting(&[3, 4, 5], 0), 0);
        // A later small amount does not slip in after a cut: a prefix only.
        assert_eq!(fitting(&[3, 9, 1], 5), 1);
        assert_eq!(fitting(&[i64::MAX, 1], i64::MAX), 1);
    }
}
