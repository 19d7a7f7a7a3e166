//! Eligibility decisions on `sumud.entitlements.v1` (key = household id, so
//! one household's decisions stay in order).

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// CloudEvents type of an eligibility decision (new or changed).
pub const ENTITLEMENT_DECIDED: &str = "org.sumud.entitlement.decided";

/// Vertical (top-up of an existing beneficiary) or horizontal (new enrolment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpansionKind {
    /// Top-up for households already in the regular programme.
    Vertical,
    /// New enrolment of households under the relaxed threshold.
    Horizontal,
}

impl ExpansionKind {
    /// Column and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpansionKind::Vertical => "vertical",
            ExpansionKind::Horizontal => "horizontal",
        }
    }
}

/// Decision states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementStatus {
    /// Covered by the budget; payments will follow.
    Entitled,
    /// Eligible, but the budget did not reach this household.
    Waitlisted,
    /// No longer due (area removed, household removed, crisis closed before payment).
    Cancelled,
}

/// The `data` of a decision: who, what, how much and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitlementDecision {
    /// Deterministic id of (crisis, household, kind).
    pub entitlement_id: String,
    /// The crisis.
    pub crisis_id: String,
    /// Crisis revision this decision was made under.
    pub crisis_revision: i32,
    /// The household (registry id; no personal data).
    pub household_id: String,
    /// Vertical or horizontal.
    pub kind: ExpansionKind,
    /// Decision.
    pub status: EntitlementStatus,
    /// Amount per tranche.
    pub amount_per_tranche: Money,
    /// Number of tranches.
    pub tranches: u32,
    /// Days between tranches.
    pub interval_days: u32,
    /// Why, in plain words (rule and inputs).
    pub reason: String,
    /// Playbook id and version used.
    pub playbook: String,
    /// Registry record version the decision was based on.
    pub registry_version: i64,
}
