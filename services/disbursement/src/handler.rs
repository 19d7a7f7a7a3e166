//! The disbursement service's consumer-loop handler: crisis lifecycle and
//! eligibility decisions update its projections; provider status reports move
//! instructions along, idempotently and order-tolerantly.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sumud_shared::db::Store;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::crisis::{CrisisEvent, CRISIS_EVENTS};
use sumud_shared::events::entitlement::{EntitlementDecision, ENTITLEMENT_DECIDED};
use sumud_shared::events::payment::{RejectionReason, StatusReport, PAYMENT_STATUS};
use sumud_shared::events::task::{TASK_COMMAND, TASK_EVENTS};
use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};
use sumud_shared::Result;
use tracing::{info, warn};

use crate::config::DisbursementConfig;
use crate::db;
use crate::instruction::retry_delay;
use crate::payment_state::{effect, Effect, Report, Standing};
use crate::scheduler::Due;
use crate::sender::may_report;

/// Handles crisis, decision, status and task events.
pub struct DisbursementHandler {
    store: Store,
    config: DisbursementConfig,
    due: Arc<Due>,
    tasks_topic: String,
    types: Vec<&'static str>,
}

impl DisbursementHandler {
    /// A handler on `store`; `due` tells the scheduler which crises
    /// changed; task changes are announced on `tasks_topic`.
    pub fn new(
        store: Store,
        config: DisbursementConfig,
        due: Arc<Due>,
        tasks_topic: String,
    ) -> Self {
        let mut types: Vec<&'static str> = CRISIS_EVENTS.to_vec();
        types.extend([ENTITLEMENT_DECIDED, PAYMENT_STATUS, TASK_COMMAND]);
        types.extend(TASK_EVENTS);
        DisbursementHandler {
            store,
            config,
            due,
            tasks_topic,
            types,
        }
    }

    /// A task event read back from the tasks topic: ours (its exact bytes
    /// are in our outbox) changes nothing; anyone else's is refused, so a
    /// forged "resolved" never passes for disbursement's word.
    async fn task_event(&self, m: &Incoming) -> Result<Verdict> {
        let key = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default());
        if db::published_task_event(&self.store, &key, &m.raw).await? {
            return Ok(Verdict::Done);
        }
        Ok(reject(
            Reason::UntrustedSender,
            "task events are written by disbursement alone; this one is not in its outbox".into(),
        ))
    }

    async fn status(&self, m: &Incoming) -> Result<Verdict> {
        let r: StatusReport = match m.envelope.typed() {
            Ok(r) => r,
            Err(rej) => return Ok(Verdict::Reject(rej)),
        };
        let event_id = format!("{}|{}", m.envelope.source, m.envelope.id);
        let mut tx = self.store.begin().await?;
        if db::status_seen(&mut tx, &event_id).await? {
            return Ok(Verdict::Done); // the same report delivered again
        }
        let Some(held) = db::instruction_for_update(&mut tx, &r.reference_id).await? else {
            return Ok(reject(
                Reason::UnknownInstruction,
                format!("no instruction {}", r.reference_id),
            ));
        };
        let attempt = held.attempt as u32;
        if r.attempt > attempt {
            return Ok(reject(
                Reason::UnknownInstruction,
                format!(
                    "attempt {} of {} was never issued (latest is {attempt})",
                    r.attempt, r.reference_id
                ),
            ));
        }
        // The key is the payment: all its reports share a partition, so
        // they are read in the order the provider sent them.
        if m.key.as_deref() != Some(r.reference_id.as_bytes()) {
            return Ok(reject(
                Reason::KeyMismatch,
                format!(
                    "a status report on {} must be keyed by that reference_id",
                    r.reference_id
                ),
            ));
        }
        // Only the registered provider holding the instruction, signing
        // when it has a key, may move it (sender.rs).
        let registered = db::provider(&mut tx, &r.provider).await?;
        if let Err(refused) = may_report(&held.provider, registered.as_ref(), &r) {
            return Ok(Verdict::Reject(refused));
        }
        let e = effect(
            Standing {
                status: &held.status,
                attempt,
                provider_ref: held.provider_ref.as_deref(),
                outcome_unknown: held
                    .reason_code
                    .as_deref()
                    .is_some_and(|c| RejectionReason::UNKNOWN_OUTCOMES.contains(&c)),
            },
            Report {
                status: r.status,
                reason: r.reason_code,
                attempt: r.attempt,
                provider_ref: r.provider_ref.as_deref(),
            },
            self.config.max_attempts,
        );
        let (crisis, household, amount) = (
            held.crisis_id.clone(),
            &held.household_id,
            held.amount_minor,
        );
        let reason = r.reason_code.map(|c| c.as_str());
        let note = match &e {
            Effect::Advance(s) => {
                db::set_status(
                    &mut tx,
                    &r.reference_id,
                    s,
                    None,
                    r.provider_ref.as_deref(),
                    None,
                )
                .await?;
                None
            }
            Effect::Paid => {
                db::set_status(
                    &mut tx,
                    &r.reference_id,
                    "succeeded",
                    None,
                    r.provider_ref.as_deref(),
                    None,
                )
                .await?;
                None
            }
            Effect::Retry | Effect::Inquire | Effect::Hold => {
                // A certain rejection goes out again after the backoff; an
                // unknown outcome no sooner than the inquiry window, so a
                // provider that did pay has time to say so; with no retry
                // left it is held (no next attempt), its money reserved
                // until the provider answers (reconcile lists it).
                let backoff =
                    retry_delay(Duration::seconds(self.config.retry_base_secs), attempt + 1);
                let next = match e {
                    Effect::Retry => Some(Utc::now() + backoff),
                    Effect::Inquire => {
                        Some(Utc::now() + backoff.max(Duration::seconds(self.config.inquiry_secs)))
                    }
                    _ => None,
                };
                db::set_status(
                    &mut tx,
                    &r.reference_id,
                    "retry_scheduled",
                    reason,
                    None,
                    next,
                )
                .await?;
                None
            }
            Effect::Fail { verify } => {
                db::set_status(&mut tx, &r.reference_id, "failed", reason, None, None).await?;
                db::release(&mut tx, &crisis, amount).await?;
                if *verify {
                    db::raise_task(
                        &mut tx,
                        &self.tasks_topic,
                        household,
                        &r.reference_id,
                        held.attempt,
                        reason.unwrap_or("unknown"),
                    )
                    .await?;
                }
                None
            }
            Effect::Reverse => {
                db::set_status(&mut tx, &r.reference_id, "reversed", None, None, None).await?;
                db::release(&mut tx, &crisis, amount).await?;
                None
            }
            Effect::Incident(kind) => {
                db::record_incident(&mut tx, &held, &r, kind.as_str(), &event_id).await?;
                warn!(
                    instruction = %r.reference_id,
                    crisis = %crisis,
                    attempt = r.attempt,
                    incident = kind.as_str(),
                    "Payment incident: money moved as the rules forbid; recorded for reconciliation."
                );
                Some(kind.as_str())
            }
            Effect::Ignore(why) => Some(*why),
        };
        db::log_status(&mut tx, &event_id, &r, note.is_none(), note).await?;
        tx.commit().await?;
        match e {
            Effect::Retry => {
                info!(instruction = %r.reference_id, attempt, reason, "Payment rejected; retry scheduled.")
            }
            Effect::Inquire => {
                info!(instruction = %r.reference_id, attempt, reason, "Payment outcome unknown; asked again after the inquiry window.")
            }
            Effect::Hold => {
                warn!(instruction = %r.reference_id, crisis = %crisis, attempt, reason, "Payment outcome unknown on the last attempt; its money stays reserved until the provider answers.")
            }
            _ => {}
        }
        if matches!(e, Effect::Fail { .. } | Effect::Reverse) {
            self.due.money_released([crisis]);
        }
        Ok(Verdict::Done)
    }
}

