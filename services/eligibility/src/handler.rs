//! The eligibility service's consumer-loop handler.
//!
//! Crisis events drive expansions and referrals; registry changes extend
//! active crises to newly eligible (or newly referred) households (once the
//! registry service has stored them) and cancel the live decisions of
//! removed households; partner agencies' signed records of assistance are
//! judged by [`crate::partner`], service providers' answers to referrals by
//! [`crate::referral`]. Every step is
//! idempotent: a crisis event at or below the stored revision changes
//! nothing, and an expansion never decides a household twice.

use std::collections::HashMap;
use std::sync::Arc;

use sumud_shared::areas::AreaCatalog;
use sumud_shared::db::Store;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::assistance::PARTNER_ASSISTANCE;
use sumud_shared::events::crisis::{
    CrisisEvent, CrisisState, CRISIS_ACTIVATED, CRISIS_AMENDED, CRISIS_AMENDMENT_PROPOSED,
    CRISIS_CLOSED, CRISIS_EVENTS, CRISIS_PROPOSED,
};
use sumud_shared::events::household::{
    Household, HouseholdRemoved, HOUSEHOLD_REMOVED, HOUSEHOLD_UPSERTED,
};
use sumud_shared::events::referral::REFERRAL_ACKNOWLEDGED;
use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};
use sumud_shared::playbook::PlaybookBook;
use sumud_shared::{Error, Result};
use tokio::sync::Notify;
use tracing::info;

use crate::db;

/// Decides entitlements.
pub struct EligibilityHandler {
    store: Store,
    book: &'static PlaybookBook,
    areas: &'static AreaCatalog,
    wake: Arc<Notify>,
    types: Vec<&'static str>,
}

impl EligibilityHandler {
    /// A handler on `store`; `wake` nudges the decision publisher after
    /// commits.
    pub fn new(store: Store, book: &'static PlaybookBook, wake: Arc<Notify>) -> Self {
        let mut types: Vec<&'static str> = CRISIS_EVENTS.to_vec();
        types.extend([
            HOUSEHOLD_UPSERTED,
            HOUSEHOLD_REMOVED,
            PARTNER_ASSISTANCE,
            REFERRAL_ACKNOWLEDGED,
        ]);
        EligibilityHandler {
            store,
            book,
            areas: AreaCatalog::default_catalog(),
            wake,
            types,
        }
    }

