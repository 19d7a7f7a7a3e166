//! Registry events: the full household record as the social registry
//! publishes it, and its versioned removal.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// CloudEvents type of a household insert-or-update (full record).
pub const HOUSEHOLD_UPSERTED: &str = "org.sumud.household.upserted";
/// CloudEvents type of a household removal (a versioned tombstone).
pub const HOUSEHOLD_REMOVED: &str = "org.sumud.household.removed";

/// A household as the registry knows it. Everything downstream of the
/// registry service sees this without `personal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Household {
    /// Stable registry identifier; also the Kafka key.
    pub household_id: String,
    /// Monotonic per household: a record only replaces an older one.
    pub version: i64,
    /// The most specific known area: a district (`JO-MN-02`) or a locality
    /// below it (`JO-MN-02-007`).
    pub area_code: String,
    /// Number of members, at least one.
    pub members: i32,
    /// Proxy-means-test welfare score, 0 (poorest) to 100.
    pub welfare_score: f64,
    /// Vulnerability flags used for prioritisation.
    #[serde(default)]
    pub flags: Vec<VulnerabilityFlag>,
    /// Codes of the regular programmes the household is enrolled in.
    #[serde(default)]
    pub programmes: Vec<String>,
    /// Where payments go.
    pub payment: PaymentDestination,
    /// Personal identifiers (name, national id, phone). Kept only in the
    /// registry's own table; never copied into any other event or log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<BTreeMap<String, String>>,
}

/// Vulnerability markers recorded by the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VulnerabilityFlag {
    /// Headed by a woman.
    FemaleHeaded,
    /// A member lives with a disability.
    Disability,
    /// A member is 65 or older.
    Elderly,
    /// A member is under five.
    YoungChildren,
    /// A member has a chronic illness.
    ChronicIllness,
}

impl VulnerabilityFlag {
    /// Every flag, in priority order.
    pub const ALL: [VulnerabilityFlag; 5] = [
        VulnerabilityFlag::Disability,
        VulnerabilityFlag::FemaleHeaded,
        VulnerabilityFlag::Elderly,
        VulnerabilityFlag::YoungChildren,
        VulnerabilityFlag::ChronicIllness,
    ];

    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            VulnerabilityFlag::FemaleHeaded => "female_headed",
            VulnerabilityFlag::Disability => "disability",
            VulnerabilityFlag::Elderly => "elderly",
            VulnerabilityFlag::YoungChildren => "young_children",
            VulnerabilityFlag::ChronicIllness => "chronic_illness",
        }
    }
}

/// How money reaches a household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDestination {
    /// The delivery channel.
    pub channel: Channel,
    /// The payment provider's name, as providers subscribe by it.
    pub provider: String,
    /// An opaque token the provider maps to an account; never an account number.
    pub account_token: String,
}

/// Payment channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Mobile wallet.
    EWallet,
    /// Bank account transfer.
    Bank,
    /// Cash collected at an agent.
    CashPickup,
}

impl Channel {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::EWallet => "e_wallet",
            Channel::Bank => "bank",
            Channel::CashPickup => "cash_pickup",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "e_wallet" => Some(Channel::EWallet),
            "bank" => Some(Channel::Bank),
            "cash_pickup" => Some(Channel::CashPickup),
            _ => None,
        }
    }
}

/// The `data` of a removal: which household, from which version on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdRemoved {
    /// The household removed.
    pub household_id: String,
    /// The version of the removal; older upserts arriving later are ignored.
    pub version: i64,
    /// Why, in the registry's words (e.g. `duplicate`, `emigrated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
