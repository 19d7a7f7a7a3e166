//! Field-verification tasks (key = the task id, in decimal), in both
//! directions, each on a topic of its own so that no field app can pass
//! for disbursement:
//!
//! - disbursement, which owns the tasks, publishes every change of one
//!   (`task.opened`, `task.assigned`, `task.resolved`) through its outbox
//!   on `sumud.tasks.v1`, so a field-team app can follow its work list as
//!   events;
//! - the field-team app closes the loop on `sumud.tasks.commands.v1` with
//!   signed commands
//!   (`task.command`: `task.assign`, `task.resolve`, and `grievance.file`
//!   for a complaint met in the field): a compact JWS, Ed25519, `kid` = a
//!   field key registered with `sumud tasks keys add`, exactly as operators
//!   sign control commands. Disbursement judges each once.
//!
//! ```json
//! {"jti": "<command id>", "iat": 1764400000, "cmd": "task.resolve",
//!  "task_id": 17, "outcome": "unreachable", "note": "house empty"}
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// CloudEvents type of a task raised for a failed payment.
pub const TASK_OPENED: &str = "org.sumud.task.opened";
/// CloudEvents type of a task (re-)assigned to a field worker or team.
pub const TASK_ASSIGNED: &str = "org.sumud.task.assigned";
/// CloudEvents type of a task resolved with an outcome (final).
pub const TASK_RESOLVED: &str = "org.sumud.task.resolved";
/// CloudEvents type of a field team's signed command.
pub const TASK_COMMAND: &str = "org.sumud.task.command";

/// The task events disbursement publishes.
pub const TASK_EVENTS: [&str; 3] = [TASK_OPENED, TASK_ASSIGNED, TASK_RESOLVED];

/// A task as it stands after the change an event announces: what a field
/// visit needs, nothing personal (the household is named by its registry
/// id; the corrected payment token is not repeated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Task id; the Kafka key, in decimal.
    pub task_id: i64,
    /// Crisis.
    pub crisis_id: String,
    /// Household (registry id).
    pub household_id: String,
    /// The payment reference that failed.
    pub instruction_id: String,
    /// The attempt whose failure raised the task.
    pub attempt: i32,
    /// Why it failed (a rejection code).
    pub reason_code: String,
    /// `open`, `assigned` or `resolved`.
    pub state: String,
    /// Field worker or team on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    /// `details_corrected`, `ineligible` or `unreachable`, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Who resolved it (a field key's principal, or `--by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// For `details_corrected`: the attempt re-issued to the corrected
    /// destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued_attempt: Option<i32>,
    /// When the change was made.
    pub changed_at: DateTime<Utc>,
}

/// The `data` of a field team's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTaskCommand {
    /// Compact JWS serialization: `header.payload.signature`.
    pub jws: String,
}

/// What a field team may do to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskCommandKind {
    /// Assign (or re-assign) the task to `assign_to`.
    #[serde(rename = "task.assign")]
    Assign,
    /// Resolve the task with `outcome`.
    #[serde(rename = "task.resolve")]
    Resolve,
    /// File a household's grievance met in the field (`grievance`).
    #[serde(rename = "grievance.file")]
    FileGrievance,
}

impl TaskCommandKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskCommandKind::Assign => "task.assign",
            TaskCommandKind::Resolve => "task.resolve",
            TaskCommandKind::FileGrievance => "grievance.file",
        }
    }
}

/// A corrected payment destination, as the field worker took it down:
/// the provider's token, never an account number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectedDestination {
    /// `e_wallet`, `bank` or `cash_pickup`.
    pub channel: String,
    /// Registered provider id.
    pub provider: String,
    /// The provider's token (`tok_…`).
    pub account_token: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A grievance a field worker took down (`grievance.file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldGrievance {
    /// Crisis.
    pub crisis_id: String,
    /// Household (registry id).
    pub household_id: String,
    /// `not_included`, `wrong_amount` or `not_received`.
    pub kind: String,
    /// The payment the household names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_id: Option<String>,
}

/// The claims inside a task command's JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClaims {
    /// Command id; the same id again is a replay.
    pub jti: String,
    /// Issued-at, seconds since the epoch; old commands are expired.
    pub iat: i64,
    /// What to do.
    pub cmd: TaskCommandKind,
    /// The task (`task.*`); the Kafka key must be this id in decimal.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub task_id: i64,
    /// For `grievance.file`: the complaint; the Kafka key must be its
    /// household id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grievance: Option<FieldGrievance>,
    /// For `task.assign`: the field worker or team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_to: Option<String>,
    /// For `task.resolve`: `details_corrected`, `ineligible` or
    /// `unreachable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// For `details_corrected`: where to pay instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<CorrectedDestination>,
    /// What the visit found (no personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
