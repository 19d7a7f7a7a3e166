//! All SQL of the disbursement service.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use sumud_shared::events::crisis::CrisisEvent;
use sumud_shared::events::entitlement::{EntitlementDecision, EntitlementStatus};
use sumud_shared::Result;

/// The disbursement service's migrations (schema `disbursement`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The service's migrations: PostgreSQL only so far.
pub static MIGRATIONS: sumud_shared::db::Migrations = sumud_shared::db::Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: None,
};

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

/// Instructions (count and amount) by crisis, currency and status, for the
/// Prometheus gauges.
pub async fn gauges(pool: &PgPool) -> Result<Vec<(String, String, String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT crisis_id, currency, status, count(*), coalesce(sum(amount_minor), 0)::bigint \
         FROM disbursement.instructions GROUP BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?)
}
