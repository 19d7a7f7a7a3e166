//! Sumud's own assistance on `sumud.assistance.v1`, so that every agency
//! sees the same picture: each crisis decision becomes a record in the
//! partners' vocabulary — `given` when first entitled, `corrected` when it
//! changes while entitled, `reversed` when cancelled or no longer entitled
//! — keyed by the household's match key (no identity travels; a household
//! without one is not shared).
//!
//! A background pass, off the expansion's path: it reads the decisions
//! changed since last shared, in change order, and in one transaction
//! writes their records to eligibility's outbox and marks them shared, so
//! that the outbox relay publishes each exactly once per change. Records
//! read back from the topic are eligibility's own only if their exact
//! bytes are in the outbox (`untrusted_sender` otherwise).

use std::time::Duration;

use sumud_shared::db::Store;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::assistance::{AssistanceAction, SumudAssistance, SUMUD_ASSISTANCE};
use sumud_shared::money::Money;
use sumud_shared::outbox::{self, Pending};
use sumud_shared::Result;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::db::{self, Unshared};

/// Decisions read per pass.
const BATCH: i64 = 5000;

/// What partners are told of a decision that is (or not) `entitled` now,
/// given whether they hold it as given: `None` when nothing changes for
/// them (never given, still not entitled). Pure.
pub fn action(entitled: bool, live: bool) -> Option<AssistanceAction> {
    match (entitled, live) {
        (true, false) => Some(AssistanceAction::Given),
        (true, true) => Some(AssistanceAction::Corrected),
        (false, true) => Some(AssistanceAction::Reversed),
        (false, false) => None,
    }
}

/// The record of decision `u`, if partners are to hear of it, and whether
/// they hold it as given afterwards.
pub fn record(u: &Unshared) -> (Option<Envelope<SumudAssistance>>, bool) {
    let entitled = u.status == "entitled";
    let Some(key) = &u.match_key else {
        return (None, u.shared_live);
    };
    let Some(act) = action(entitled, u.shared_live) else {
        return (None, false);
    };
    let (Ok(from), Ok(to)) = (u.period_from.parse(), u.period_to.parse()) else {
        return (None, u.shared_live);
    };
    let data = SumudAssistance {
        record_id: u.entitlement_id.clone(),
        action: act,
        match_key: key.clone(),
        crisis_id: u.crisis_id.clone(),
        amount: (act != AssistanceAction::Reversed && u.total_minor > 0).then(|| Money {
            minor: u.total_minor,
            currency: u.currency.clone(),
        }),
        period_from: from,
        period_to: to,
        programme: format!("{} ({})", u.title, u.playbook),
    };
    let mut e = Envelope::new(
        "urn:sumud:eligibility",
        SUMUD_ASSISTANCE,
        Some(key.clone()),
        data,
    );
    e.id = format!("{}@{}", u.entitlement_id, u.change_seq);
    (Some(e), entitled)
}

/// One pass: shares up to a batch of changed decisions on `topic`.
/// Returns how many decisions it looked at.
pub async fn share(store: &Store, topic: &str) -> Result<usize> {
    let mut tx = store.begin().await?;
    if !db::try_lock_sharing(&mut tx).await? {
        return Ok(0);
    }
    let rows = db::unshared(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut pending = Vec::new();
    let (mut ids, mut seqs, mut live) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for u in &rows {
        let (event, now_live) = record(u);
        if let Some(e) = event {
            pending.push(Pending::event(topic, &e.data.match_key, &e));
        }
        ids.push(u.entitlement_id.clone());
        seqs.push(u.change_seq);
        live.push(now_live);
    }
    if !pending.is_empty() {
        outbox::enqueue_tx(&mut tx, "eligibility", pending).await?;
    }
    db::mark_shared(&mut tx, &ids, &seqs, &live).await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// Shares until `shutdown`: at once while a full batch is waiting, else
/// every quarter second.
pub async fn run(store: Store, topic: String, shutdown: CancellationToken) -> Result<()> {
    while !shutdown.is_cancelled() {
        let wait = match share(&store, &topic).await {
            Ok(n) if n as i64 == BATCH => Duration::ZERO,
            Ok(_) => Duration::from_millis(250),
            Err(e) => {
                warn!(error = %e, "Sharing Sumud's assistance with partners failed; retrying.");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unshared(status: &str, live: bool, key: Option<&str>) -> Unshared {
        Unshared {
            entitlement_id: "FL-1/HH-1/vertical".into(),
            crisis_id: "FL-1".into(),
            status: status.into(),
            total_minor: 337_500,
            currency: "JOD".into(),
            change_seq: 41,
            shared_live: live,
            match_key: key.map(Into::into),
            period_from: "2026-12-01".into(),
            period_to: "2027-02-28".into(),
            title: "Floods".into(),
            playbook: "flood-standard@2026.2".into(),
        }
    }

    const KEY: &str = "zKT-Vy1CpauC8SX2g8ZxGrp7x1M2-0R7Tj5XQQm1Ino";

    #[test]
    fn partners_hear_given_then_corrected_then_reversed_and_nothing_else() {
        let (e, live) = record(&unshared("entitled", false, Some(KEY)));
        let e = e.unwrap();
        assert_eq!(e.data.action, AssistanceAction::Given);
        assert_eq!(e.data.amount.unwrap().minor, 337_500);
        assert_eq!(e.id, "FL-1/HH-1/vertical@41");
        assert!(live);
        let (e, live) = record(&unshared("entitled", true, Some(KEY)));
        assert_eq!(e.unwrap().data.action, AssistanceAction::Corrected);
        assert!(live);
        let (e, live) = record(&unshared("cancelled", true, Some(KEY)));
        let e = e.unwrap();
        assert_eq!(e.data.action, AssistanceAction::Reversed);
        assert_eq!(e.data.amount, None);
        assert!(!live);
        assert_eq!(
            record(&unshared("waitlisted", false, Some(KEY))),
            (None, false)
        );
        // No match key: not shared, and nothing changes for partners.
        assert_eq!(record(&unshared("entitled", false, None)), (None, false));
    }
}
