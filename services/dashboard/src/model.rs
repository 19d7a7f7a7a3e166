//! The dashboard's JSON vocabulary: what the API returns and the event
//! stream pushes. Each type has a twin in `schemas/dashboard.openapi.json`
//! (`components/schemas`); a test validates real responses against it, so a
//! field added here without the document fails the build's tests.
//!
//! Amounts are integers in minor units next to their ISO 4217 currency, as
//! everywhere in Sumud; the page formats them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything the page shows, computed at once so that its numbers agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
    /// Every crisis, newest first.
    pub crises: Vec<CrisisSummary>,
    /// Caseload and payments by governorate and district, all crises.
    pub areas: Vec<AreaRow>,
    /// Grievances by governorate: the open ones by kind and by age, and
    /// how many were answered.
    pub grievances: Vec<GrievanceArea>,
    /// Social-service referrals by governorate and service, by where they
    /// stand.
    pub referrals: Vec<ReferralArea>,
    /// Payment provider health.
    pub providers: Vec<ProviderHealth>,
    /// Dead-letter counts.
    pub dead_letters: DeadLetters,
    /// Consumer lag of the services' consumer groups.
    pub consumer_lag: ConsumerLag,
    /// Which services' tables exist yet: a section whose owner has never
    /// started is empty, and the page says why instead of failing.
    pub sources: Sources,
}

/// Whether each service's schema exists in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Sources {
    /// `control` (crises, audit).
    pub control: bool,
    /// `registry` (households, for the affected count).
    pub registry: bool,
    /// `eligibility` (entitlements).
    pub eligibility: bool,
    /// `disbursement` (instructions, provider status, field tasks).
    pub disbursement: bool,
    /// `alerts` (the alert that triggered a crisis); optional in a deployment.
    pub alerts: bool,
}

/// One crisis as monitoring staff see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrisisSummary {
    /// Crisis id.
    pub crisis_id: String,
    /// Title from the current definition.
    pub title: String,
    /// Hazard (`flood`, `drought`, …).
    pub hazard: String,
    /// Severity (`moderate`, `severe`, `extreme`).
    pub severity: String,
    /// Lifecycle state: `proposed`, `active` or `closed`.
    pub state: String,
    /// Definition revision (1 at declaration, +1 per amendment).
    pub revision: i32,
    /// Whether a declaration or amendment awaits four-eyes approval.
    pub pending_approval: bool,
    /// Area codes of the current definition.
    pub areas: Vec<String>,
    /// Budget currency.
    pub currency: String,
    /// Budget cap, minor units.
    pub budget_minor: i64,
    /// What eligibility has committed against the budget (null until
    /// eligibility has seen the crisis).
    pub committed_minor: Option<i64>,
    /// What disbursement has reserved for live instructions (null until
    /// disbursement has seen the crisis).
    pub reserved_minor: Option<i64>,
    /// Who declared it (operator principal or `early-warning`).
    pub declared_by: String,
    /// When control recorded the declaration.
    pub declared_at: DateTime<Utc>,
    /// Last change of the crisis record.
    pub updated_at: DateTime<Utc>,
    /// The early-warning alert that caused it, if one did.
    pub alert: Option<TriggeringAlert>,
    /// Households and money at each step.
    pub funnel: Funnel,
    /// Unresolved field-verification tasks (a payment failed for good or
    /// ran out of retries; docs/field-teams.md).
    pub field_tasks_open: i64,
    /// What needs a payment-operations lead's attention.
    pub attention: Attention,
}

/// A crisis's payments that need someone: held on an unknown outcome,
/// incidents, and scheduler passes that fail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    /// Payments held on an unknown outcome (a timeout with nothing more to
    /// send): their money stays reserved until the provider answers.
    pub held: i64,
    /// Their amount, minor units.
    pub held_minor: i64,
    /// Unresolved payment incidents (`duplicate_payment`,
    /// `paid_after_failure`).
    pub incidents_open: i64,
    /// Scheduler passes over the crisis that failed (it is tried again
    /// after a pause while other crises go on).
    pub pass_failures: i64,
    /// The last failed pass's error, until a pass succeeds again.
    pub last_pass_error: Option<String>,
}

