//! Partner agencies' assistance on `sumud.assistance.v1` (key = the
//! household's match key): a UN agency, an NGO or another ministry records
//! the assistance it gave, corrected or reversed, so that a crisis response
//! weighs it under the overlap rules and never pays the same need twice.
//!
//! Each record is a compact JWS (Ed25519), `kid` = a partner key
//! registered with `sumud partners keys add`, exactly as operators sign
//! control commands; the agency is the key's, never a name in the message.
//! The household is named only by its match key
//! ([`crate::match_key`]): no national id or name travels.
//!
//! Sumud publishes its own assistance for the agencies on
//! `sumud.assistance.shared.v1`, which eligibility alone may write
//! ([`SUMUD_ASSISTANCE`], [`SumudAssistance`]): every entitled decision, as
//! given, corrected or reversed, under the household's match key, so that
//! every agency sees the same picture.
//!
//! ```json
//! {"jti": "<record id of this message>", "iat": 1764400000,
//!  "record_id": "WFP-JO-2026-0042", "action": "given",
//!  "match_key": "zKT-Vy1CpauC8SX2g8ZxGrp7x1M2-0R7Tj5XQQm1Ino",
//!  "amount": {"minor": 150000, "currency": "JOD"},
//!  "period_from": "2026-12-01", "period_to": "2027-02-28",
//!  "programme": "WFP food voucher"}
//! ```

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// CloudEvents type of a partner's signed assistance record.
pub const PARTNER_ASSISTANCE: &str = "org.sumud.assistance.partner_recorded";

/// CloudEvents type of Sumud's own assistance, published by eligibility
/// for the partner agencies.
pub const SUMUD_ASSISTANCE: &str = "org.sumud.assistance.sumud_recorded";

/// Sumud's record of one crisis decision, as partners read it: the same
/// vocabulary as theirs, unsigned (written by eligibility alone, through
/// its outbox, on a topic no one else may write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumudAssistance {
    /// An opaque id of the record (never the household id); a correction
    /// or reversal names the same id, and a decision given again after a
    /// reversal is a new record.
    pub record_id: String,
    /// Given (first entitled), corrected (its amount changed), reversed
    /// (cancelled or no longer entitled).
    pub action: AssistanceAction,
    /// The household's match key; also the Kafka key.
    pub match_key: String,
    /// The crisis that decided it.
    pub crisis_id: String,
    /// Total over the period (given and corrected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// First day it covers: the crisis's first day.
    pub period_from: NaiveDate,
    /// Last day it covers, included: the crisis's last day.
    pub period_to: NaiveDate,
    /// The crisis's title and playbook, in words.
    pub programme: String,
}

/// The event's `data`: the signed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAssistance {
    /// Compact JWS over [`AssistanceClaims`].
    pub jws: String,
}

/// What a partner record does to the agency's record `record_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssistanceAction {
    /// New assistance given.
    Given,
    /// The agency's record, corrected (amount, period or programme).
    Corrected,
    /// The assistance was taken back or never reached the household.
    Reversed,
}

/// The signed claims of a partner record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistanceClaims {
    /// Id of this message, judged once.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// The agency's own id of the assistance (1 to 128 characters).
    pub record_id: String,
    /// Given, corrected or reversed.
    pub action: AssistanceAction,
    /// The household's match key; also the Kafka key.
    pub match_key: String,
    /// Amount over the period (given and corrected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// First day it covers (given and corrected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_from: Option<NaiveDate>,
    /// Last day it covers, included (given and corrected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_to: Option<NaiveDate>,
    /// The agency's programme, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programme: Option<String>,
}
