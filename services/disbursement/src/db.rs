//! All SQL of the disbursement service, on PostgreSQL and on SQLite (the
//! instruction-creating pass is in `create.rs`; the batches that are the
//! instructions' outbox, retries and deadlines in `db/batches.rs`; our side
//! of a provider statement in `db/statement.rs`; field-verification tasks
//! in `db/tasks.rs`; field teams' keys and commands in
//! `db/field_keys.rs`; grievances in `db/grievances.rs`; registered providers
//! and the incidents their reports reveal in `db/providers.rs`). Statements that read the
//! same on both are written once; on SQLite, times are bound as
//! [`timestamp`] text and lists as JSON arrays.

use chrono::{DateTime, Utc};
use sumud_shared::db::sqlite::timestamp;
use sumud_shared::db::{Store, Tx};
use sumud_shared::events::crisis::CrisisEvent;
use sumud_shared::events::entitlement::{EntitlementDecision, EntitlementStatus};
use sumud_shared::{on_store, on_tx, Result};

mod batches;
mod field_keys;
mod grievances;
pub mod history;
mod providers;
mod statement;
mod tasks;
pub use batches::*;
pub use field_keys::*;
pub use grievances::*;
pub use providers::*;
pub use statement::*;
pub use tasks::*;

/// The disbursement service's PostgreSQL migrations (schema `disbursement`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The disbursement service's SQLite migrations (the attached `disbursement`).
pub static MIGRATOR_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The service's migrations, on both backends.
pub static MIGRATIONS: sumud_shared::db::Migrations = sumud_shared::db::Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: Some(&MIGRATOR_SQLITE),
};

/// The current time as each backend writes it.
fn now(tx: &Tx) -> &'static str {
    match tx {
        Tx::Postgres(_) => "now()",
        Tx::Sqlite(_) => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    }
}

/// Stores the crisis projection; a budget cut below what is already reserved
/// keeps the reserved amount as the cap (money already instructed cannot be
/// un-instructed) and is reported by the caller, while the budget the
/// operator authorised is kept beside it for [`release`] to return to.
/// Returns the cap stored when the event was newer than the projection,
/// `None` when it was not.
pub async fn save_crisis(tx: &mut Tx, e: &CrisisEvent, at: DateTime<Utc>) -> Result<Option<i64>> {
    // Only a later (revision, state) replaces the projection.
    let (greatest, crises) = match tx {
        Tx::Postgres(_) => ("GREATEST", "disbursement.crises"),
        Tx::Sqlite(_) => ("max", "crises"),
    };
    let sql = format!(
        "INSERT INTO disbursement.crises (crisis_id, state, revision, currency, budget_minor, authorised_minor, activated_at) \
         VALUES ($1, $2, $3, $4, $5, $5, CASE WHEN $2 = 'active' THEN $6 END) \
         ON CONFLICT (crisis_id) DO UPDATE SET \
            state = excluded.state, revision = excluded.revision, \
            budget_minor = {greatest}(excluded.budget_minor, {crises}.reserved_minor), \
            authorised_minor = excluded.authorised_minor, \
            activated_at = coalesce({crises}.activated_at, excluded.activated_at), updated_at = {now} \
         WHERE ({crises}.revision, CASE {crises}.state WHEN 'proposed' THEN 0 WHEN 'active' THEN 1 ELSE 2 END) \
             < (excluded.revision, CASE excluded.state WHEN 'proposed' THEN 0 WHEN 'active' THEN 1 ELSE 2 END) \
         RETURNING budget_minor",
        now = now(tx)
    );
    // The same binds on both backends but the time: a `timestamptz` on
    // PostgreSQL, the tables' RFC 3339 text on SQLite.
    macro_rules! save {
        ($conn:expr, $at:expr) => {
            sqlx::query_scalar(&sql)
                .bind(&e.crisis_id)
                .bind(e.state.as_str())
                .bind(e.revision)
                .bind(&e.definition.budget.currency)
                .bind(e.definition.budget.minor)
                .bind($at)
                .fetch_optional($conn)
                .await?
        };
    }
    Ok(match tx {
        Tx::Postgres(tx) => save!(&mut **tx, at),
        Tx::Sqlite(tx) => save!(&mut **tx, timestamp(at)),
    })
}

