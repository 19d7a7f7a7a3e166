//! All SQL of the dashboard. Every statement is a read: the dashboard owns no
//! schema and runs no migration, it reads the tables the other services own
//! (control's crises and audit, the registry's documented view, eligibility's
//! entitlements, disbursement's instructions, status log and field tasks,
//! alerts' alerts and triggers). A service that has never started has no
//! tables yet; [`sources`] says which exist so that the callers skip the
//! others instead of failing.
//!
//! Statements aggregate in the database (one row per crisis, area or
//! provider), so the cost of a snapshot does not grow with the number of
//! households on the wire.
//!
//! Every statement reads the same on PostgreSQL and SQLite (`CAST`, not
//! `::`; `UNION ALL` of two groupings, not `GROUPING SETS`; windows, not
//! `DISTINCT ON`), except where noted: control's JSON definition, the
//! tables' existence, and the latency percentiles (computed here on SQLite,
//! which has no `percentile_cont`).

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sumud_shared::db::sqlite::timestamp;
use sumud_shared::db::Store;
use sumud_shared::on_store;

use crate::error::Result;
use crate::model::{AuditEntry, Sources};

/// Window of the provider figures (latency, rejection rate), seconds.
pub const PROVIDER_WINDOW_SECS: i64 = 3600;

/// Runs `sql` binding `only` (a crisis id or none) as `$1`, on either backend.
async fn fetch_only<T>(store: &Store, sql: &str, only: Option<&str>) -> Result<Vec<T>>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin,
{
    Ok(on_store!(store, pool => sqlx::query_as(sql).bind(only).fetch_all(pool).await)?)
}

/// Runs `sql` with `{since}` standing for the start of the provider
/// figures' window: on PostgreSQL by the database's clock, on SQLite (whose
/// clock is this process's) as [`timestamp`] text.
async fn fetch_window<T>(store: &Store, sql: &str) -> Result<Vec<T>>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin,
{
    Ok(match store {
        Store::Postgres(pool) => {
            sqlx::query_as(&sql.replace("{since}", "now() - make_interval(secs => $1)"))
                .bind(PROVIDER_WINDOW_SECS as f64)
                .fetch_all(pool)
                .await?
        }
        Store::Sqlite(pool) => {
            let since = Utc::now() - chrono::Duration::seconds(PROVIDER_WINDOW_SECS);
            sqlx::query_as(&sql.replace("{since}", "$1"))
                .bind(timestamp(since))
                .fetch_all(pool)
                .await?
        }
    })
}

/// Which services' tables exist.
pub async fn sources(store: &Store) -> Result<Sources> {
    let (control, registry, eligibility, disbursement, alerts): (bool, bool, bool, bool, bool) =
        match store {
            Store::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT to_regclass('control.crises') IS NOT NULL, \
                            to_regclass('registry.households_v') IS NOT NULL, \
                            to_regclass('eligibility.entitlements') IS NOT NULL, \
                            EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'disbursement' \
                                    AND table_name = 'crises' AND column_name = 'last_pass_error'), \
                            to_regclass('alerts.triggers') IS NOT NULL",
                )
                .fetch_one(pool)
                .await?
            }
            // Every schema's file is attached; a service that never started
            // has not created its tables in it.
            Store::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM control.sqlite_master WHERE name = 'crises'), \
                            EXISTS (SELECT 1 FROM registry.sqlite_master WHERE name = 'households_v'), \
                            EXISTS (SELECT 1 FROM eligibility.sqlite_master WHERE name = 'entitlements'), \
                            EXISTS (SELECT 1 FROM pragma_table_info('crises', 'disbursement') WHERE name = 'last_pass_error'), \
                            EXISTS (SELECT 1 FROM alerts.sqlite_master WHERE name = 'triggers')",
                )
                .fetch_one(pool)
                .await?
            }
        };
    Ok(Sources {
        control,
        registry,
        eligibility,
        disbursement,
        alerts,
    })
}