    async fn crisis_event(&self, m: &Incoming) -> Result<Verdict> {
        let e: CrisisEvent = match m.envelope.typed() {
            Ok(e) => e,
            Err(r) => return Ok(Verdict::Reject(r)),
        };
        let event_type = m.envelope.event_type.as_str();
        if event_type == CRISIS_AMENDMENT_PROPOSED {
            return Ok(Verdict::Done); // nothing changes until it is approved
        }
        let mut tx = self.store.begin().await?;
        // The ledger first, then the crisis row: one order in every
        // transaction that changes decisions.
        db::lock_ledger(&mut tx).await?;
        if let Some((state, revision)) = db::crisis_for_update(&mut tx, &e.crisis_id).await? {
            if (revision, rank(state)) >= (e.revision, rank(e.state)) {
                // A redelivery or an older event. Its referrals may not have
                // committed before a crash (they follow the decisions in a
                // transaction of their own): making them is idempotent.
                drop(tx);
                if state == CrisisState::Active && e.revision == revision {
                    self.refer(&e.crisis_id).await?;
                }
                return Ok(Verdict::Done);
            }
        }
        // Resolved only for an event not yet applied: one already applied
        // (a redelivery, or the history again after the embedded broker
        // restarted) is done whatever today's playbooks say of it.
        let resolved = match self.book.resolve(&e.definition) {
            Ok(r) => r,
            Err(why) => return Ok(Verdict::Reject(Rejection::new(Reason::InvalidCommand, why))),
        };
        // What partners were told of this crisis's period and title, to
        // tell them again if an amendment changes either.
        let shared_as = |d: &sumud_shared::events::crisis::CrisisDefinition| {
            (d.starts_on, d.ends_on, d.title.clone())
        };
        let before = db::crisis(&mut tx, &e.crisis_id)
            .await?
            .map(|c| shared_as(&c.definition));
        db::save_crisis(&mut tx, &e, &resolved).await?;
        if before.is_some_and(|b| b != shared_as(&e.definition)) {
            db::reshare_crisis(&mut tx, &e.crisis_id).await?;
        }
        // The decisions this event causes are published later, set-based:
        // they continue the trace of the event through the crisis row.
        let trace = sumud_shared::telemetry::continuing(m.traceparent.as_deref());
        sumud_shared::outbox::set_crisis_traceparent(
            &mut tx,
            "eligibility",
            &e.crisis_id,
            trace.as_deref(),
        )
        .await?;
        let c = db::crisis(&mut tx, &e.crisis_id)
            .await?
            .ok_or_else(|| Error::Other("crisis vanished".into()))?;
        match event_type {
            CRISIS_PROPOSED => {}
            CRISIS_ACTIVATED => {
                let x = db::expand(&mut tx, &c, None).await?;
                info!(crisis = %c.crisis_id, entitled = x.entitled, waitlisted = x.waitlisted, committed = x.committed_minor, "Expansion committed.");
            }
            CRISIS_AMENDED => {
                let cancelled = db::cancel_outside_areas(&mut tx, &c).await?;
                let demoted = db::fit_budget(&mut tx, &c, e.definition.budget.minor).await?;
                let c = db::crisis(&mut tx, &e.crisis_id)
                    .await?
                    .ok_or_else(|| Error::Other("crisis vanished".into()))?;
                let (raised, promoted) = db::reprice_and_promote(&mut tx, &c).await?;
                let c = db::crisis(&mut tx, &e.crisis_id)
                    .await?
                    .ok_or_else(|| Error::Other("crisis vanished".into()))?;
                let x = db::expand(&mut tx, &c, None).await?;
                info!(crisis = %c.crisis_id, revision = c.revision, cancelled, demoted, raised, promoted, entitled = x.entitled, waitlisted = x.waitlisted, "Amendment applied.");
            }
            CRISIS_CLOSED => {
                db::close(&mut tx, &c.crisis_id, c.revision).await?;
                let cancelled = db::cancel_waitlist(&mut tx, &c).await?;
                info!(crisis = %c.crisis_id, cancelled, "Crisis closed.");
            }
            _ => {
                return Ok(Verdict::Reject(Rejection::new(
                    Reason::UnknownEventType,
                    event_type.to_owned(),
                )))
            }
        }
        tx.commit().await?;
        self.wake.notify_one();
        if matches!(event_type, CRISIS_ACTIVATED | CRISIS_AMENDED) {
            // Areas an activation or amendment brings, their referrals.
            self.refer(&e.crisis_id).await?;
        }
        Ok(Verdict::Done)
    }

    /// Makes the referrals of active crisis `crisis_id` in a transaction
    /// of their own, after its decisions committed: money first, and the
    /// cash path does not wait on the social services' list. Idempotent
    /// (one referral per crisis, household and service), so a crisis event
    /// read again after a crash makes the ones it had not.
    async fn refer(&self, crisis_id: &str) -> Result<()> {
        let mut tx = self.store.begin().await?;
        let Some(c) = db::crisis(&mut tx, crisis_id).await? else {
            return Ok(());
        };
        if c.state != CrisisState::Active || c.resolved.referrals.is_empty() {
            return Ok(());
        }
        let referred = db::refer(&mut tx, &c, None).await?;
        tx.commit().await?;
        if referred > 0 {
            info!(crisis = %crisis_id, referred, "Referrals made.");
        }
        Ok(())
    }