/// Stores the latest decision per entitlement (by eligibility's change order).
pub async fn save_entitlements(tx: &mut Tx, rows: &[(EntitlementDecision, i64)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let conn = match tx {
        Tx::Postgres(tx) => &mut **tx,
        Tx::Sqlite(tx) => return save_entitlements_sqlite(tx, rows).await,
    };
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

/// [`save_entitlements`] on SQLite: the latest decision per entitlement in
/// the batch, then one upsert per decision (the transaction holds the
/// file's write lock, so they are cheap).
async fn save_entitlements_sqlite(
    conn: &mut sqlx::SqliteConnection,
    rows: &[(EntitlementDecision, i64)],
) -> Result<()> {
    let mut latest: std::collections::BTreeMap<&str, &(EntitlementDecision, i64)> =
        std::collections::BTreeMap::new();
    for r in rows {
        let slot = latest.entry(r.0.entitlement_id.as_str()).or_insert(r);
        if slot.1 < r.1 {
            *slot = r;
        }
    }
    for (d, seq) in latest.into_values() {
        sqlx::query(
            "INSERT INTO disbursement.entitlements (entitlement_id, crisis_id, household_id, kind, status, \
                 amount_minor, currency, tranches, interval_days, crisis_revision, change_seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (entitlement_id) DO UPDATE SET status = excluded.status, \
                 amount_minor = excluded.amount_minor, tranches = excluded.tranches, \
                 interval_days = excluded.interval_days, crisis_revision = excluded.crisis_revision, \
                 change_seq = excluded.change_seq \
             WHERE entitlements.change_seq < excluded.change_seq",
        )
        .bind(&d.entitlement_id)
        .bind(&d.crisis_id)
        .bind(&d.household_id)
        .bind(d.kind.as_str())
        .bind(status_of(d))
        .bind(d.amount_per_tranche.minor)
        .bind(&d.amount_per_tranche.currency)
        .bind(d.tranches as i32)
        .bind(d.interval_days as i32)
        .bind(d.crisis_revision)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A decision's status as stored.
fn status_of(d: &EntitlementDecision) -> &'static str {
    match d.status {
        EntitlementStatus::Entitled => "entitled",
        EntitlementStatus::Waitlisted => "waitlisted",
        EntitlementStatus::Cancelled => "cancelled",
    }
}

/// Active crises that may have tranches due.
pub async fn active_crises(store: &Store) -> Result<Vec<String>> {
    const SQL: &str =
        "SELECT crisis_id FROM disbursement.crises WHERE state = 'active' ORDER BY crisis_id";
    Ok(on_store!(store, pool => sqlx::query_scalar(SQL).fetch_all(pool).await)?)
}

/// The clock passes reckon due dates by: the database's on PostgreSQL, the
/// service's on SQLite (as its passes use). Read before a pass, it is no
/// later than the moment the pass's snapshot was taken.
pub async fn clock(store: &Store) -> Result<DateTime<Utc>> {
    Ok(match store {
        Store::Postgres(pool) => sqlx::query_scalar("SELECT now()").fetch_one(pool).await?,
        Store::Sqlite(_) => Utc::now(),
    })
}

/// What decides when a crisis's next tranche falls due: its activation
/// time and each (interval in days, most tranches) of its entitled
/// entitlements. The clock to compare them with is [`clock`].
pub async fn tranche_schedule(
    store: &Store,
    crisis_id: &str,
) -> Result<(Option<DateTime<Utc>>, Vec<(i32, i32)>)> {
    const ACTIVATED: &str = "SELECT activated_at FROM disbursement.crises WHERE crisis_id = $1";
    const SCHEDULES: &str = "SELECT interval_days, max(tranches) FROM disbursement.entitlements \
         WHERE crisis_id = $1 AND status = 'entitled' GROUP BY interval_days";
    let activated: Option<Option<DateTime<Utc>>> = on_store!(store, pool => sqlx::query_scalar(ACTIVATED)
        .bind(crisis_id)
        .fetch_optional(pool)
        .await)?;
    let schedules =
        on_store!(store, pool => sqlx::query_as(SCHEDULES).bind(crisis_id).fetch_all(pool).await)?;
    Ok((activated.flatten(), schedules))
}

/// The instruction a report is about, locked (on SQLite the transaction
/// holds the write lock), or None if unknown.
pub async fn instruction_for_update(tx: &mut Tx, id: &str) -> Result<Option<Held>> {
    let lock = match tx {
        Tx::Postgres(_) => " FOR UPDATE",
        Tx::Sqlite(_) => "",
    };
    let sql = format!(
        "SELECT status, attempt, crisis_id, household_id, amount_minor, provider, provider_ref, reason_code \
         FROM disbursement.instructions WHERE instruction_id = $1{lock}"
    );
    Ok(on_tx!(tx, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)?)
}

/// An instruction as a status report finds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Held {
    /// Stored status.
    pub status: String,
    /// Latest attempt issued.
    pub attempt: i32,
    /// The crisis paying.
    pub crisis_id: String,
    /// The household paid.
    pub household_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// The provider that holds it.
    pub provider: String,
    /// The provider's reference of the payment, once paid.
    pub provider_ref: Option<String>,
    /// Why the current attempt was last rejected, if it was.
    pub reason_code: Option<String>,
}

/// Longest pass error kept on a crisis, in bytes.
const PASS_ERROR_MAX: usize = 500;

/// Records a failed scheduler pass on its crisis (for the dashboard).
pub async fn pass_failed(store: &Store, crisis_id: &str, error: &str) -> Result<()> {
    let error = sumud_shared::deadletter::cut_short(error.to_owned(), PASS_ERROR_MAX);
    match store {
        Store::Postgres(pool) => sqlx::query(
            "UPDATE disbursement.crises SET pass_failures = pass_failures + 1, \
                 last_pass_error = $2, last_pass_failed_at = now() WHERE crisis_id = $1",
        )
        .bind(crisis_id)
        .bind(error)
        .execute(pool)
        .await
        .map(drop)?,
        Store::Sqlite(pool) => sqlx::query(
            "UPDATE disbursement.crises SET pass_failures = pass_failures + 1, \
                 last_pass_error = ?2, last_pass_failed_at = ?3 WHERE crisis_id = ?1",
        )
        .bind(crisis_id)
        .bind(error)
        .bind(timestamp(Utc::now()))
        .execute(pool)
        .await
        .map(drop)?,
    }
    Ok(())
}

/// Clears a crisis's last pass error once a pass succeeds again (the count
/// of failures stays); whether there was one.
pub async fn pass_recovered(store: &Store, crisis_id: &str) -> Result<bool> {
    const SQL: &str = "UPDATE disbursement.crises SET last_pass_error = NULL \
                       WHERE crisis_id = $1 AND last_pass_error IS NOT NULL";
    let n = on_store!(store, pool => sqlx::query(SQL)
        .bind(crisis_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// A crisis's payments held on an unknown outcome (a timeout with no
/// attempt left, or whose crisis closed or entitlement ended): never
/// re-issued, their money reserved until the provider answers. Each
/// (instruction, attempt, provider, amount).
pub async fn held(store: &Store, crisis_id: &str) -> Result<Vec<(String, i32, String, i64)>> {
    const SQL: &str =
        "SELECT instruction_id, attempt, provider, amount_minor FROM disbursement.instructions \
         WHERE crisis_id = $1 AND status = 'retry_scheduled' AND next_attempt_at IS NULL \
         ORDER BY instruction_id";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(crisis_id).fetch_all(pool).await)?)
}

/// Whether this status event was already processed; records it if not.
pub async fn log_status(
    tx: &mut Tx,
    event_id: &str,
    r: &sumud_shared::events::payment::StatusReport,
    applied: bool,
    note: Option<&str>,
) -> Result<bool> {
    const SQL: &str = "INSERT INTO disbursement.status_log \
            (event_id, instruction_id, attempt, provider, status, reason_code, applied, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING";
    let inserted = on_tx!(tx, conn => sqlx::query(SQL)
        .bind(event_id)
        .bind(&r.reference_id)
        .bind(r.attempt as i32)
        .bind(&r.provider)
        .bind(r.status.as_str())
        .bind(r.reason_code.map(|c| c.as_str()))
        .bind(applied)
        .bind(note)
        .execute(conn)
        .await
        .map(|done| done.rows_affected()))?;
    Ok(inserted == 1)
}

/// Whether a status event id was already processed.
pub async fn status_seen(tx: &mut Tx, event_id: &str) -> Result<bool> {
    const SQL: &str = "SELECT EXISTS (SELECT 1 FROM disbursement.status_log WHERE event_id = $1)";
    Ok(on_tx!(tx, conn => sqlx::query_scalar(SQL).bind(event_id).fetch_one(conn).await)?)
}

/// Sets an instruction's status (and what goes with it). An overdue
/// attempt stays flagged while it is still open (received, pending): the
/// deadline is checked once per batch (see [`flag_overdue`]), and a late
/// acknowledgement does not pay it.
pub async fn set_status(
    tx: &mut Tx,
    id: &str,
    status: &str,
    reason: Option<&str>,
    provider_ref: Option<&str>,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<()> {
    let sql = format!(
        "UPDATE disbursement.instructions SET status = $2, reason_code = coalesce($3, reason_code), \
             provider_ref = coalesce($4, provider_ref), next_attempt_at = $5, \
             overdue = CASE WHEN $2 IN ('received', 'pending') THEN overdue ELSE false END, \
             updated_at = {} \
         WHERE instruction_id = $1",
        now(tx)
    );
    match tx {
        Tx::Postgres(tx) => sqlx::query(&sql)
            .bind(id)
            .bind(status)
            .bind(reason)
            .bind(provider_ref)
            .bind(next_attempt_at)
            .execute(&mut **tx)
            .await
            .map(drop)?,
        Tx::Sqlite(tx) => sqlx::query(&sql)
            .bind(id)
            .bind(status)
            .bind(reason)
            .bind(provider_ref)
            .bind(next_attempt_at.map(timestamp))
            .execute(&mut **tx)
            .await
            .map(drop)?,
    }
    Ok(())
}

/// Returns an instruction's amount to the crisis budget (failed or reversed).
/// After a cut below what was reserved, the cap comes down with the
/// reservation until it is back at the authorised budget: released money is
/// instructed again only within the budget the operator cut to.
pub async fn release(tx: &mut Tx, crisis_id: &str, amount: i64) -> Result<()> {
    let greatest = match tx {
        Tx::Postgres(_) => "GREATEST",
        Tx::Sqlite(_) => "max",
    };
    // Both right-hand sides read the row as it was before this update.
    let sql = format!(
        "UPDATE disbursement.crises SET reserved_minor = reserved_minor - $2, \
            budget_minor = {greatest}(coalesce(authorised_minor, budget_minor), reserved_minor - $2) \
         WHERE crisis_id = $1"
    );
    on_tx!(tx, conn => sqlx::query(&sql)
        .bind(crisis_id)
        .bind(amount)
        .execute(conn)
        .await
        .map(drop))?;
    Ok(())
}

/// One reconciliation line: per crisis and provider.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
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
pub async fn reconcile(store: &Store, crisis_id: &str) -> Result<Vec<ReconLine>> {
    const SQL: &str = "SELECT provider, currency, count(*) AS instructed, \
            CAST(coalesce(sum(amount_minor), 0) AS bigint) AS instructed_minor, \
            count(*) FILTER (WHERE status IN ('received', 'pending')) AS acknowledged, \
            count(*) FILTER (WHERE status = 'succeeded') AS paid, \
            CAST(coalesce(sum(amount_minor) FILTER (WHERE status = 'succeeded'), 0) AS bigint) AS paid_minor, \
            count(*) FILTER (WHERE status = 'failed') AS failed, \
            CAST(coalesce(sum(amount_minor) FILTER (WHERE status = 'failed'), 0) AS bigint) AS failed_minor, \
            count(*) FILTER (WHERE status = 'reversed') AS reversed, \
            CAST(coalesce(sum(amount_minor) FILTER (WHERE status = 'reversed'), 0) AS bigint) AS reversed_minor, \
            count(*) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS outstanding, \
            CAST(coalesce(sum(amount_minor) FILTER \
                 (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')), 0) AS bigint) AS outstanding_minor, \
            count(*) FILTER (WHERE overdue) AS overdue \
         FROM disbursement.instructions WHERE crisis_id = $1 GROUP BY provider, currency ORDER BY provider";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(crisis_id).fetch_all(pool).await)?)
}

/// The crisis's budget and reservation: (budget, reserved, live instruction total).
pub async fn budget(store: &Store, crisis_id: &str) -> Result<Option<(i64, i64, i64)>> {
    const SQL: &str = "SELECT c.budget_minor, c.reserved_minor, \
            (SELECT CAST(coalesce(sum(amount_minor), 0) AS bigint) FROM disbursement.instructions i \
             WHERE i.crisis_id = c.crisis_id AND i.status NOT IN ('failed', 'reversed')) \
         FROM disbursement.crises c WHERE c.crisis_id = $1";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(crisis_id).fetch_optional(pool).await)?)
}

/// A provider's instruction attempts of a crisis still awaiting a final
/// status, for file-based providers (pain.001 export).
pub async fn open_instructions(
    store: &Store,
    crisis_id: &str,
    provider: &str,
) -> Result<Vec<InstructionRow>> {
    let sql = format!(
        "SELECT {INSTRUCTION_COLUMNS} FROM disbursement.instructions \
         WHERE crisis_id = $1 AND provider = $2 AND status IN ('instructed', 'received', 'pending') \
         ORDER BY scheduled_at, instruction_id"
    );
    Ok(on_store!(store, pool => sqlx::query_as(&sql)
        .bind(crisis_id)
        .bind(provider)
        .fetch_all(pool)
        .await)?)
}

/// Instructions (count and amount) by crisis, currency and status, for the
/// Prometheus gauges.
pub async fn gauges(store: &Store) -> Result<Vec<(String, String, String, i64, i64)>> {
    const SQL: &str = "SELECT crisis_id, currency, status, count(*), \
                CAST(coalesce(sum(amount_minor), 0) AS bigint) \
         FROM disbursement.instructions GROUP BY 1, 2, 3";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}
