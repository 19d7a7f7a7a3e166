//! The signed commands the alerts service sends on `sumud.control.v1`: the
//! same JWS commands an operator signs, under the service's own registered
//! key, so that the control service applies one set of rules (roles, four
//! eyes, replay protection, audit) to people and to rules alike.
//!
//! Ids are derived, not drawn: the crisis id and command id of a response to
//! an alert are functions of the alert, so reprocessing the alert after a
//! crash produces the very same command, which the control service then
//! recognises as a replay.

use chrono::Utc;
use sumud_control::signing::{self, Jwk};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::{
    CommandClaims, CommandKind, CrisisScope, SignedCommand, CONTROL_COMMAND,
};
use sumud_shared::events::crisis::CrisisDefinition;
use sumud_shared::outbox::Pending;
use sumud_shared::{Error, Result};
use uuid::Uuid;

/// The CloudEvents source of everything this service publishes.
pub const SOURCE: &str = "urn:sumud:alerts";

/// A stable short digest of `parts`.
fn digest(parts: &[&str]) -> String {
    let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, parts.join("\u{1f}").as_bytes());
    id.simple().to_string()[..12].to_uppercase()
}

/// The crisis id a rule's response to a cause (an alert, a reading) gets.
pub fn crisis_id(cause: &[&str]) -> String {
    format!("EW-{}", digest(cause))
}

/// The command id of `kind` caused by `cause`.
pub fn command_id(kind: CommandKind, cause: &[&str]) -> String {
    format!("alerts-{}-{}", kind.as_str(), digest(cause).to_lowercase())
}

/// Everything needed to build one command.
pub struct Draft {
    /// What to do.
    pub kind: CommandKind,
    /// The crisis.
    pub crisis_id: String,
    /// Derived command id.
    pub jti: String,
    /// The definition (declare).
    pub body: Option<CrisisDefinition>,
    /// What an Update changes (rescope): areas, severity, dates.
    pub scope: Option<CrisisScope>,
    /// Why: recorded in the audit trail.
    pub note: Option<String>,
    /// The alert, readings and rule that caused it.
    pub trigger: serde_json::Value,
    /// Wait for an operator's approval.
    pub propose: bool,
}

impl Draft {
    /// The claims, issued now.
    pub fn claims(&self) -> CommandClaims {
        CommandClaims {
            approves: None,
            operator: None,
            scope: self.scope.clone(),
            jti: self.jti.clone(),
            iat: Utc::now().timestamp(),
            cmd: self.kind,
            crisis_id: self.crisis_id.clone(),
            body: self.body.clone(),
            note: self.note.clone(),
            trigger: Some(self.trigger.clone()),
            propose: self.propose,
        }
    }

    /// Signs the command and wraps it as an outbox row for the control topic.
    pub fn sign(
        &self,
        key: &Jwk,
        control_topic: &str,
        traceparent: Option<String>,
    ) -> Result<Pending> {
        let jws = signing::sign(&self.claims(), key)
            .map_err(|e| Error::Config(format!("cannot sign with the alerts key: {e}")))?;
        let mut event = Envelope::new(
            SOURCE,
            CONTROL_COMMAND,
            Some(self.crisis_id.clone()),
            SignedCommand { jws },
        );
        event.id = self.jti.clone();
        event.traceparent = traceparent;
        Ok(Pending::event(control_topic, &self.crisis_id, &event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_per_cause() {
        let a = crisis_id(&["ncsc.gov.jo", "NCSC-1"]);
        assert_eq!(a, crisis_id(&["ncsc.gov.jo", "NCSC-1"]));
        assert_ne!(a, crisis_id(&["ncsc.gov.jo", "NCSC-2"]));
        // Joining must not make ("a,b", "c") equal to ("a", "b,c").
        assert_ne!(crisis_id(&["a,b", "c"]), crisis_id(&["a", "b,c"]));
        assert!(a.starts_with("EW-") && a.len() == 15);
        assert_ne!(
            command_id(CommandKind::Declare, &["x"]),
            command_id(CommandKind::Close, &["x"])
        );
    }

    #[test]
    fn a_signed_draft_verifies_with_the_public_key() {
        let key = Jwk::generate("alerts-1");
        let d = Draft {
            kind: CommandKind::Close,
            crisis_id: "EW-1".into(),
            jti: "j1".into(),
            body: None,
            scope: None,
            note: Some("cancelled".into()),
            trigger: serde_json::json!({"rule": "r"}),
            propose: false,
        };
        let row = d.sign(&key, "sumud.control.v1", None).unwrap();
        let e: Envelope<SignedCommand> = serde_json::from_slice(&row.payload).unwrap();
        let claims = signing::verify(&e.data.jws, &key.x).unwrap();
        assert_eq!(claims.cmd, CommandKind::Close);
        assert_eq!(claims.trigger.unwrap()["rule"], "r");
    }
}