/// The alert (or indicator trigger) behind a crisis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggeringAlert {
    /// `cap` for a CAP alert, `indicator` for an indicator rule.
    pub kind: String,
    /// CAP sender, or the indicator rule id.
    pub source: String,
    /// CAP identifier, or the area of the indicator trigger.
    pub reference: String,
    /// When the alert was sent (CAP `sent`) or the trigger fired.
    pub sent_at: DateTime<Utc>,
    /// Seconds from `sent_at` to `generated_at` of the response.
    pub seconds_since: i64,
}

/// One step of the funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stage {
    /// Distinct households at this step.
    pub households: i64,
    /// Payment instructions at this step (null before instructions exist).
    pub instructions: Option<i64>,
    /// Money at this step, minor units (null for `affected`).
    pub amount_minor: Option<i64>,
}

/// affected → eligible → instructed → paid → failed, with the households
/// waiting on each side of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Funnel {
    /// Registered households living in the crisis areas.
    pub affected: Stage,
    /// Households entitled; the amount is what they are entitled to over
    /// every tranche (what eligibility committed).
    pub eligible: Stage,
    /// Households eligible but waiting for budget; the amount is what they
    /// would need.
    pub waitlisted: Stage,
    /// Every instruction issued (all tranches and top-ups).
    pub instructed: Stage,
    /// Instructions not final yet (instructed, received, pending, retrying).
    pub in_flight: Stage,
    /// Instructions the provider paid.
    pub paid: Stage,
    /// Instructions failed for good or reversed after payment.
    pub failed: Stage,
}

/// Caseload and payments of one governorate or district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AreaRow {
    /// Area code (`JO-MN`, `JO-MN-01`).
    pub code: String,
    /// `governorate` or `district`.
    pub level: String,
    /// The governorate of a district; null for a governorate.
    pub parent: Option<String>,
    /// English name.
    pub name_en: String,
    /// Arabic name.
    pub name_ar: String,
    /// Currency of the amounts on this row (an area paid in two currencies
    /// has two rows).
    pub currency: String,
    /// Households entitled.
    pub entitled_households: i64,
    /// Money committed to them, minor units.
    pub entitled_minor: i64,
    /// Instructions paid.
    pub paid_instructions: i64,
    /// Money paid, minor units.
    pub paid_minor: i64,
    /// Instructions failed or reversed.
    pub failed_instructions: i64,
    /// Money failed or reversed, minor units.
    pub failed_minor: i64,
}

/// Referrals of one governorate to one service: what a social worker
/// watches so that no referred household waits unanswered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralArea {
    /// Governorate code.
    pub code: String,
    /// English name.
    pub name_en: String,
    /// Arabic name.
    pub name_ar: String,
    /// The service referred to.
    pub service: String,
    /// The agency that provides it.
    pub provider: String,
    /// Sent, not yet answered.
    pub referred: i64,
    /// Taken by the provider.
    pub accepted: i64,
    /// Served.
    pub served: i64,
    /// Declined by the provider.
    pub declined: i64,
}

/// Grievances of one governorate (docs/field-teams.md, "Grievances"):
/// what a programme lead watches so that no household's complaint waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrievanceArea {
    /// Governorate code, or the code as recorded when the catalog does not
    /// place it (`unknown` when the household had no area).
    pub code: String,
    /// English name.
    pub name_en: String,
    /// Arabic name.
    pub name_ar: String,
    /// Not yet answered (open or assigned).
    pub open: i64,
    /// Open ones saying the household was not included.
    pub not_included: i64,
    /// Open ones saying the amount was wrong.
    pub wrong_amount: i64,
    /// Open ones saying a payment did not arrive.
    pub not_received: i64,
    /// Open ones filed less than a day ago.
    pub under_1_day: i64,
    /// Open ones filed one to seven days ago.
    pub from_1_to_7_days: i64,
    /// Open ones filed more than seven days ago.
    pub over_7_days: i64,
    /// When the oldest open one was filed.
    pub oldest_open_at: Option<DateTime<Utc>>,
    /// Answered (explained, upheld or unreachable).
    pub answered: i64,
}

