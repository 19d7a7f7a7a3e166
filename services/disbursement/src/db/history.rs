//! The read side an auditor starts from: an instruction (or every
//! instruction of a household in a crisis) with every status report applied
//! or ignored, the incidents it raised and its verification tasks with
//! what the field team found (a household found ineligible gets no later
//! tranche: its task says so) — what
//! `sumud explain` prints and returns as JSON.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sumud_shared::db::Store;
use sumud_shared::{on_store, Result};

/// An instruction as it stands.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InstructionRow {
    /// The reference the provider pays once (`instruction_id`).
    pub instruction_id: String,
    /// Crisis.
    pub crisis_id: String,
    /// Household.
    pub household_id: String,
    /// `vertical` or `horizontal`.
    pub kind: String,
    /// Tranche number, from 1.
    pub tranche: i32,
    /// 0 for the tranche as first instructed, n for its n-th top-up.
    pub part: i32,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Payment channel.
    pub channel: String,
    /// Provider.
    pub provider: String,
    /// Crisis revision it was instructed under.
    pub crisis_revision: i32,
    /// Current attempt, from 1.
    pub attempt: i32,
    /// Current status.
    pub status: String,
    /// Last reason code reported.
    pub reason_code: Option<String>,
    /// The provider's own reference of the payment, once reported.
    pub provider_ref: Option<String>,
    /// When it is due.
    pub scheduled_at: DateTime<Utc>,
    /// When a final status is due by.
    pub deadline_at: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// One status report, applied or not.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StatusEntry {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The report's event id.
    pub event_id: String,
    /// Attempt it reported on.
    pub attempt: i32,
    /// Who reported it.
    pub provider: String,
    /// Reported status.
    pub status: String,
    /// Reported reason code.
    pub reason_code: Option<String>,
    /// Whether it changed the instruction.
    pub applied: bool,
    /// Why it was not applied, or what it did.
    pub note: Option<String>,
}

/// A payment incident the instruction raised.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct IncidentEntry {
    /// Incident id (`sumud incidents resolve`).
    pub incident_id: i64,
    /// `duplicate_payment` or `paid_after_failure`.
    pub kind: String,
    /// Attempt.
    pub attempt: i32,
    /// The provider's reference of the extra payment.
    pub provider_ref: Option<String>,
    /// When recorded.
    pub recorded_at: DateTime<Utc>,
    /// When resolved, by whom and how.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// How.
    pub resolution: Option<String>,
}

/// An instruction with everything that happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionHistory {
    /// The instruction as it stands.
    #[serde(flatten)]
    pub instruction: InstructionRow,
    /// Every status report, oldest first.
    pub statuses: Vec<StatusEntry>,
    /// Incidents it raised.
    pub incidents: Vec<IncidentEntry>,
    /// Its verification tasks for a field team, oldest first (one per
    /// failed attempt; a payment re-issued to corrected details that fails
    /// again raises another).
    pub tasks: Vec<TaskEntry>,
}

/// A field-verification task with its lifecycle.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TaskEntry {
    /// Task id (`sumud tasks`).
    pub task_id: i64,
    /// The attempt whose failure raised it.
    pub attempt: i32,
    /// The failure's reason code.
    pub reason_code: String,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
    /// `open`, `assigned` or `resolved`.
    pub state: String,
    /// Field worker or team on it.
    pub assigned_to: Option<String>,
    /// When it was assigned.
    pub assigned_at: Option<DateTime<Utc>>,
    /// `details_corrected`, `ineligible` or `unreachable`, once resolved.
    pub outcome: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The resolver's note.
    pub note: Option<String>,
    /// For `details_corrected`: the attempt re-issued to the corrected
    /// destination (its channel and provider below; the token stays in
    /// the database).
    pub reissued_attempt: Option<i32>,
    /// Corrected channel.
    pub corrected_channel: Option<String>,
    /// Corrected provider.
    pub corrected_provider: Option<String>,
}

const INSTRUCTION: &str = "SELECT instruction_id, crisis_id, household_id, kind, tranche, part, \
     amount_minor, currency, channel, provider, crisis_revision, attempt, status, reason_code, \
     provider_ref, scheduled_at, deadline_at, created_at FROM disbursement.instructions";

/// The instruction `reference`, if there is one.
pub async fn instruction(store: &Store, reference: &str) -> Result<Option<InstructionRow>> {
    let sql = format!("{INSTRUCTION} WHERE instruction_id = $1");
    Ok(on_store!(store, pool => sqlx::query_as(&sql).bind(reference).fetch_optional(pool).await?))
}

/// Every instruction of a household in a crisis, by tranche.
pub async fn instructions_of(
    store: &Store,
    crisis_id: &str,
    household_id: &str,
) -> Result<Vec<InstructionRow>> {
    let sql = format!(
        "{INSTRUCTION} WHERE crisis_id = $1 AND household_id = $2 ORDER BY kind, tranche, part"
    );
    Ok(on_store!(store, pool => sqlx::query_as(&sql)
        .bind(crisis_id)
        .bind(household_id)
        .fetch_all(pool)
        .await?))
}

/// The history of one instruction.
pub async fn history(store: &Store, instruction: InstructionRow) -> Result<InstructionHistory> {
    const STATUSES: &str = "SELECT at, event_id, attempt, provider, status, reason_code, applied, \
         note FROM disbursement.status_log WHERE instruction_id = $1 ORDER BY at, event_id";
    const INCIDENTS: &str = "SELECT incident_id, kind, attempt, provider_ref, recorded_at, \
         resolved_at, resolved_by, resolution FROM disbursement.incidents \
         WHERE instruction_id = $1 ORDER BY incident_id";
    const TASKS: &str = "SELECT task_id, attempt, reason_code, created_at, state, assigned_to, \
         assigned_at, outcome, resolved_by, resolved_at, note, reissued_attempt, corrected_channel, \
         corrected_provider FROM disbursement.verification_tasks WHERE instruction_id = $1 \
         ORDER BY task_id";
    let id = instruction.instruction_id.as_str();
    let statuses =
        on_store!(store, pool => sqlx::query_as(STATUSES).bind(id).fetch_all(pool).await?);
    let incidents =
        on_store!(store, pool => sqlx::query_as(INCIDENTS).bind(id).fetch_all(pool).await?);
    let tasks = on_store!(store, pool => sqlx::query_as(TASKS).bind(id).fetch_all(pool).await?);
    Ok(InstructionHistory {
        instruction,
        statuses,
        incidents,
        tasks,
    })
}
