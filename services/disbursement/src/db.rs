//! All SQL of the disbursement service.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use sumud_shared::events::crisis::CrisisEvent;
use sumud_shared::events::entitlement::{EntitlementDecision, EntitlementStatus};
use sumud_shared::Result;

/// The disbursement service's migrations (schema `disbursement`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Stores the crisis projection; a budget cut below what is already reserved
/// keeps the reserved amount as the cap (money already instructed cannot be
/// un-instructed) and is reported by the caller.
pub async fn save_crisis(
    conn: &mut PgConnection,
    e: &CrisisEvent,
    at: DateTime<Utc>,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO disbursement.crises (crisis_id, state, revision, currency, budget_minor, activated_at) \
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $2 = 'active' THEN $6 END) \
         ON CONFLICT (crisis_id) DO UPDATE SET \
            state = EXCLUDED.state, revision = EXCLUDED.revision, \
            budget_minor = GREATEST(EXCLUDED.budget_minor, disbursement.crises.reserved_minor), \
            activated_at = coalesce(disbursement.crises.activated_at, EXCLUDED.activated_at), updated_at = now() \
         WHERE (disbursement.crises.revision, CASE disbursement.crises.state WHEN 'proposed' THEN 0 WHEN 'active' THEN 1 ELSE 2 END) \
             < (EXCLUDED.revision, CASE EXCLUDED.state WHEN 'proposed' THEN 0 WHEN 'active' THEN 1 ELSE 2 END)",
    )
    .bind(&e.crisis_id)
    .bind(e.state.as_str())
    .bind(e.revision)
    .bind(&e.definition.budget.currency)
    .bind(e.definition.budget.minor)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Stores the latest decision per entitlement (by eligibility's change order).
pub async fn save_entitlements(
    conn: &mut PgConnection,
    rows: &[(EntitlementDecision, i64)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&EntitlementDecision) -> String| {
        rows.iter().map(|(d, _)| f(d)).collect::<Vec<String>>()
    };
    let int = |f: &dyn Fn(&EntitlementDecision) -> i32| {
        rows.iter().map(|(d, _)| f(d)).collect::<Vec<i32>>()
    };
    let status = |d: &EntitlementDecision| match d.status {
        EntitlementStatus::Entitled => "entitled",
        EntitlementStatus::Waitlisted => "waitlisted",
        EntitlementStatus::Cancelled => "cancelled",
    };
    let ids = col(&|d| d.entitlement_id.clone());
    let crises = col(&|d| d.crisis_id.clone());
    let households = col(&|d| d.household_id.clone());
    let kinds = col(&|d| d.kind.as_str().to_owned());
    let statuses = col(&|d| status(d).to_owned());
    let amounts: Vec<i64> = rows
        .iter()
        .map(|(d, _)| d.amount_per_tranche.minor)
        .collect();
    let currencies = col(&|d| d.amount_per_tranche.currency.clone());
    let tranches = int(&|d| d.tranches as i32);
    let intervals = int(&|d| d.interval_days as i32);
    let revisions = int(&|d| d.crisis_revision);
    let seqs: Vec<i64> = rows.iter().map(|(_, s)| *s).collect();
    sqlx::query(
        "INSERT INTO disbursement.entitlements AS e (entitlement_id, crisis_id, household_id, kind, status, amount_minor, \
             currency, tranches, interval_days, crisis_revision, change_seq) \
         SELECT DISTINCT ON (u.id) u.* FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], \
             $7::text[], $8::int4[], $9::int4[], $10::int4[], $11::int8[]) \
             AS u(id, crisis, household, kind, status, amount, currency, tranches, interval_days, revision, seq) \
         ORDER BY u.id, u.seq DESC \
         ON CONFLICT (entitlement_id) DO UPDATE SET status = EXCLUDED.status, amount_minor = EXCLUDED.amount_minor, \
             tranches = EXCLUDED.tranches, interval_days = EXCLUDED.interval_days, \
             crisis_revision = EXCLUDED.crisis_revision, change_seq = EXCLUDED.change_seq \
         WHERE e.change_seq < EXCLUDED.change_seq",
    )
    .bind(&ids)
    .bind(&crises)
    .bind(&households)
    .bind(&kinds)
    .bind(&statuses)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&tranches)
    .bind(&intervals)
    .bind(&revisions)
    .bind(&seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Active crises that may have tranches due.
pub async fn active_crises(pool: &PgPool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT crisis_id FROM disbursement.crises WHERE state = 'active' ORDER BY crisis_id",
    )
    .fetch_all(pool)
    .await?)
}

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
/// transaction that reserves its amount against the budget: what is due is
/// read once, in due order, and created in transactions of up to [`CHUNK`]
/// that each lock the crisis row and stop at the remaining budget (a
/// running total in due order); the CHECK on the crisis row is the last line
/// of defence. A pass ends at the first transaction the budget cuts short,
/// so what is created is always a prefix of the due order, as one statement
/// would have it. `committed` is nudged after each commit. Returns how many
/// were created.
pub async fn create_due(
    pool: &PgPool,
    crisis_id: &str,
    secret: &str,
    day_seconds: f64,
    deadline_secs: i64,
    committed: &tokio::sync::Notify,
) -> Result<u64> {
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
    // The running total in due order stops at the remaining budget.
    let mut running = 0i64;
    let fits = rows
        .amounts
        .iter()
        .take_while(|a| {
            running = running.saturating_add(**a);
            running <= budget - reserved
        })
        .count();
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
            text.push_str(&deadline);
            text.push('\n');
        }
        let mut copy = conn
            .copy_in_raw(
                "COPY disbursement.instructions (instruction_id, crisis_id, household_id, kind, tranche, \
                 amount_minor, currency, beneficiary_ref, channel, provider, account_token, scheduled_at, \
                 crisis_revision, deadline_at) FROM STDIN",
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

/// Re-issues instructions whose retry time has come, as their next attempt.
pub async fn reissue_due(pool: &PgPool, deadline_secs: i64) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE disbursement.instructions SET attempt = attempt + 1, status = 'instructed', reason_code = NULL, \
             next_attempt_at = NULL, deadline_at = now() + make_interval(secs => $1::float8), overdue = false, \
             updated_at = now(), change_seq = nextval('disbursement.change_seq') \
         WHERE status = 'retry_scheduled' AND next_attempt_at <= now()",
    )
    .bind(deadline_secs as f64)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// Flags instructions with no final status past their deadline.
