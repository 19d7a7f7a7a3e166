//! Payment events: disbursement instructions to providers on
//! `sumud.payments.instructions.v1` and provider status reports on
//! `sumud.payments.status.v1` (key = instruction id on both).
//!
//! Field names follow G2P Connect's disburse message where it has one
//! (`reference_id`, `payee_fa`, `amount`, `currency_code`,
//! `scheduled_timestamp`, `purpose`, `note`, `status`, `reason_code`); see
//! docs/contracts.md for the mapping. Amounts stay integer minor units.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::household::Channel;

/// CloudEvents type of a disbursement instruction (one attempt).
pub const INSTRUCTION_ISSUED: &str = "org.sumud.payment.instruction_issued";
/// CloudEvents type of a provider's status report.
pub const PAYMENT_STATUS: &str = "org.sumud.payment.status_reported";

/// One attempt at paying one tranche of one entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    /// Deterministic id of (crisis, household, kind, tranche): the
    /// idempotency key and end-to-end id (G2P `reference_id`).
    pub reference_id: String,
    /// Attempt number, from 1; a re-issue after a retryable rejection is the
    /// same instruction with the next attempt.
    pub attempt: u32,
    /// The crisis paying.
    pub crisis_id: String,
    /// Crisis revision the amount was decided under.
    pub crisis_revision: i32,
    /// Pseudonymous beneficiary reference (never a name or national id).
    pub beneficiary_ref: String,
    /// Payee financial address: the provider's account token (G2P `payee_fa`).
    pub payee_fa: String,
    /// Amount in minor units.
    pub amount: i64,
    /// ISO 4217 (G2P `currency_code`).
    pub currency_code: String,
    /// Delivery channel.
    pub channel: Channel,
    /// Provider expected to pay.
    pub provider: String,
    /// Tranche number, from 1.
    pub tranche: u32,
    /// When the payment is due (G2P `scheduled_timestamp`).
    pub scheduled_timestamp: DateTime<Utc>,
    /// Purpose code (G2P `purpose`).
    pub purpose: String,
    /// Free text for the beneficiary's statement (G2P `note`).
    pub note: String,
}

/// Provider status values (G2P `rcvd`, `pdng`, `succ`, `rjct`, plus reversal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Accepted for processing.
    Received,
    /// In progress.
    Pending,
    /// Paid.
    Succeeded,
    /// Not paid; see the reason.
    Rejected,
    /// Paid, then returned.
    Reversed,
}

impl PaymentStatus {
    /// Column and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Received => "received",
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Rejected => "rejected",
            PaymentStatus::Reversed => "reversed",
        }
    }
}

/// Why a provider rejected a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// The provider is temporarily unable to pay (retryable).
    ProviderUnavailable,
    /// The provider timed out (retryable).
    Timeout,
    /// The provider's float is exhausted (retryable).
    InsufficientFunds,
    /// The destination account is closed (permanent).
    AccountClosed,
    /// The beneficiary is deceased (permanent).
    Deceased,
    /// The destination is invalid (permanent).
    InvalidDestination,
}

impl RejectionReason {
    /// Whether re-issuing later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            RejectionReason::ProviderUnavailable
                | RejectionReason::Timeout
                | RejectionReason::InsufficientFunds
        )
    }

    /// Whether the provider cannot tell if the money moved: a timeout may
    /// have paid. Every other code says the payment certainly did not go
    /// through. An unknown outcome is asked again (the same `reference_id`)
    /// only after the status-inquiry window, and its money is never
    /// released on it (docs/contracts.md, "Rejection codes").
    pub fn outcome_unknown(self) -> bool {
        matches!(self, RejectionReason::Timeout)
    }

    /// The codes whose outcome is unknown, as stored in `reason_code`.
    pub const UNKNOWN_OUTCOMES: [&'static str; 1] = ["timeout"];

    /// Column and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionReason::ProviderUnavailable => "provider_unavailable",
            RejectionReason::Timeout => "timeout",
            RejectionReason::InsufficientFunds => "insufficient_funds",
            RejectionReason::AccountClosed => "account_closed",
            RejectionReason::Deceased => "deceased",
            RejectionReason::InvalidDestination => "invalid_destination",
        }
    }
}

/// A provider's report on one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The instruction (G2P `reference_id`).
    pub reference_id: String,
    /// The attempt reported on.
    pub attempt: u32,
    /// Reporting provider.
    pub provider: String,
    /// New status.
    pub status: PaymentStatus,
    /// Why, for rejections (G2P `reason_code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<RejectionReason>,
    /// The provider's own transaction reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<String>,
    /// When the provider observed it.
    pub timestamp: DateTime<Utc>,
    /// The provider's compact JWS (EdDSA, its registered key's `kid`) whose
    /// payload is this report without `signature`: required from a provider
    /// that registered a key (docs/contracts.md, "Signing a status report").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl StatusReport {
    /// The report as its provider signs it: every field but the signature.
    pub fn unsigned(&self) -> StatusReport {
        StatusReport {
            signature: None,
            ..self.clone()
        }
    }
}
