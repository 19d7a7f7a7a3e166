//! Sumud's own assistance on `sumud.assistance.shared.v1` (a topic
//! eligibility alone may write, beside the partners' own), so that every
//! agency sees the same picture: each crisis decision becomes a record in the
//! partners' vocabulary — `given` when first entitled, `corrected` when it
//! changes while entitled, `reversed` when cancelled or no longer entitled
//! — keyed by the household's match key (no identity travels; a household
//! without one is not shared).
//!
//! A background pass, off the expansion's path: it reads the decisions
//! changed since last shared, in change order, and in one transaction
//! writes their records to eligibility's outbox and marks them shared, so
//! that the outbox relay publishes each exactly once per change.

use std::time::Duration;

use sumud_shared::db::Store;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::assistance::{AssistanceAction, SumudAssistance, SUMUD_ASSISTANCE};
use sumud_shared::money::Money;
use sumud_shared::outbox::{self, Pending};
use sumud_shared::Result;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::db::{self, Shared, Unshared};

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

/// The record of decision `u`, if partners are to hear of it, and how the
/// decision stands with them afterwards. A decision given (again) gets a
/// fresh opaque record id from `fresh`: partners never see the household
/// id beside its match key, and a decision given again after a reversal
/// is a new record for them, as their own vocabulary requires.
pub fn record(
    u: &Unshared,
    fresh: impl FnOnce() -> String,
) -> (Option<Envelope<SumudAssistance>>, Shared) {
    let entitled = u.status == "entitled";
    let unchanged = Shared {
        entitlement_id: u.entitlement_id.clone(),
        change_seq: u.change_seq,
        live: u.shared_live,
        record: u.shared_record.clone(),
    };
    let Some(key) = &u.match_key else {
        return (None, unchanged);
    };
    let Some(act) = action(entitled, u.shared_live) else {
        return (None, unchanged);
    };
    let (Ok(from), Ok(to)) = (u.period_from.parse(), u.period_to.parse()) else {
        return (None, unchanged);
    };
    let record_id = match (act, &u.shared_record) {
        (AssistanceAction::Given, _) | (_, None) => fresh(),
        (_, Some(r)) => r.clone(),
    };
    let data = SumudAssistance {
        record_id: record_id.clone(),
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
    e.id = format!("{record_id}@{}", u.change_seq);
    let now = Shared {
        live: entitled,
        record: Some(record_id),
        ..unchanged
    };
    (Some(e), now)
}

/// One pass: shares up to a batch of changed decisions on `topic`.
/// Returns how many decisions it looked at.
pub async fn share(store: &Store, topic: &str) -> Result<usize> {
    let mut tx = store.begin().await?;
    if !db::try_lock_sharing(&mut tx).await? {
        return Ok(0);
    }
    // The ledger lock every transaction that changes decisions takes
    // first: the pass's marks cannot then deadlock with a handler's
    // updates of the same rows.
    db::lock_ledger(&mut tx).await?;
    let rows = db::unshared(&mut tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut pending = Vec::new();
    let mut marks = Vec::with_capacity(rows.len());
    for u in &rows {
        let (event, mark) = record(u, || uuid::Uuid::new_v4().to_string());
        if let Some(e) = event {
            pending.push(Pending::event(topic, &e.data.match_key, &e));
        }
        marks.push(mark);
    }
    if !pending.is_empty() {
        outbox::enqueue_tx(&mut tx, "eligibility", pending).await?;
    }
    db::mark_shared(&mut tx, &marks).await?;
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
            shared_record: live.then(|| "r-1".to_owned()),
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
        let fresh = || "r-2".to_owned();
        let (e, m) = record(&unshared("entitled", false, Some(KEY)), fresh);
        let e = e.unwrap();
        assert_eq!(e.data.action, AssistanceAction::Given);
        assert_eq!(e.data.amount.unwrap().minor, 337_500);
        assert_eq!(
            (e.data.record_id.as_str(), e.id.as_str()),
            ("r-2", "r-2@41")
        );
        assert!(!e.data.record_id.contains("HH-1"), "no household id");
        assert_eq!((m.live, m.record.as_deref()), (true, Some("r-2")));
        let (e, m) = record(&unshared("entitled", true, Some(KEY)), fresh);
        let e = e.unwrap();
        assert_eq!(
            (e.data.action, e.data.record_id.as_str()),
            (AssistanceAction::Corrected, "r-1")
        );
        assert!(m.live);
        let (e, m) = record(&unshared("cancelled", true, Some(KEY)), fresh);
        let e = e.unwrap();
        assert_eq!(
            (e.data.action, e.data.record_id.as_str()),
            (AssistanceAction::Reversed, "r-1")
        );
        assert_eq!(e.data.amount, None);
        assert_eq!((m.live, m.record.as_deref()), (false, Some("r-1")));
        // Given again after a reversal: a new record.
        let mut again = unshared("entitled", false, Some(KEY));
        again.shared_record = Some("r-1".into());
        let (e, m) = record(&again, fresh);
        assert_eq!(e.unwrap().data.record_id, "r-2");
        assert_eq!(m.record.as_deref(), Some("r-2"));
        let (e, m) = record(&unshared("waitlisted", false, Some(KEY)), fresh);
        assert!(e.is_none() && !m.live);
        // No match key: not shared, and nothing changes for partners.
        let (e, m) = record(&unshared("entitled", false, None), fresh);
        assert!(e.is_none() && !m.live && m.record.is_none());
    }
}
