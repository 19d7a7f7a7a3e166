//! Social-service referrals: who a referral rule names (pure, so `explain`
//! and the set-based statement read the same rule), and a service
//! provider's signed acknowledgement on `sumud.referrals.answers.v1`,
//! judged once.
//!
//! Who may answer a referral: a registered, unrevoked partner key whose
//! signature verifies, of the agency the playbook names as the referral's
//! provider (anyone else's is `wrong_provider`). The checks run in the
//! order the partner records' do ([`crate::partner`]): the signature
//! first, then the same message read again, replay, key binding (the Kafka
//! key is the referral id), revocation, age, shape; then the referral
//! itself — known, the provider's, and a move its status allows. Every
//! refusal after the signature verified (but `replayed` and
//! `key_mismatch`) is recorded, so the message can never take effect later.
//!
//! Referral events go out on `sumud.referrals.v1`, which eligibility alone
//! may write; providers answer on `sumud.referrals.answers.v1`, so no
//! provider can pass for eligibility (a referral event found there is
//! `untrusted_sender`, refused by the consumer loop).

use sumud_shared::db::Store;
use sumud_shared::deadletter::Reason;
use sumud_shared::events::household::VulnerabilityFlag;
use sumud_shared::events::referral::{
    AcknowledgementClaims, ReferralStatus, SignedAcknowledgement,
};
use sumud_shared::kafka::consumer::{Incoming, Verdict};
use sumud_shared::playbook::ReferralRule;
use sumud_shared::Result;
use tracing::info;

use crate::db;
use crate::signed::{self, Opened};

/// Oldest accepted `iat`, seconds.
pub const MAX_AGE_SECS: i64 = 3600;

/// Whether `rule` refers a household of the crisis areas carrying `flags`:
/// it carries every flag the rule names.
pub fn refers(rule: &ReferralRule, flags: &[VulnerabilityFlag]) -> bool {
    rule.flags.iter().all(|f| flags.contains(f))
}

/// Why `rule` referred a household, in words.
pub fn reason(rule: &ReferralRule) -> String {
    let flags: Vec<&str> = rule.flags.iter().map(|f| f.as_str()).collect();
    format!(
        "flags {} in a crisis area: referred to {} ({})",
        flags.join(" and "),
        rule.service,
        rule.provider
    )
}

/// Why the claims are malformed, if they are. Pure.
pub fn malformed(c: &AcknowledgementClaims) -> Option<String> {
    if c.referral_id.trim().is_empty() || c.referral_id.chars().count() > 200 {
        return Some("referral_id must be 1 to 200 characters".into());
    }
    if c.status == ReferralStatus::Referred {
        return Some("an answer is accepted, served or declined, not referred".into());
    }
    if c.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Some("note must be at most 500 characters".into());
    }
    if c.status == ReferralStatus::Declined && c.note.as_deref().is_none_or(|n| n.trim().is_empty())
    {
        return Some("a declined referral needs a note saying why".into());
    }
    None
}

/// Judges one acknowledgement on `store`; a referral it moves is
/// republished by the referral relay.
pub async fn judge(store: &Store, m: &Incoming) -> Result<Verdict> {
    let opened = signed::open(
        store,
        m,
        |d: &SignedAcknowledgement| d.jws.as_str(),
        |c: &AcknowledgementClaims| c.jti.as_str(),
        "the acknowledgement",
        "acknowledgement",
    )
    .await?;
    let Opened { key, claims, at } = match opened {
        Ok(o) => o,
        Err(settled) => return Ok(settled),
    };
    if let Some(v) = signed::unbound(m, &claims.referral_id, "the acknowledgement's referral_id") {
        return Ok(v);
    }
    let refusal = signed::out_of_standing(&key, claims.iat, MAX_AGE_SECS, "acknowledgements")
        .or_else(|| malformed(&claims).map(|why| (Reason::InvalidCommand, why)));
    if let Some((reason, detail)) = refusal {
        return signed::refuse(store, &key, &claims.jti, &at, reason, detail).await;
    }
    let mut tx = store.begin().await?;
    let Some(referral) = db::referral_for_update(&mut tx, &claims.referral_id).await? else {
        drop(tx);
        let detail = format!("no referral {} was made", claims.referral_id);
        return signed::refuse(
            store,
            &key,
            &claims.jti,
            &at,
            Reason::UnknownReferral,
            detail,
        )
        .await;
    };
    if referral.provider != key.agency {
        drop(tx);
        let detail = format!(
            "referral {} is for {}, not {} (whose key {} signed)",
            referral.referral_id, referral.provider, key.agency, key.kid
        );
        return signed::refuse(store, &key, &claims.jti, &at, Reason::WrongProvider, detail).await;
    }
    let moves = match referral.status()?.moves_to(claims.status) {
        Ok(moves) => moves,
        Err(detail) => {
            drop(tx);
            return signed::refuse(
                store,
                &key,
                &claims.jti,
                &at,
                Reason::InvalidTransition,
                detail,
            )
            .await;
        }
    };
    if moves {
        db::answer(
            &mut tx,
            &referral,
            claims.status,
            claims.note.as_deref(),
            &key,
            &claims.jti,
        )
        .await?;
    }
    db::record_judged(&mut tx, &key, &claims.jti, &at, None).await?;
    tx.commit().await?;
    info!(agency = %key.agency, referral = %referral.referral_id, status = claims.status.as_str(), changed = moves, "Referral acknowledged.");
    Ok(Verdict::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use VulnerabilityFlag::*;

    fn rule(flags: &[VulnerabilityFlag]) -> ReferralRule {
        ReferralRule {
            service: "child_protection".into(),
            provider: "unicef-jordan".into(),
            flags: flags.to_vec(),
        }
    }

    #[test]
    fn a_rule_refers_only_households_carrying_every_flag_it_names() {
        let r = rule(&[YoungChildren, FemaleHeaded]);
        assert!(refers(&r, &[FemaleHeaded, Elderly, YoungChildren]));
        assert!(!refers(&r, &[YoungChildren]));
        assert!(!refers(&r, &[]));
        assert_eq!(
            reason(&r),
            "flags young_children and female_headed in a crisis area: referred to child_protection (unicef-jordan)"
        );
    }

    #[test]
    fn a_decline_must_say_why() {
        let mut c = AcknowledgementClaims {
            jti: "a".into(),
            iat: 0,
            referral_id: "FL-1/HH-1/rehabilitation".into(),
            status: ReferralStatus::Declined,
            note: None,
        };
        assert!(malformed(&c).unwrap().contains("why"));
        c.note = Some("moved away".into());
        assert_eq!(malformed(&c), None);
        c.note = Some("ا".repeat(500)); // 1,000 bytes, 500 characters
        assert_eq!(malformed(&c), None);
        c.status = ReferralStatus::Served;
        c.note = None;
        assert_eq!(malformed(&c), None);
        c.status = ReferralStatus::Referred;
        assert!(malformed(&c).unwrap().contains("not referred"));
    }
}