/// How one payment provider is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderHealth {
    /// Provider name as instructed.
    pub provider: String,
    /// Instructions ever sent to it.
    pub instructions: i64,
    /// Instructions awaiting a final status.
    pub open_instructions: i64,
    /// Open instructions past their deadline.
    pub overdue: i64,
    /// Window of the figures below, seconds back from now.
    pub window_seconds: i64,
    /// First attempts acknowledged (any status) in the window.
    pub acknowledged: i64,
    /// Median time from instruction to its first status report, seconds.
    pub ack_latency_p50_seconds: Option<f64>,
    /// 95th percentile of the same, seconds.
    pub ack_latency_p95_seconds: Option<f64>,
    /// Final reports (succeeded or rejected) in the window.
    pub final_reports: i64,
    /// Rejections among them.
    pub rejected: i64,
    /// `rejected / final_reports`, null when there were none.
    pub rejection_rate: Option<f64>,
    /// Rejections by provider reason code, most frequent first.
    pub rejections_by_reason: Vec<ReasonCount>,
}

/// A reason code and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// Reason code.
    pub reason: String,
    /// Occurrences.
    pub count: i64,
}

/// Dead letters read from the dead-letter topic since its beginning.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeadLetters {
    /// Whether the reader is attached to the topic.
    pub available: bool,
    /// Why not, when it is not.
    pub note: Option<String>,
    /// The topic read.
    pub topic: String,
    /// Every dead letter read.
    pub total: i64,
    /// Counts by service and reason, most frequent first.
    pub by_reason: Vec<DeadLetterCount>,
}

/// Dead letters of one reason from one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterCount {
    /// The service that set the messages aside.
    pub service: String,
    /// Reason code (`schema_invalid`, …; `unreadable` for a dead letter
    /// that could not itself be decoded).
    pub reason: String,
    /// How many.
    pub count: i64,
    /// When the last one was recorded.
    pub last_at: Option<DateTime<Utc>>,
}

/// Consumer lag per service and topic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConsumerLag {
    /// Whether lag could be read from Kafka.
    pub available: bool,
    /// Why not, when it could not.
    pub note: Option<String>,
    /// When the figures were read.
    pub read_at: Option<DateTime<Utc>>,
    /// One row per consumer group and topic it has committed offsets on.
    pub groups: Vec<GroupLag>,
}

/// The lag of one consumer group on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLag {
    /// Service name.
    pub service: String,
    /// Consumer group id.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Messages behind, summed over partitions (high watermark minus
    /// committed offset).
    pub lag: i64,
    /// Partitions with a committed offset.
    pub partitions: i64,
    /// Seconds the group's committed offsets on this topic have stood
    /// still while messages wait, once past the stall bound
    /// (`SUMUD_CONSUMER_STALL_SECS`); `None` while it moves or is caught
    /// up. The same judgement as the service's own `/readyz`, made from
    /// outside, so it shows also when the service is down.
    pub stalled_s: Option<u64>,
}

/// One crisis with its area table and recent audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrisisDetail {
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
    /// The summary as in the crisis list.
    pub crisis: CrisisSummary,
    /// Caseload and payments of this crisis by area.
    pub areas: Vec<AreaRow>,
    /// The latest audit entries, newest first.
    pub audit: Vec<AuditEntry>,
}

/// One transition of the crisis lifecycle, from control's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Command kind.
    pub kind: String,
    /// Who.
    pub principal: String,
    /// Revision after the command.
    pub revision: i32,
    /// State before (null at declaration).
    pub from_state: Option<String>,
    /// State after.
    pub to_state: String,
    /// Outcome recorded by control.
    pub outcome: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}
