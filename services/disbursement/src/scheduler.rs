//! The tranche scheduler: creates instructions as tranches fall due (the
//! first immediately on activation), re-issues scheduled retries, and flags
//! instructions with no final status past their deadline.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sumud_shared::db::Store;
use sumud_shared::Result;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::DisbursementConfig;
use crate::{create, db};

/// One pass over all due work; returns instructions created or re-issued.
/// `publish` is nudged after each commit that created instructions.
pub async fn tick(store: &Store, config: &DisbursementConfig, publish: &Notify) -> Result<u64> {
    let mut changed = 0;
    for crisis in db::active_crises(store).await? {
        let started = Instant::now();
        let n = create::create_due(store, &crisis, config, publish).await?;
        if n > 0 {
            info!(
                crisis = %crisis,
                instructions = n,
                seconds = started.elapsed().as_secs_f64(),
                "Instructions created."
            );
        }
        changed += n;
    }
    changed += db::reissue_due(store, config.deadline_secs).await?;
    let overdue = db::flag_overdue(store).await?;
    if overdue > 0 {
        warn!(
            instructions = overdue,
            "Instructions overdue: no final status before their deadline."
        );
    }
    Ok(changed)
}

/// Crises whose state or entitlements changed since the scheduler last
/// looked, marked by the consumer-loop handler. The scheduler serves them
/// at once, one crisis at a time, so the first tranche of a new crisis does
/// not wait behind a pass over every other active crisis; full passes (later
/// tranches, retries, deadlines) keep their own, rested, cadence.
#[derive(Debug, Default)]
pub struct Due {
    dirty: Mutex<BTreeSet<String>>,
    full: AtomicBool,
    notify: Notify,
}

impl Due {
    /// Marks crises as changed and wakes the scheduler.
    pub fn changed(&self, crises: impl IntoIterator<Item = String>) {
        self.dirty.lock().expect("not poisoned").extend(crises);
        self.notify.notify_one();
    }

    /// Asks for a full pass as soon as the rest period allows (a status
    /// report may have scheduled a retry).
    pub fn request_full_pass(&self) {
        self.full.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn take(&self) -> (BTreeSet<String>, bool) {
        let crises = std::mem::take(&mut *self.dirty.lock().expect("not poisoned"));
        (crises, self.full.swap(false, Ordering::AcqRel))
    }
}

/// Creates what is due for the given crises only.
async fn targeted(
    store: &Store,
    config: &DisbursementConfig,
    publish: &Notify,
    crises: &BTreeSet<String>,
) -> Result<u64> {
    let mut changed = 0;
    for crisis in crises {
        changed += create::create_due(store, crisis, config, publish).await?;
    }
    Ok(changed)
}

/// Runs until `shutdown`: changed crises at once, full passes every
/// `tick_ms` (or when asked) but never sooner than twice the last full pass's
/// duration after it — a pass reads every entitlement of every active
/// crisis, and the database must stay free for publishing what it created.
/// `publish` is nudged when new attempts await publication.
pub async fn run(
    store: Store,
    config: DisbursementConfig,
    due: Arc<Due>,
    publish: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let tick_every = Duration::from_millis(config.tick_ms);
    let mut last_full: Option<Instant> = None;
    let mut rest_until = Instant::now();
    while !shutdown.is_cancelled() {
        let (crises, requested) = due.take();
        let now = Instant::now();
        let timer = last_full.is_none_or(|t| now >= t + tick_every);
        let mut changed = 0;
        if now >= rest_until && (requested || timer) {
            match tick(&store, &config, &publish).await {
                Ok(n) => changed += n,
                Err(e) => warn!(error = %e, "Scheduler pass failed; will retry."),
            }
            let finished = Instant::now();
            rest_until = finished + (finished - now) * 2;
            last_full = Some(finished);
        } else {
            if requested {
                // Not yet: keep the request for when the rest is over.
                due.full.store(true, Ordering::Release);
            }
            if !crises.is_empty() {
                match targeted(&store, &config, &publish, &crises).await {
                    Ok(n) => changed += n,
                    Err(e) => {
                        warn!(error = %e, "Scheduling changed crises failed; the next full pass covers them.")
                    }
                }
            }
        }
        if changed > 0 {
            publish.notify_one();
        }
        let next_full = last_full.map_or(now, |t| t + tick_every).max(rest_until);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = due.notify.notified() => {}
            _ = tokio::time::sleep_until(next_full.into()) => {}
        }
    }
    Ok(())
}