fn reject(reason: Reason, detail: String) -> Verdict {
    Verdict::Reject(Rejection::new(reason, detail))
}

impl Handler for DisbursementHandler {
    fn event_types(&self) -> &[&str] {
        &self.types
    }

    async fn handle(&self, batch: &[Incoming]) -> Result<Vec<Verdict>> {
        let mut verdicts = Vec::with_capacity(batch.len());
        let mut decisions = Vec::new();
        let mut changed = std::collections::BTreeSet::new();
        let mut statuses = false;
        for m in batch {
            let t = m.envelope.event_type.as_str();
            let v = if CRISIS_EVENTS.contains(&t) {
                match m.envelope.typed::<CrisisEvent>() {
                    Ok(e) => {
                        // The projection and its trace context commit together.
                        let mut tx = self.store.begin().await?;
                        let saved = db::save_crisis(&mut tx, &e, m.envelope.time).await?;
                        if saved.is_some() {
                            // Instructions are created later by the scheduler:
                            // they continue this event's trace through the crisis row.
                            let trace =
                                sumud_shared::telemetry::continuing(m.traceparent.as_deref());
                            sumud_shared::outbox::set_crisis_traceparent(
                                &mut tx,
                                "disbursement",
                                &e.crisis_id,
                                trace.as_deref(),
                            )
                            .await?;
                        }
                        tx.commit().await?;
                        if let Some(kept) = saved.filter(|kept| *kept > e.definition.budget.minor) {
                            warn!(
                                crisis = %e.crisis_id,
                                budget = e.definition.budget.minor,
                                kept,
                                "Budget cut below what is already reserved; instructed money stays reserved, and money it releases is instructed again only within the new budget."
                            );
                        }
                        changed.insert(e.crisis_id);
                        Verdict::Done
                    }
                    Err(r) => Verdict::Reject(r),
                }
            } else if t == ENTITLEMENT_DECIDED {
                match m.envelope.typed::<EntitlementDecision>() {
                    Ok(d) => {
                        let seq = m
                            .envelope
                            .id
                            .rsplit_once('@')
                            .and_then(|(_, s)| s.parse().ok())
                            .unwrap_or(0);
                        changed.insert(d.crisis_id.clone());
                        decisions.push((d, seq));
                        Verdict::Done
                    }
                    Err(r) => Verdict::Reject(r),
                }
            } else if t == TASK_COMMAND {
                let judge = crate::field_command::Judge {
                    store: &self.store,
                    topic: &self.tasks_topic,
                    max_age_secs: self.config.max_command_age_secs,
                    deadline_secs: self.config.deadline_secs,
                };
                let v = judge.judge(m).await?;
                if matches!(v, Verdict::Done) {
                    // A corrected destination re-issues a payment.
                    self.due.request_full_pass();
                }
                v
            } else if TASK_EVENTS.contains(&t) {
                self.task_event(m).await?
            } else {
                statuses = true;
                self.status(m).await?
            };
            verdicts.push(v);
        }
        if !decisions.is_empty() {
            let mut tx = self.store.begin().await?;
            db::save_entitlements(&mut tx, &decisions).await?;
            tx.commit().await?;
        }
        self.due.changed(changed);
        if statuses {
            self.due.request_full_pass();
        }
        Ok(verdicts)
    }
}