/// A crisis as control records it, with its definition unpacked.
#[derive(Debug, Clone, FromRow)]
pub struct CrisisRow {
    /// Crisis id.
    pub crisis_id: String,
    /// Definition title.
    pub title: String,
    /// Definition hazard.
    pub hazard: String,
    /// Definition severity.
    pub severity: String,
    /// Lifecycle state.
    pub state: String,
    /// Revision.
    pub revision: i32,
    /// Whether something awaits approval.
    pub pending_approval: bool,
    /// Definition areas.
    pub areas: Vec<String>,
    /// Budget currency.
    pub currency: String,
    /// Budget, minor units.
    pub budget_minor: i64,
    /// Declaring principal.
    pub declared_by: String,
    /// Declaration time.
    pub declared_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Every crisis (or just `only`), newest first.
pub async fn crises(store: &Store, only: Option<&str>) -> Result<Vec<CrisisRow>> {
    match store {
        Store::Postgres(pool) => Ok(sqlx::query_as(
            "SELECT crisis_id, \
                    coalesce(definition->>'title', '') AS title, \
                    coalesce(definition->>'hazard', '') AS hazard, \
                    coalesce(definition->>'severity', '') AS severity, \
                    state, revision, pending IS NOT NULL AS pending_approval, \
                    ARRAY(SELECT jsonb_array_elements_text(coalesce(definition->'areas', '[]'::jsonb))) AS areas, \
                    coalesce(definition->'budget'->>'currency', '') AS currency, \
                    coalesce((definition->'budget'->>'minor')::bigint, 0) AS budget_minor, \
                    declared_by, created_at AS declared_at, updated_at \
             FROM control.crises \
             WHERE $1::text IS NULL OR crisis_id = $1 \
             ORDER BY created_at DESC, crisis_id",
        )
        .bind(only)
        .fetch_all(pool)
        .await?),
        Store::Sqlite(pool) => {
            let rows: Vec<CrisisRowJson> = sqlx::query_as(
                "SELECT crisis_id, \
                        coalesce(definition->>'$.title', '') AS title, \
                        coalesce(definition->>'$.hazard', '') AS hazard, \
                        coalesce(definition->>'$.severity', '') AS severity, \
                        state, revision, pending IS NOT NULL AS pending_approval, \
                        coalesce(definition->'$.areas', '[]') AS areas, \
                        coalesce(definition->>'$.budget.currency', '') AS currency, \
                        coalesce(CAST(definition->>'$.budget.minor' AS integer), 0) AS budget_minor, \
                        declared_by, created_at AS declared_at, updated_at \
                 FROM control.crises \
                 WHERE ?1 IS NULL OR crisis_id = ?1 \
                 ORDER BY created_at DESC, crisis_id",
            )
            .bind(only)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(CrisisRowJson::into_row).collect())
        }
    }
}

