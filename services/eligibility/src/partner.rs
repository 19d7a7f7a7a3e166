//! A partner agency's signed record on the assistance topic, judged once:
//! who may write it (a registered, unrevoked partner key whose signature
//! verifies; the agency is the key's), that it is keyed by the household's
//! match key, fresh, not a replay, well formed and fitting what the agency
//! recorded before; then what it does — the record is kept, and the live
//! decisions of the household it names are re-weighed under each active
//! crisis's overlap rule, in the same transaction.
//!
//! The order of the checks follows the field commands': the signature
//! first (a record nobody can attribute changes nothing and is not kept),
//! then the same message read again (its recorded verdict), replay, key
//! binding, revocation, age, shape; every refusal after the signature
//! verified (but `replayed` and `key_mismatch`) is recorded, so the message
//! can never take effect later.

use sumud_shared::db::{Store, Tx};
use sumud_shared::deadletter::Reason;
use sumud_shared::events::assistance::{AssistanceAction, AssistanceClaims, SignedAssistance};
use sumud_shared::kafka::consumer::{Incoming, Verdict};
use sumud_shared::{match_key, Result};
use tracing::{info, warn};

use crate::db::{self, PartnerKey, Position};
use crate::signed::{self, Opened};

/// Oldest accepted `iat`, seconds.
pub const MAX_AGE_SECS: i64 = 3600;

/// Why the claims are malformed, if they are. Pure.
pub fn malformed(c: &AssistanceClaims) -> Option<String> {
    if c.record_id.trim().is_empty() || c.record_id.len() > 128 {
        return Some("record_id must be 1 to 128 characters".into());
    }
    if !match_key::well_formed(&c.match_key) {
        return Some(
            "match_key must be 43 base64url characters: HMAC-SHA-256 of the normalised national id \
             under the agencies' shared secret (docs/contracts.md, Partner agencies)"
                .into(),
        );
    }
    if c.action == AssistanceAction::Reversed {
        return None;
    }
    match (&c.amount, c.period_from, c.period_to) {
        (Some(a), Some(from), Some(to)) => {
            if a.minor <= 0 {
                Some(format!("amount must be positive, not {}", a.minor))
            } else if from > to {
                Some(format!("period_from {from} is after period_to {to}"))
            } else {
                None
            }
        }
        _ => Some("given and corrected records need amount, period_from and period_to".into()),
    }
}

/// Judges one partner record on `store`; `wake` nudges the decision
/// publisher when decisions changed.
pub async fn judge(store: &Store, m: &Incoming) -> Result<(Verdict, bool)> {
    let opened = signed::open(
        store,
        m,
        |d: &SignedAssistance| d.jws.as_str(),
        |c: &AssistanceClaims| c.jti.as_str(),
        "the assistance record",
        "assistance record message",
    )
    .await?;
    let Opened { key, claims, at } = match opened {
        Ok(o) => o,
        Err(settled) => return Ok((settled, false)),
    };
    if let Some(v) = signed::unbound(m, &claims.match_key, "the record's match_key") {
        return Ok((v, false));
    }
    let refusal = signed::out_of_standing(&key, claims.iat, MAX_AGE_SECS, "records")
        .or_else(|| malformed(&claims).map(|why| (Reason::InvalidCommand, why)));
    if let Some((reason, detail)) = refusal {
        return refuse(store, &key, &claims, &at, reason, detail).await;
    }
    let mut tx = store.begin().await?;
    db::lock_ledger(&mut tx).await?;
    let touched = match db::apply_record(&mut tx, &key.agency, &claims).await? {
        Ok(h) => h,
        Err(detail) => {
            drop(tx);
            return refuse(store, &key, &claims, &at, Reason::InvalidTransition, detail).await;
        }
    };
    db::record_judged(&mut tx, &key, &claims.jti, &at, None).await?;
    let why = format!(
        "partner {} record {} {}",
        key.agency,
        claims.record_id,
        match claims.action {
            AssistanceAction::Given => "given",
            AssistanceAction::Corrected => "corrected",
            AssistanceAction::Reversed => "reversed",
        }
    );
    let changed = reweigh_households(&mut tx, &touched, &why).await?;
    if touched.is_empty() {
        warn!(agency = %key.agency, record = %claims.record_id, "Partner record names no single registered household; kept for the ledger, it counts once the registry holds exactly one household with its match key.");
    }
    tx.commit().await?;
    info!(agency = %key.agency, record = %claims.record_id, action = ?claims.action, households = touched.len(), decisions_changed = changed, "Partner assistance recorded.");
    Ok((Verdict::Done, changed > 0))
}