    /// Registry changes: wait for the registry service to store them,
    /// re-match the partner records they concern, then extend every active
    /// crisis to the changed households.
    async fn registry_changes(&self, batch: &[&Incoming]) -> Result<()> {
        let mut wanted: HashMap<String, i64> = HashMap::new();
        let mut upserted = Vec::new();
        let mut removed = Vec::new();
        for m in batch {
            let (id, version) = if m.envelope.event_type == HOUSEHOLD_REMOVED {
                let Ok(r) = m.envelope.typed::<HouseholdRemoved>() else {
                    continue;
                };
                removed.push(r.household_id.clone());
                (r.household_id, r.version)
            } else {
                let Ok(h) = m.envelope.typed::<Household>() else {
                    continue;
                };
                if self.areas.resolve(&h.area_code).is_none() {
                    continue; // the registry service dead-letters it
                }
                upserted.push(h.household_id.clone());
                (h.household_id, h.version)
            };
            let v = wanted.entry(id).or_insert(version);
            *v = (*v).max(version);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = wanted.keys().cloned().collect();
        let stored: HashMap<String, i64> = db::registry_versions(&self.store, &ids)
            .await?
            .into_iter()
            .collect();
        let behind = wanted
            .iter()
            .filter(|(id, v)| stored.get(*id).is_none_or(|s| s < v))
            .count();
        if behind > 0 {
            return Err(Error::NotReady(format!(
                "{behind} household changes not yet stored by the registry service"
            )));
        }
        // Partner records follow the registry first, so that the crises
        // below decide a household with the assistance it now holds.
        crate::partner::follow_registry(&self.store, &ids).await?;
        let crises = db::active_crises(&self.store).await?;
        for c in crises {
            let mut tx = self.store.begin().await?;
            db::lock_ledger(&mut tx).await?;
            if db::crisis_for_update(&mut tx, &c.crisis_id)
                .await?
                .map(|s| s.0)
                != Some(CrisisState::Active)
            {
                continue;
            }
            let Some(c) = db::crisis(&mut tx, &c.crisis_id).await? else {
                continue;
            };
            let cancelled = if removed.is_empty() {
                0
            } else {
                db::cancel_households(&mut tx, &c, &removed).await?
            };
            let c = db::crisis(&mut tx, &c.crisis_id)
                .await?
                .ok_or_else(|| Error::Other("crisis vanished".into()))?;
            // Decisions already made follow the new records first (future
            // tranches only); then the expansion decides the households
            // without a live decision, those that switched kind included.
            let r = db::redecide_households(&mut tx, &c, &upserted).await?;
            let c = db::crisis(&mut tx, &c.crisis_id)
                .await?
                .ok_or_else(|| Error::Other("crisis vanished".into()))?;
            let x = db::expand(&mut tx, &c, Some(&upserted)).await?;
            let referred = db::refer(&mut tx, &c, Some(&upserted)).await?;
            tx.commit().await?;
            if x.entitled
                + x.waitlisted
                + cancelled
                + r.cancelled
                + r.repriced
                + r.held
                + referred as i64
                > 0
            {
                info!(crisis = %c.crisis_id, entitled = x.entitled, waitlisted = x.waitlisted, cancelled = cancelled + r.cancelled, repriced = r.repriced, raises_held = r.held, referred, "Registry changes applied to an active crisis.");
            }
        }
        self.wake.notify_one();
        Ok(())
    }
}

fn rank(s: CrisisState) -> u8 {
    match s {
        CrisisState::Proposed => 0,
        CrisisState::Active => 1,
        CrisisState::Closed => 2,
    }
}

impl Handler for EligibilityHandler {
    fn event_types(&self) -> &[&str] {
        &self.types
    }

    async fn handle(&self, batch: &[Incoming]) -> Result<Vec<Verdict>> {
        let mut verdicts = vec![Verdict::Done; batch.len()];
        for (i, m) in batch.iter().enumerate() {
            let t = m.envelope.event_type.as_str();
            if CRISIS_EVENTS.contains(&t) {
                verdicts[i] = self.crisis_event(m).await?;
            } else if t == PARTNER_ASSISTANCE {
                let (verdict, changed) = crate::partner::judge(&self.store, m).await?;
                verdicts[i] = verdict;
                if changed {
                    self.wake.notify_one();
                }
            } else if t == REFERRAL_ACKNOWLEDGED {
                verdicts[i] = crate::referral::judge(&self.store, m).await?;
            }
        }
        let registry: Vec<&Incoming> = batch
            .iter()
            .filter(|m| {
                let t = m.envelope.event_type.as_str();
                t == HOUSEHOLD_UPSERTED || t == HOUSEHOLD_REMOVED
            })
            .collect();
        self.registry_changes(&registry).await?;
        Ok(verdicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_states_outrank_earlier_ones_at_the_same_revision() {
        assert!((1, rank(CrisisState::Closed)) > (1, rank(CrisisState::Active)));
        assert!((2, rank(CrisisState::Active)) > (1, rank(CrisisState::Closed)));
    }
}