/// [`CrisisRow`] as SQLite returns it: the areas as a JSON array.
#[derive(FromRow)]
struct CrisisRowJson {
    crisis_id: String,
    title: String,
    hazard: String,
    severity: String,
    state: String,
    revision: i32,
    pending_approval: bool,
    areas: String,
    currency: String,
    budget_minor: i64,
    declared_by: String,
    declared_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl CrisisRowJson {
    fn into_row(self) -> CrisisRow {
        CrisisRow {
            // Control wrote the array; an unreadable one shows no areas.
            areas: serde_json::from_str(&self.areas).unwrap_or_default(),
            crisis_id: self.crisis_id,
            title: self.title,
            hazard: self.hazard,
            severity: self.severity,
            state: self.state,
            revision: self.revision,
            pending_approval: self.pending_approval,
            currency: self.currency,
            budget_minor: self.budget_minor,
            declared_by: self.declared_by,
            declared_at: self.declared_at,
            updated_at: self.updated_at,
        }
    }
}

/// Eligibility's figures of one crisis.
#[derive(Debug, Clone, Default, FromRow)]
pub struct EligibilityRow {
    /// Crisis id.
    pub crisis_id: String,
    /// Committed against the budget (eligibility's running total).
    pub committed_minor: i64,
    /// Households entitled.
    pub entitled_households: i64,
    /// What they are entitled to over every tranche.
    pub entitled_minor: i64,
    /// Households waitlisted.
    pub waitlisted_households: i64,
    /// What they would need over every tranche.
    pub waitlisted_minor: i64,
}

/// Eligibility's figures per crisis.
pub async fn eligibility(store: &Store, only: Option<&str>) -> Result<Vec<EligibilityRow>> {
    fetch_only(
        store,
        "SELECT c.crisis_id, c.committed_minor, \
                coalesce(e.entitled_households, 0) AS entitled_households, \
                coalesce(e.entitled_minor, 0) AS entitled_minor, \
                coalesce(e.waitlisted_households, 0) AS waitlisted_households, \
                coalesce(e.waitlisted_minor, 0) AS waitlisted_minor \
         FROM eligibility.crises c \
         LEFT JOIN ( \
             SELECT crisis_id, \
                    count(DISTINCT household_id) FILTER (WHERE status = 'entitled') AS entitled_households, \
                    CAST(coalesce(sum(committed_minor) FILTER (WHERE status = 'entitled'), 0) AS bigint) AS entitled_minor, \
                    count(DISTINCT household_id) FILTER (WHERE status = 'waitlisted') AS waitlisted_households, \
                    CAST(coalesce(sum(amount_minor * tranches) FILTER (WHERE status = 'waitlisted'), 0) AS bigint) AS waitlisted_minor \
             FROM eligibility.entitlements \
             WHERE CAST($1 AS text) IS NULL OR crisis_id = $1 \
             GROUP BY crisis_id \
         ) e USING (crisis_id) \
         WHERE CAST($1 AS text) IS NULL OR c.crisis_id = $1",
        only,
    )
    .await
}

/// Disbursement's figures of one crisis.
#[derive(Debug, Clone, Default, FromRow)]
pub struct DisbursementRow {
    /// Crisis id.
    pub crisis_id: String,
    /// Reserved for live instructions.
    pub reserved_minor: i64,
    /// Households with at least one instruction.
    pub instructed_households: i64,
    /// Instructions issued.
    pub instructed: i64,
    /// Their amount.
    pub instructed_minor: i64,
    /// Households with an instruction in flight.
    pub in_flight_households: i64,
    /// Instructions in flight.
    pub in_flight: i64,
    /// Their amount.
    pub in_flight_minor: i64,
    /// Households paid at least once.
    pub paid_households: i64,
    /// Instructions paid.
    pub paid: i64,
    /// Their amount.
    pub paid_minor: i64,
    /// Households with a failed or reversed instruction.
    pub failed_households: i64,
    /// Instructions failed or reversed.
    pub failed: i64,
    /// Their amount.
    pub failed_minor: i64,
    /// Open field-verification tasks.
    pub field_tasks_open: i64,
    /// Payments held on an unknown outcome (money reserved until the
    /// provider answers).
    pub held: i64,
    /// Their amount.
    pub held_minor: i64,
    /// Payment incidents not yet resolved.
    pub incidents_open: i64,
    /// Scheduler passes over the crisis that failed.
    pub pass_failures: i32,
    /// The last one's error, until a pass succeeds again.
    pub last_pass_error: Option<String>,
}

/// Disbursement's figures per crisis.
pub async fn disbursement(store: &Store, only: Option<&str>) -> Result<Vec<DisbursementRow>> {
    fetch_only(
        store,
        "WITH i AS ( \
             SELECT crisis_id, \
                    count(DISTINCT household_id) AS instructed_households, \
                    count(*) AS instructed, \
                    CAST(coalesce(sum(amount_minor), 0) AS bigint) AS instructed_minor, \
                    count(DISTINCT household_id) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS in_flight_households, \
                    count(*) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS in_flight, \
                    CAST(coalesce(sum(amount_minor) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')), 0) AS bigint) AS in_flight_minor, \
                    count(DISTINCT household_id) FILTER (WHERE status = 'succeeded') AS paid_households, \
                    count(*) FILTER (WHERE status = 'succeeded') AS paid, \
                    CAST(coalesce(sum(amount_minor) FILTER (WHERE status = 'succeeded'), 0) AS bigint) AS paid_minor, \
                    count(DISTINCT household_id) FILTER (WHERE status IN ('failed', 'reversed')) AS failed_households, \
                    count(*) FILTER (WHERE status IN ('failed', 'reversed')) AS failed, \
                    CAST(coalesce(sum(amount_minor) FILTER (WHERE status IN ('failed', 'reversed')), 0) AS bigint) AS failed_minor, \
                    count(*) FILTER (WHERE status = 'retry_scheduled' AND next_attempt_at IS NULL) AS held, \
                    CAST(coalesce(sum(amount_minor) FILTER (WHERE status = 'retry_scheduled' AND next_attempt_at IS NULL), 0) AS bigint) AS held_minor \
             FROM disbursement.instructions \
             WHERE CAST($1 AS text) IS NULL OR crisis_id = $1 \
             GROUP BY crisis_id \
         ), t AS ( \
             SELECT i.crisis_id, count(*) AS field_tasks_open \
             FROM disbursement.verification_tasks v \
             JOIN disbursement.instructions i USING (instruction_id) \
             WHERE v.resolved_at IS NULL AND (CAST($1 AS text) IS NULL OR i.crisis_id = $1) \
             GROUP BY i.crisis_id \
         ), n AS ( \
             SELECT crisis_id, count(*) AS incidents_open \
             FROM disbursement.incidents \
             WHERE resolved_at IS NULL AND (CAST($1 AS text) IS NULL OR crisis_id = $1) \
             GROUP BY crisis_id \
         ) \
         SELECT c.crisis_id, c.reserved_minor, \
                coalesce(i.instructed_households, 0) AS instructed_households, \
                coalesce(i.instructed, 0) AS instructed, \
                coalesce(i.instructed_minor, 0) AS instructed_minor, \
                coalesce(i.in_flight_households, 0) AS in_flight_households, \
                coalesce(i.in_flight, 0) AS in_flight, \
                coalesce(i.in_flight_minor, 0) AS in_flight_minor, \
                coalesce(i.paid_households, 0) AS paid_households, \
                coalesce(i.paid, 0) AS paid, \
                coalesce(i.paid_minor, 0) AS paid_minor, \
                coalesce(i.failed_households, 0) AS failed_households, \
                coalesce(i.failed, 0) AS failed, \
                coalesce(i.failed_minor, 0) AS failed_minor, \
                coalesce(t.field_tasks_open, 0) AS field_tasks_open, \
                coalesce(i.held, 0) AS held, \
                coalesce(i.held_minor, 0) AS held_minor, \
                coalesce(n.incidents_open, 0) AS incidents_open, \
                c.pass_failures, c.last_pass_error \
         FROM disbursement.crises c \
         LEFT JOIN i USING (crisis_id) \
         LEFT JOIN t USING (crisis_id) \
         LEFT JOIN n USING (crisis_id) \
         WHERE CAST($1 AS text) IS NULL OR c.crisis_id = $1",
        only,
    )
    .await
}

/// The first alert or indicator trigger that named a crisis.
#[derive(Debug, Clone, FromRow)]
pub struct TriggerRow {
    /// Crisis id.
    pub crisis_id: String,
    /// `cap` or `indicator`.
    pub kind: String,
    /// CAP sender or rule id.
    pub source: String,
    /// CAP identifier or area.
    pub reference: String,
    /// When it was sent or fired.
    pub sent_at: DateTime<Utc>,
}

/// The triggering alert of every crisis that has one: the earliest actual
/// CAP alert that caused a command for it, else the earliest indicator
/// trigger. Dry runs (exercises, tests) never name a crisis.
pub async fn triggers(store: &Store) -> Result<Vec<TriggerRow>> {
    const SQL: &str = "SELECT crisis_id, kind, source, reference, sent_at FROM ( \
             SELECT t.*, row_number() OVER (PARTITION BY crisis_id ORDER BY rank, sent_at) AS nth FROM ( \
                 SELECT crisis_id, 'cap' AS kind, sender AS source, identifier AS reference, sent AS sent_at, 0 AS rank \
                 FROM alerts.alerts WHERE crisis_id IS NOT NULL \
                 UNION ALL \
                 SELECT crisis_id, 'indicator', rule_id, area, created_at, 1 \
                 FROM alerts.triggers \
             ) t \
         ) first WHERE nth = 1 ORDER BY crisis_id";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// Live registered households per area code (for the affected count).
pub async fn households_by_area(store: &Store) -> Result<Vec<(String, i64)>> {
    const SQL: &str = "SELECT area_code, count(*) FROM registry.households_v GROUP BY area_code";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// One line of an area aggregate: a governorate (`district` null) or a
/// district, in one currency.
#[derive(Debug, Clone, FromRow)]
pub struct AreaAggregate {
    /// Governorate code.
    pub governorate: String,
    /// District code; null on the governorate's own line.
    pub district: Option<String>,
    /// Currency.
    pub currency: String,
    /// First count (households entitled, or instructions paid).
    pub n1: i64,
    /// First amount.
    pub m1: i64,
    /// Second count (0, or instructions failed).
    pub n2: i64,
    /// Second amount.
    pub m2: i64,
}

/// Entitled households and their commitment by governorate and by district
/// (two groupings, so that a governorate counts each household once).
pub async fn entitled_by_area(store: &Store, only: Option<&str>) -> Result<Vec<AreaAggregate>> {
    const ENTITLED: &str = "FROM eligibility.entitlements \
         WHERE status = 'entitled' AND (CAST($1 AS text) IS NULL OR crisis_id = $1)";
    fetch_only(
        store,
        &format!(
            "SELECT governorate, district, currency, \
                    count(DISTINCT household_id) AS n1, CAST(coalesce(sum(committed_minor), 0) AS bigint) AS m1, \
                    CAST(0 AS bigint) AS n2, CAST(0 AS bigint) AS m2 \
             {ENTITLED} AND district IS NOT NULL GROUP BY governorate, district, currency \
             UNION ALL \
             SELECT governorate, NULL, currency, \
                    count(DISTINCT household_id), CAST(coalesce(sum(committed_minor), 0) AS bigint), \
                    CAST(0 AS bigint), CAST(0 AS bigint) \
             {ENTITLED} GROUP BY governorate, currency"
        ),
        only,
    )
    .await
}

/// Paid and failed instructions by governorate and district of the
/// household as eligibility decided on it.
pub async fn payments_by_area(store: &Store, only: Option<&str>) -> Result<Vec<AreaAggregate>> {
    const FIGURES: &str = "count(*) FILTER (WHERE i.status = 'succeeded') AS n1, \
                CAST(coalesce(sum(i.amount_minor) FILTER (WHERE i.status = 'succeeded'), 0) AS bigint) AS m1, \
                count(*) FILTER (WHERE i.status IN ('failed', 'reversed')) AS n2, \
                CAST(coalesce(sum(i.amount_minor) FILTER (WHERE i.status IN ('failed', 'reversed')), 0) AS bigint) AS m2";
    const FINAL: &str = "FROM disbursement.instructions i \
         JOIN eligibility.entitlements e \
           ON e.crisis_id = i.crisis_id AND e.household_id = i.household_id AND e.kind = i.kind \
         WHERE i.status IN ('succeeded', 'failed', 'reversed') AND (CAST($1 AS text) IS NULL OR i.crisis_id = $1)";
    fetch_only(
        store,
        &format!(
            "SELECT e.governorate, e.district, i.currency, {FIGURES} \
             {FINAL} AND e.district IS NOT NULL GROUP BY e.governorate, e.district, i.currency \
             UNION ALL \
             SELECT e.governorate, NULL, i.currency, {FIGURES} \
             {FINAL} GROUP BY e.governorate, i.currency"
        ),
        only,
    )
    .await
}

/// Instruction counts of one provider.
#[derive(Debug, Clone, FromRow)]
pub struct ProviderCounts {
    /// Provider.
    pub provider: String,
    /// Instructions ever sent.
    pub instructions: i64,
    /// Awaiting a final status.
    pub open_instructions: i64,
    /// Open and past the deadline.
    pub overdue: i64,
}

/// Instruction counts per provider.
pub async fn provider_counts(store: &Store) -> Result<Vec<ProviderCounts>> {
    const SQL: &str = "SELECT provider, count(*) AS instructions, \
                count(*) FILTER (WHERE status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS open_instructions, \
                count(*) FILTER (WHERE overdue AND status IN ('instructed', 'received', 'pending', 'retry_scheduled')) AS overdue \
         FROM disbursement.instructions GROUP BY provider ORDER BY provider";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// Acknowledgement latency of one provider.
#[derive(Debug, Clone, FromRow)]
pub struct ProviderLatency {
    /// Provider.
    pub provider: String,
    /// First attempts whose first status arrived in the window.
    pub acknowledged: i64,
    /// Median seconds.
    pub p50: Option<f64>,
    /// 95th percentile seconds.
    pub p95: Option<f64>,
}

/// Time from an instruction's creation to the first status report of its
/// first attempt, for first reports within the window. Retries are left
/// out: their dispatch time is not recorded, and the first attempt is what
/// tells whether a provider answers promptly. The figure includes the
/// outbox relay, which is what a household waits for too.
pub async fn provider_latency(store: &Store) -> Result<Vec<ProviderLatency>> {
    const FIRST: &str = "WITH first AS ( \
             SELECT s.instruction_id, min(s.at) AS at \
             FROM disbursement.status_log s \
             WHERE s.attempt = 1 AND s.at > {since} \
             GROUP BY s.instruction_id \
             HAVING NOT EXISTS ( \
                 SELECT 1 FROM disbursement.status_log e \
                 WHERE e.instruction_id = s.instruction_id AND e.attempt = 1 AND e.at <= {since}) \
         )";
    if let Store::Postgres(_) = store {
        return fetch_window(
            store,
            &format!(
                "{FIRST} \
                 SELECT i.provider, count(*) AS acknowledged, \
                        percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(extract(epoch FROM f.at - i.created_at), 0)::float8) AS p50, \
                        percentile_cont(0.95) WITHIN GROUP (ORDER BY greatest(extract(epoch FROM f.at - i.created_at), 0)::float8) AS p95 \
                 FROM first f JOIN disbursement.instructions i USING (instruction_id) \
                 GROUP BY i.provider"
            ),
        )
        .await;
    }
    // SQLite: each latency, in order per provider; the percentiles here.
    let latencies: Vec<(String, f64)> = fetch_window(
        store,
        &format!(
            "{FIRST} \
             SELECT i.provider, max((julianday(f.at) - julianday(i.created_at)) * 86400.0, 0.0) AS s \
             FROM first f JOIN disbursement.instructions i USING (instruction_id) \
             ORDER BY i.provider, s"
        ),
    )
    .await?;
    let mut out: Vec<ProviderLatency> = Vec::new();
    for chunk in latencies.chunk_by(|a, b| a.0 == b.0) {
        let sorted: Vec<f64> = chunk.iter().map(|(_, s)| *s).collect();
        out.push(ProviderLatency {
            provider: chunk[0].0.clone(),
            acknowledged: sorted.len() as i64,
            p50: percentile_cont(&sorted, 0.5),
            p95: percentile_cont(&sorted, 0.95),
        });
    }
    Ok(out)
}

/// PostgreSQL's `percentile_cont` of sorted values: linear interpolation
/// between the two values around position `q × (n − 1)`.
fn percentile_cont(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let at = q * last as f64;
    let (below, above) = (at.floor() as usize, at.ceil() as usize);
    let frac = at - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * frac)
}

/// Final status reports of one provider, by status and reason.
#[derive(Debug, Clone, FromRow)]
pub struct ProviderReports {
    /// Provider.
    pub provider: String,
    /// `succeeded` or `rejected`.
    pub status: String,
    /// Provider reason code of a rejection.
    pub reason_code: Option<String>,
    /// Reports.
    pub count: i64,
}

/// Applied final reports in the window (duplicates and late reports the
/// disbursement service ignored are left out).
pub async fn provider_reports(store: &Store) -> Result<Vec<ProviderReports>> {
    fetch_window(
        store,
        "SELECT provider, status, reason_code, count(*) AS count \
         FROM disbursement.status_log \
         WHERE applied AND status IN ('succeeded', 'rejected') AND at > {since} \
         GROUP BY provider, status, reason_code",
    )
    .await
}

/// An audit row as selected: at, kind, principal, revision, from, to, outcome.
type AuditRow = (
    DateTime<Utc>,
    String,
    String,
    i32,
    Option<String>,
    String,
    String,
);

/// The latest audit entries of a crisis, newest first.
pub async fn audit(store: &Store, crisis_id: &str, limit: i64) -> Result<Vec<AuditEntry>> {
    const SQL: &str = "SELECT at, kind, principal, revision, from_state, to_state, outcome \
         FROM control.audit WHERE crisis_id = $1 ORDER BY seq DESC LIMIT $2";
    let rows: Vec<AuditRow> = on_store!(store, pool => sqlx::query_as(SQL)
        .bind(crisis_id)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
    Ok(rows
        .into_iter()
        .map(
            |(at, kind, principal, revision, from_state, to_state, outcome)| AuditEntry {
                at,
                kind,
                principal,
                revision,
                from_state,
                to_state,
                outcome,
            },
        )
        .collect())
}

/// Grievances grouped by the area recorded at filing, kind and whether
/// they are answered, with open ones counted by age at `now`.
#[derive(Debug, Clone, FromRow)]
pub struct GrievanceAggregate {
    /// Area code at filing.
    pub area_code: Option<String>,
    /// Complaint kind.
    pub kind: String,
    /// Whether these are answered.
    pub answered: bool,
    /// How many.
    pub n: i64,
    /// Filed less than a day before `now`.
    pub under_1_day: i64,
    /// Filed one to seven days before `now`.
    pub from_1_to_7_days: i64,
    /// The oldest of them.
    pub oldest: Option<DateTime<Utc>>,
}

/// Referrals counted by governorate, service and status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReferralAggregate {
    /// Governorate of the household when referred.
    pub governorate: String,
    /// Service.
    pub service: String,
    /// The agency that provides it.
    pub provider: String,
    /// Where they stand.
    pub status: String,
    /// How many.
    pub n: i64,
}

/// Every [`ReferralAggregate`].
pub async fn referrals(store: &Store) -> Result<Vec<ReferralAggregate>> {
    const SQL: &str =
        "SELECT governorate, service, min(provider) AS provider, status, count(*) AS n \
                       FROM eligibility.referrals GROUP BY governorate, service, status";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).fetch_all(pool).await)?)
}