/// Re-weighs `households` in every active crisis after the partner
/// assistance they hold changed (`why` names the change): in the order each
/// household's decisions were made, so that each weighs the earlier ones as
/// they now stand; crises that have not decided it come last, through the
/// expansion. Returns the decisions changed or made.
async fn reweigh_households(tx: &mut Tx, households: &[String], why: &str) -> Result<usize> {
    let mut changed = 0;
    for h in households {
        for c in db::active_crises_by_decision(tx, h).await? {
            changed += db::reweigh(tx, &c, h, why).await?;
            // A household the partner's assistance kept out (now reversed
            // or lowered) is decided, under the rule, by the expansion.
            let c = db::crisis(tx, &c.crisis_id)
                .await?
                .expect("locked crisis exists");
            let x = db::expand(tx, &c, Some(std::slice::from_ref(h))).await?;
            changed += (x.entitled + x.waitlisted) as usize;
        }
    }
    Ok(changed)
}

/// Keeps partner records on the right households as the registry changes
/// (`db::rematch_records`): a record whose household changed re-weighs
/// the household it left and the one it joined, in the transaction that
/// moves it, before the crises extend to the changed households. Runs for
/// every batch of registry changes, under the ledger lock (one indexed
/// read when nothing moves). Returns the decisions changed.
pub async fn follow_registry(store: &Store, changed: &[String]) -> Result<usize> {
    rematch(store, db::Scope::Households(changed)).await
}

/// Re-matches the partner records of `scope` and re-weighs the households
/// they left or joined, in one transaction under the ledger lock.
pub async fn rematch(store: &Store, scope: db::Scope<'_>) -> Result<usize> {
    // The lock comes before the read: a partner record judged at the same
    // moment (another instance) commits its match first, and is then seen
    // here, or waits and sees this batch's households.
    let mut tx = store.begin().await?;
    db::lock_ledger(&mut tx).await?;
    let when = match scope {
        db::Scope::Households(_) => "after a registry change",
        db::Scope::Stale => "when re-matched at start",
    };
    let moved = db::rematch_records(&mut tx, scope).await?;
    if moved.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut decisions = 0;
    for m in &moved {
        // The household that gains the record first: its cut frees budget
        // that a raise of the household it left may need.
        let touched: Vec<String> = m.to.iter().chain(&m.from).cloned().collect();
        let why = format!(
            "partner {} record {} {} {when}",
            m.agency,
            m.record_id,
            match (&m.to, m.ambiguous) {
                (Some(_), _) => "matched",
                (None, true) => "unmatched (its match key names several households)",
                (None, false) => "unmatched",
            }
        );
        if m.ambiguous {
            warn!(agency = %m.agency, record = %m.record_id, "Partner record's match key names several registered households (a national id entered twice?); it counts for none of them until the registry is corrected.");
        }
        decisions += reweigh_households(&mut tx, &touched, &why).await?;
    }
    tx.commit().await?;
    info!(
        records = moved.len(),
        decisions_changed = decisions,
        "Partner records re-matched to the registry."
    );
    Ok(decisions)
}

/// Records a refusal of a verified record, then dead-letters it.
async fn refuse(
    store: &Store,
    key: &PartnerKey,
    claims: &AssistanceClaims,
    at: &Position,
    reason: Reason,
    detail: String,
) -> Result<(Verdict, bool)> {
    let verdict = signed::refuse(store, key, &claims.jti, at, reason, detail).await?;
    Ok((verdict, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sumud_shared::money::Money;

    fn given() -> AssistanceClaims {
        AssistanceClaims {
            jti: "a1".into(),
            iat: 0,
            record_id: "WFP-1".into(),
            action: AssistanceAction::Given,
            match_key: "zKT-Vy1CpauC8SX2g8ZxGrp7x1M2-0R7Tj5XQQm1Ino".into(),
            amount: Some(Money::new(150_000, "JOD").unwrap()),
            period_from: Some("2026-12-01".parse().unwrap()),
            period_to: Some("2027-02-28".parse().unwrap()),
            programme: None,
        }
    }

    #[test]
    fn a_record_is_well_formed_only_with_a_match_key_and_for_a_gift_an_amount_and_period() {
        assert_eq!(malformed(&given()), None);
        let mut c = given();
        c.match_key = "9871234567".into();
        assert!(malformed(&c).unwrap().contains("match_key"));
        let mut c = given();
        c.amount = None;
        assert!(malformed(&c).is_some());
        c.action = AssistanceAction::Reversed;
        assert_eq!(malformed(&c), None);
        let mut c = given();
        c.period_to = Some("2026-11-30".parse().unwrap());
        assert!(malformed(&c).unwrap().contains("after"));
    }
}