pub async fn flag_overdue(pool: &PgPool) -> Result<u64> {
    let r = sqlx::query(
        "UPDATE disbursement.instructions SET overdue = true, updated_at = now() \
         WHERE status IN ('instructed', 'received', 'pending') AND deadline_at < now() AND NOT overdue",
    )
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// An instruction attempt to publish.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstructionRow {
    /// Id.
    pub instruction_id: String,
    /// Attempt.
    pub attempt: i32,
    /// Crisis.
    pub crisis_id: String,
    /// Crisis revision.
    pub crisis_revision: i32,
    /// Pseudonym.
    pub beneficiary_ref: String,
    /// Account token.
    pub account_token: String,
    /// Amount.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Channel.
    pub channel: String,
    /// Provider.
    pub provider: String,
    /// Tranche.
    pub tranche: i32,
    /// 0 for the tranche itself, n for its n-th top-up.
    pub part: i32,
    /// Due time.
    pub scheduled_at: DateTime<Utc>,
    /// Change counter.
    pub change_seq: i64,
}

/// Attempts not yet published, in change order.
pub async fn unpublished(conn: &mut PgConnection, limit: i64) -> Result<Vec<InstructionRow>> {
    Ok(sqlx::query_as(
        "SELECT instruction_id, attempt, crisis_id, crisis_revision, beneficiary_ref, account_token, amount_minor, \
                currency, channel, provider, tranche, part, scheduled_at, change_seq \
         FROM disbursement.instructions \
         WHERE published_seq IS DISTINCT FROM change_seq AND status = 'instructed' \
         ORDER BY change_seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Attempts not yet published whose change counter is above `after`, in
/// change order (the relay's next batch while earlier ones are in flight).
pub async fn unpublished_after(
    conn: &mut PgConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<InstructionRow>> {
    Ok(sqlx::query_as(
        "SELECT instruction_id, attempt, crisis_id, crisis_revision, beneficiary_ref, account_token, amount_minor, \
                currency, channel, provider, tranche, part, scheduled_at, change_seq \
         FROM disbursement.instructions \
         WHERE published_seq IS DISTINCT FROM change_seq AND status = 'instructed' AND change_seq > $1 \
         ORDER BY change_seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Marks attempts published at the change they were published at.
pub async fn mark_published(conn: &mut PgConnection, ids: &[String], seqs: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE disbursement.instructions i SET published_seq = u.seq \
         FROM UNNEST($1::text[], $2::int8[]) AS u(id, seq) WHERE i.instruction_id = u.id",
    )
    .bind(ids)
    .bind(seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks published the attempts whose change counter is still one of
/// `seqs` (all acknowledged); an attempt changed since stays unpublished.
/// Reads through the unpublished index, in change order.
pub async fn mark_published_seqs(conn: &mut PgConnection, seqs: &[i64]) -> Result<()> {
    sqlx::query(
        "UPDATE disbursement.instructions SET published_seq = change_seq \
         WHERE change_seq = ANY($1::int8[]) AND published_seq IS DISTINCT FROM change_seq",
    )
    .bind(seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// The instruction a report is about, locked, or None if unknown.
pub async fn instruction_for_update(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<(String, i32, String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT status, attempt, crisis_id, household_id, amount_minor FROM disbursement.instructions \
         WHERE instruction_id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Whether this status event was already processed; records it if not.
pub async fn log_status(
    conn: &mut PgConnection,
    event_id: &str,
    r: &sumud_shared::events::payment::StatusReport,
    applied: bool,
    note: Option<&str>,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO disbursement.status_log (event_id, instruction_id, attempt, provider, status, reason_code, applied, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(&r.reference_id)
    .bind(r.attempt as i32)
    .bind(&r.provider)
    .bind(r.status.as_str())
    .bind(r.reason_code.map(|c| c.as_str()))
    .bind(applied)
    .bind(note)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Whether a status event id was already processed.
pub async fn status_seen(conn: &mut PgConnection, event_id: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM disbursement.status_log WHERE event_id = $1)",
    )
    .bind(event_id)
    .fetch_one(conn)
    .await?)
}

/// Sets an instruction's status (and what goes with it).
pub async fn set_status(
    conn: &mut PgConnection,
    id: &str,
    status: &str,
    reason: Option<&str>,
    provider_ref: Option<&str>,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query(
        "UPDATE disbursement.instructions SET status = $2, reason_code = coalesce($3, reason_code), \
             provider_ref = coalesce($4, provider_ref), next_attempt_at = $5, overdue = false, updated_at = now() \
         WHERE instruction_id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .bind(provider_ref)
    .bind(next_attempt_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns an instruction's amount to the crisis budget (failed or reversed).
pub async fn release(conn: &mut PgConnection, crisis_id: &str, amount: i64) -> Result<()> {
    sqlx::query(
        "UPDATE disbursement.crises SET reserved_minor = reserved_minor - $2 WHERE crisis_id = $1",
    )
    .bind(crisis_id)
    .bind(amount)
    .execute(conn)
    .await?;
    Ok(())
}

/// Raises a field-verification task for a household.
pub async fn verification_task(
    conn: &mut PgConnection,
    household: &str,
    instruction: &str,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO disbursement.verification_tasks (household_id, instruction_id, reason_code) VALUES ($1, $2, $3) \
         ON CONFLICT (instruction_id) DO NOTHING",
    )
    .bind(household)
    .bind(instruction)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// One reconciliation line: per crisis and provider.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReconLine {
    /// Provider.
    pub provider: String,
    /// Currency.
    pub currency: String,
    /// Instructions created.
    pub instructed: i64,
    /// Amount instructed.
    pub instructed_minor: i64,
    /// Acknowledged by the provider (received or pending, not final).
    pub acknowledged: i64,
    /// Paid.
    pub paid: i64,
    /// Amount paid.
    pub paid_minor: i64,
    /// Failed for good.
    pub failed: i64,
    /// Amount failed.
    pub failed_minor: i64,
    /// Reversed after payment.
    pub reversed: i64,
    /// Amount reversed.
    pub reversed_minor: i64,
    /// Awaiting a final status (including scheduled retries).
    pub outstanding: i64,
    /// Amount awaiting a final status.
    pub outstanding_minor: i64,
    /// Outstanding past their deadline.
    pub overdue: i64,
}

/// Reconciliation of a crisis, per provider.
pub async fn reconcile(pool: &PgPool, crisis_id: &str) -> Result<Vec<ReconLine>> {
    Ok(sqlx::query_as(
        "SELECT provider, currency, count(*) AS instructed, coalesce(sum(amount_minor), 0)::bigint AS instructed_minor, \
            count(*) FILTER (WHERE status IN ('received', 'pending')) AS acknowledged, \
            count(*) FILTER (WHERE status = 'succeeded') AS paid, \
            coalesce(sum(amount_minor) FILTER (WHERE status = 'succeeded'), 0)::bigint AS paid_minor, \
            count(*) FILTER (WHERE status = 'failed') AS failed, \
            coalesce(sum(amount_minor) FILTER (WHERE status = 'failed'), 0)::bigint AS failed_minor, \
            count(*) FILTER (WHERE status = 'reversed') AS reversed, \
            coalesce(sum(amount_minor) FILTER (WHERE status = 'reversed'), 0)::bigint AS reversed_minor, \
            count(*) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS outstanding, \
            coalesce(sum(amount_minor) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')), 0)::bigint AS outstanding_minor, \
            count(*) FILTER (WHERE overdue) AS overdue \
         FROM disbursement.instructions WHERE crisis_id = $1 GROUP BY provider, currency ORDER BY provider",
    )
    .bind(crisis_id)
    .fetch_all(pool)
    .await?)
}

/// The crisis's budget and reservation: (budget, reserved, live instruction total).
pub async fn budget(pool: &PgPool, crisis_id: &str) -> Result<Option<(i64, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT c.budget_minor, c.reserved_minor, \
            (SELECT coalesce(sum(amount_minor), 0)::bigint FROM disbursement.instructions i \
             WHERE i.crisis_id = c.crisis_id AND i.status NOT IN ('failed', 'reversed')) \
         FROM disbursement.crises c WHERE c.crisis_id = $1",
    )
    .bind(crisis_id)
    .fetch_optional(pool)
    .await?)
}

/// A provider's instruction attempts of a crisis still awaiting a final
/// status, for file-based providers (pain.001 export).
pub async fn open_instructions(
    pool: &PgPool,
    crisis_id: &str,
    provider: &str,
) -> Result<Vec<InstructionRow>> {
    Ok(sqlx::query_as(
        "SELECT instruction_id, attempt, crisis_id, crisis_revision, beneficiary_ref, account_token, amount_minor, \
                currency, channel, provider, tranche, part, scheduled_at, change_seq \
         FROM disbursement.instructions \
         WHERE crisis_id = $1 AND provider = $2 AND status IN ('instructed', 'received', 'pending') \
         ORDER BY scheduled_at, instruction_id",
    )
    .bind(crisis_id)
    .bind(provider)
    .fetch_all(pool)
    .await?)
}