/// [`GrievanceAggregate`]s at `now` (`over_7_days` is the rest).
pub async fn grievances(store: &Store, now: DateTime<Utc>) -> Result<Vec<GrievanceAggregate>> {
    const SQL: &str = "SELECT area_code, kind, state = 'resolved' AS answered, count(*) AS n, \
            count(*) FILTER (WHERE created_at > $1) AS under_1_day, \
            count(*) FILTER (WHERE created_at <= $1 AND created_at > $2) AS from_1_to_7_days, \
            min(created_at) AS oldest \
         FROM disbursement.grievances GROUP BY area_code, kind, state = 'resolved'";
    let (day, week) = (
        now - chrono::Duration::days(1),
        now - chrono::Duration::days(7),
    );
    Ok(match store {
        Store::Postgres(pool) => {
            sqlx::query_as(SQL)
                .bind(day)
                .bind(week)
                .fetch_all(pool)
                .await?
        }
        Store::Sqlite(pool) => {
            sqlx::query_as(SQL)
                .bind(timestamp(day))
                .bind(timestamp(week))
                .fetch_all(pool)
                .await?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::percentile_cont;

    #[test]
    fn percentiles_interpolate_as_postgresql_does() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_cont(&sorted, 0.5), Some(2.5));
        assert!((percentile_cont(&sorted, 0.95).unwrap() - 3.85).abs() < 1e-12);
        assert_eq!(percentile_cont(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile_cont(&[], 0.5), None);
    }
}
