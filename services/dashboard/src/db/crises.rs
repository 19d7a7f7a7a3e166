//! Each crisis: control's record with its definition unpacked, eligibility's
//! and disbursement's figures for it, its audit trail, and the alerts'
//! triggers that propose crises.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sumud_shared::db::Store;
use sumud_shared::on_store;

use super::fetch_only;
use crate::error::Result;
use crate::model::AuditEntry;

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
