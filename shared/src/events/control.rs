//! Signed operator commands on `sumud.control.v1` (key = crisis id).
//!
//! The event's `data` carries one compact JWS (RFC 7515, `alg: EdDSA` per
//! RFC 8037, `kid` = operator key id). Its payload is a JSON claims set, so any
//! standard JOSE/JWT library can produce a command:
//!
//! ```json
//! {"jti": "<command id>", "iat": 1764400000, "cmd": "crisis.declare",
//!  "crisis_id": "FL-2026-MN", "body": { ...CrisisDefinition... }}
//! ```

use serde::{Deserialize, Serialize};

use chrono::NaiveDate;

use crate::events::crisis::{CrisisDefinition, Severity};

/// CloudEvents type of a signed command.
pub const CONTROL_COMMAND: &str = "org.sumud.control.command";

/// The `data` of a control event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCommand {
    /// Compact JWS serialization: `header.payload.signature`.
    pub jws: String,
}

/// The claims inside the JWS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandClaims {
    /// Command id; a second command with the same id is a replay.
    pub jti: String,
    /// Issued-at, seconds since the epoch; old commands are expired.
    pub iat: i64,
    /// What to do.
    pub cmd: CommandKind,
    /// The crisis it concerns (empty for `operator.*` commands, which
    /// concern [`OPERATORS_SUBJECT`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub crisis_id: String,
    /// The definition, for `crisis.declare` and `crisis.amend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<CrisisDefinition>,
    /// Free-text justification recorded in the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What triggered the command (an alert, a rule), recorded on the crisis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<serde_json::Value>,
    /// For `crisis.approve`: the proposal the signer reviewed, as the crisis
    /// event's `proposal` (or `sumud crisis show`) names it. An approval
    /// naming anything but what is pending is refused as `stale_approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approves: Option<ApprovalTarget>,
    /// For `crisis.rescope`: what an alert may change (areas, severity,
    /// dates); the budget and response the operators decided stand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<CrisisScope>,
    /// For `operator.add` (the key to register) and `operator.revoke`
    /// (only `kid` is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorGrant>,
    /// Asks for a declaration to wait for approval whatever its budget: an
    /// early-warning rule that only *proposes* sets it, so that an operator
    /// decides through the same four-eyes path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub propose: bool,
}

/// What every `operator.*` command is keyed by (and recorded under): one
/// partition, so operator changes are judged one at a time and in order.
pub const OPERATORS_SUBJECT: &str = "operators";

/// An operator key as an admin registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorGrant {
    /// Key id; never reused, even after revocation.
    pub kid: String,
    /// The person or system holding the key (`operator.add`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub principal: String,
    /// Ed25519 public key, base64url (the JWK `x`) (`operator.add`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x: String,
    /// Roles: `declare`, `approve`, `close`, `admin` (`operator.add`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl CommandClaims {
    /// What the command is about, and so its Kafka key: the crisis id, or
    /// [`OPERATORS_SUBJECT`] for an operator command.
    pub fn subject(&self) -> &str {
        if self.cmd.is_operator() {
            OPERATORS_SUBJECT
        } else {
            &self.crisis_id
        }
    }
}

/// What an approval approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTarget {
    /// The proposal's revision (`proposal.revision` of the crisis event).
    pub revision: i32,
    /// The proposal's digest (`proposal.digest`, see
    /// [`crate::events::crisis::definition_digest`]).
    pub digest: String,
}

/// The part of a crisis an alert speaks for: where, how severe and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrisisScope {
    /// Affected area codes.
    pub areas: Vec<String>,
    /// How severe.
    pub severity: Severity,
    /// First day of the response.
    pub starts_on: NaiveDate,
    /// Last day of the response.
    pub ends_on: NaiveDate,
}

/// Command kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandKind {
    /// Declare a new crisis.
    #[serde(rename = "crisis.declare")]
    Declare,
    /// Change areas, amounts, budget or end date.
    #[serde(rename = "crisis.amend")]
    Amend,
    /// Approve a pending declaration or amendment (four eyes).
    #[serde(rename = "crisis.approve")]
    Approve,
    /// Close the crisis.
    #[serde(rename = "crisis.close")]
    Close,
    /// Change an active crisis's areas, severity and dates only (what a CAP
    /// Update says); budget and response stay as the operators left them.
    #[serde(rename = "crisis.rescope")]
    Rescope,
    /// Register an operator key (admin only).
    #[serde(rename = "operator.add")]
    OperatorAdd,
    /// Revoke an operator key for good (admin only).
    #[serde(rename = "operator.revoke")]
    OperatorRevoke,
}

impl CommandKind {
    /// The wire name, e.g. `crisis.declare`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Declare => "crisis.declare",
            CommandKind::Amend => "crisis.amend",
            CommandKind::Approve => "crisis.approve",
            CommandKind::Close => "crisis.close",
            CommandKind::Rescope => "crisis.rescope",
            CommandKind::OperatorAdd => "operator.add",
            CommandKind::OperatorRevoke => "operator.revoke",
        }
    }

    /// Whether it manages operators rather than a crisis.
    pub fn is_operator(self) -> bool {
        matches!(self, CommandKind::OperatorAdd | CommandKind::OperatorRevoke)
    }
}
