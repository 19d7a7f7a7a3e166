//! The crisis lifecycle, as published by the control service on
//! `sumud.crisis.v1` (key = crisis id). Every event carries the full current
//! definition, so a consumer never needs an earlier event to act.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::playbook::OverlapRule;

/// A crisis was proposed and awaits four-eyes approval.
pub const CRISIS_PROPOSED: &str = "org.sumud.crisis.proposed";
/// A crisis is active: eligibility expands, payments flow.
pub const CRISIS_ACTIVATED: &str = "org.sumud.crisis.activated";
/// An active crisis changed (new revision in force).
pub const CRISIS_AMENDED: &str = "org.sumud.crisis.amended";
/// An amendment of an active crisis awaits approval; the previous revision stays in force.
pub const CRISIS_AMENDMENT_PROPOSED: &str = "org.sumud.crisis.amendment_proposed";
/// A crisis was closed: no further tranches.
pub const CRISIS_CLOSED: &str = "org.sumud.crisis.closed";

/// Every crisis lifecycle event type.
pub const CRISIS_EVENTS: [&str; 5] = [
    CRISIS_PROPOSED,
    CRISIS_ACTIVATED,
    CRISIS_AMENDED,
    CRISIS_AMENDMENT_PROPOSED,
    CRISIS_CLOSED,
];

/// Kinds of shock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hazard {
    /// Riverine or flash flood.
    Flood,
    /// Drought.
    Drought,
    /// Heatwave.
    Heatwave,
    /// Cold wave / snow storm.
    ColdWave,
    /// Earthquake.
    Earthquake,
    /// Epidemic.
    Epidemic,
    /// Food or fuel price shock.
    PriceShock,
    /// Population displacement.
    Displacement,
    /// Anything else.
    Other,
}

/// Severity scale, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Minor.
    Minor,
    /// Moderate.
    Moderate,
    /// Severe.
    Severe,
    /// Extreme.
    Extreme,
}

/// Per-crisis adjustments of a playbook, all optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseOverrides {
    /// Per-tranche flat amount of the vertical top-up, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical_flat_minor: Option<i64>,
    /// Per-member amount of the vertical top-up, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical_per_member_minor: Option<i64>,
    /// Per-tranche flat amount of horizontal enrolment, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_flat_minor: Option<i64>,
    /// Per-member amount of horizontal enrolment, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_per_member_minor: Option<i64>,
    /// Relaxed welfare-score threshold for horizontal enrolment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_welfare_score: Option<f64>,
    /// Number of tranches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tranches: Option<u32>,
    /// Days between tranches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_days: Option<u32>,
    /// What this crisis does for a household already assisted in an
    /// overlapping period (the playbook's rule otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapRule>,
    /// Per-household cap over the period on all overlapping assistance
    /// together, minor units (the playbook's otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_cap_minor: Option<i64>,
}

/// Which playbook answers the crisis, and how it is adjusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Playbook id from the playbook file.
    pub playbook: String,
    /// Adjustments for this crisis.
    #[serde(default)]
    pub overrides: ResponseOverrides,
}

/// What an operator declares (and amends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrisisDefinition {
    /// Human title.
    pub title: String,
    /// Kind of shock.
    pub hazard: Hazard,
    /// How severe.
    pub severity: Severity,
    /// Affected area codes (governorates, districts or localities).
    pub areas: Vec<String>,
    /// The response.
    pub response: Response,
    /// Budget cap for all entitlements of the crisis.
    pub budget: Money,
    /// First day of the response.
    pub starts_on: NaiveDate,
    /// Last day of the response.
    pub ends_on: NaiveDate,
}

/// Lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrisisState {
    /// Awaiting approval.
    Proposed,
    /// In force.
    Active,
    /// Over.
    Closed,
}

impl CrisisState {
    /// The column and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CrisisState::Proposed => "proposed",
            CrisisState::Active => "active",
            CrisisState::Closed => "closed",
        }
    }

    /// Parses the column name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "proposed" => Some(CrisisState::Proposed),
            "active" => Some(CrisisState::Active),
            "closed" => Some(CrisisState::Closed),
            _ => None,
        }
    }
}

/// A proposal awaiting approval, as an approval must name it: an approval
/// binds to exactly the definition its signer reviewed, never to whatever
/// happens to be pending when it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The revision the proposal becomes once approved (1 for a declaration).
    pub revision: i32,
    /// [`definition_digest`] of the proposed definition.
    pub digest: String,
    /// Who proposed it.
    pub proposed_by: String,
    /// Who has approved it so far.
    #[serde(default)]
    pub approvals: Vec<String>,
}

/// `sha256:` and the lowercase hex SHA-256 of the definition's RFC 8785
/// (JCS) canonical JSON: what an approver signs. Any JCS library over the
/// `pending` object of a crisis event gives the same bytes, so a client
/// outside Sumud can check the digest it is asked to approve.
pub fn definition_digest(def: &CrisisDefinition) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_jcs::to_vec(def).expect("a crisis definition serialises");
    format!("sha256:{:x}", Sha256::digest(&canonical))
}

/// The `data` of every crisis lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrisisEvent {
    /// Operator-chosen crisis id.
    pub crisis_id: String,
    /// State after this transition.
    pub state: CrisisState,
    /// Revision in force (1 = the declaration; each applied amendment adds one).
    pub revision: i32,
    /// The definition in force at `revision`.
    pub definition: CrisisDefinition,
    /// A pending amendment awaiting approval, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<CrisisDefinition>,
    /// What an approval of `pending` must name: its revision and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Proposal>,
    /// A proposal this transition set aside unapproved (an amendment that
    /// applied directly, or a newer proposal, replaced it): approvals of it
    /// are refused from now on as `stale_approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded: Option<Proposal>,
    /// The command that caused this transition.
    pub command_id: String,
    /// The principal who signed that command.
    pub signed_by: String,
    /// What triggered the crisis, when not an operator alone (alert id, rule version…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<serde_json::Value>,
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    /// The expected digests were computed outside Rust (Python's hashlib
    /// over canonical JSON written out by hand: sorted keys, no spaces,
    /// non-ASCII as UTF-8, 40.0 as `40`, as RFC 8785 requires).
    #[test]
    fn the_digest_is_sha256_of_the_rfc8785_canonical_definition() {
        let def: CrisisDefinition = serde_json::from_str(
            r#"{"title": "Sayl سيل", "hazard": "flood", "severity": "severe", "areas": ["JO-MN"],
                "response": {"playbook": "p", "overrides": {"max_welfare_score": 40.0}},
                "budget": {"minor": 5, "currency": "JOD"},
                "starts_on": "2026-12-01", "ends_on": "2027-01-31"}"#,
        )
        .unwrap();
        assert_eq!(
            definition_digest(&def),
            "sha256:65b70368d3065deca077aef0243ed5216f9b0ea4f20b4aadf88530e0d6c998ac"
        );
    }

    #[test]
    fn the_contract_example_names_the_digest_of_its_pending_definition() {
        let example: serde_json::Value = serde_json::from_str(include_str!(
            "../../../schemas/examples/crisis.event/valid/proposed-with-trigger.json"
        ))
        .unwrap();
        let pending: CrisisDefinition =
            serde_json::from_value(example["data"]["pending"].clone()).unwrap();
        assert_eq!(
            example["data"]["proposal"]["digest"],
            definition_digest(&pending).as_str()
        );
    }
}
