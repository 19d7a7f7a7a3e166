//! Social-service referrals (key = the referral id), in both directions,
//! each on a topic of its own so that no provider can pass for eligibility:
//!
//! - eligibility, which decides them from the playbook's referral rules (a
//!   household with a disability flag in a flooded area → rehabilitation),
//!   publishes every change of a referral as it now stands
//!   (`referral.recorded`) on `sumud.referrals.v1` through its outbox, so
//!   the service provider the playbook names follows its case list;
//! - the provider answers on `sumud.referrals.answers.v1` with signed
//!   acknowledgements
//!   (`referral.acknowledged`: accepted, served or declined): a compact JWS,
//!   Ed25519, `kid` = a partner key registered with `sumud partners keys
//!   add` for the agency the playbook names as the provider. Eligibility
//!   judges each once.
//!
//! ```json
//! {"jti": "<message id>", "iat": 1764400000,
//!  "referral_id": "FL-2026-MN/HH-000123/rehabilitation",
//!  "status": "served", "note": "assessment done, wheelchair fitted"}
//! ```
//!
//! Nothing personal travels: the household is named by its registry id,
//! the need by the service it is referred to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// CloudEvents type of a referral as eligibility now records it.
pub const REFERRAL_RECORDED: &str = "org.sumud.referral.recorded";
/// CloudEvents type of a service provider's signed acknowledgement.
pub const REFERRAL_ACKNOWLEDGED: &str = "org.sumud.referral.acknowledged";

/// Where a referral stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralStatus {
    /// Sent to the provider, not yet answered.
    Referred,
    /// The provider took the case.
    Accepted,
    /// The household was served (final).
    Served,
    /// The provider declined the case, with a note saying why (final).
    Declined,
}

impl ReferralStatus {
    /// The name stored and published.
    pub fn as_str(self) -> &'static str {
        match self {
            ReferralStatus::Referred => "referred",
            ReferralStatus::Accepted => "accepted",
            ReferralStatus::Served => "served",
            ReferralStatus::Declined => "declined",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Referred, Self::Accepted, Self::Served, Self::Declined]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether an acknowledgement may move a referral from `self` to
    /// `to`: accepted from referred; served or declined from referred or
    /// accepted; served and declined are final. `Ok(false)` means it stands
    /// there already (a provider's retry under a new message id): nothing
    /// changes and nothing is refused.
    pub fn moves_to(self, to: ReferralStatus) -> Result<bool, String> {
        use ReferralStatus::*;
        match (self, to) {
            (a, b) if a == b => Ok(false),
            (_, Referred) => Err("a provider cannot put a referral back to referred".into()),
            (Referred, _) | (Accepted, Served | Declined) => Ok(true),
            (from, to) => Err(format!(
                "the referral is {}, which is final; it cannot become {}",
                from.as_str(),
                to.as_str()
            )),
        }
    }
}

/// A referral as eligibility records it, after the change this event
/// announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    /// `<crisis id>/<household id>/<service>`; the Kafka key.
    pub referral_id: String,
    /// The crisis whose playbook made it.
    pub crisis_id: String,
    /// Household (registry id).
    pub household_id: String,
    /// Its area code, for the provider's routing.
    pub area_code: String,
    /// The service the household is referred to (playbook data).
    pub service: String,
    /// The agency the playbook names to provide it; only its partner keys
    /// may acknowledge.
    pub provider: String,
    /// Where it stands.
    pub status: ReferralStatus,
    /// Why the household was referred (the rule it met).
    pub reason: String,
    /// When this change was recorded. (The provider's notes stay with
    /// eligibility, for `explain`: they are the provider's words to the
    /// social worker, not for every provider reading the topic.)
    pub changed_at: DateTime<Utc>,
}

/// The event's `data` of an acknowledgement: the signed claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAcknowledgement {
    /// Compact JWS over [`AcknowledgementClaims`].
    pub jws: String,
}

/// The signed claims of an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgementClaims {
    /// Id of this message, judged once per key.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// The referral answered; also the Kafka key.
    pub referral_id: String,
    /// Accepted, served or declined.
    pub status: ReferralStatus,
    /// What the provider wants the social worker to know (required when
    /// declining: why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::ReferralStatus::*;

    #[test]
    fn a_referral_moves_forward_only_and_a_final_answer_stays() {
        assert_eq!(Referred.moves_to(Accepted), Ok(true));
        assert_eq!(Referred.moves_to(Served), Ok(true));
        assert_eq!(Accepted.moves_to(Declined), Ok(true));
        assert_eq!(Accepted.moves_to(Accepted), Ok(false));
        assert!(Served.moves_to(Declined).is_err());
        assert!(Declined.moves_to(Accepted).is_err());
        assert!(Accepted.moves_to(Referred).is_err());
    }
}
