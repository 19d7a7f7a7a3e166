//! The tranche scheduler: creates instructions as tranches fall due (the
//! first immediately on activation), re-issues scheduled retries, and flags
//! instructions with no final status past their deadline.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sumud_shared::db::Store;
use sumud_shared::Result;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::DisbursementConfig;
use crate::publisher::Handoff;
use crate::{create, db};

/// The longest a crisis whose last pass found nothing due goes unread by
/// full passes when no tranche of it falls due sooner. What no event marks
/// (a household the registry restores, for one) waits at most this long.
const QUIET_MAX: Duration = Duration::from_secs(60);

/// Crises a full pass may skip, until when: reading what is due costs a
/// large crisis seconds of database time even when nothing is, and after a
/// pass nothing falls due until its next tranche date unless an event
/// changes the crisis (served at once, as changed) or money is released
/// (see [`Due`]). A pass creates everything due at its snapshot that the
/// budget allows, so the crisis goes quiet after every pass, not only after
/// one that found nothing: a second pass right after a large one would read
/// every entitlement again to find nothing.
#[derive(Debug, Default)]
struct Quiet {
    /// Until when each crisis is left alone.
    until: HashMap<String, Instant>,
}

impl Quiet {
    fn skips(&self, crisis: &str, now: Instant) -> bool {
        self.until.get(crisis).is_some_and(|until| now < *until)
    }

    /// After a pass over `crisis` that began at `started` (the passes'
    /// clock, [`db::clock`]): quiet for [`quiet_for`].
    async fn after_pass(
        &mut self,
        store: &Store,
        config: &DisbursementConfig,
        crisis: &str,
        started: DateTime<Utc>,
    ) -> Result<()> {
        let (activated, schedules) = db::tranche_schedule(store, crisis).await?;
        let now = db::clock(store).await?;
        match quiet_for(activated, started, now, &schedules, config.day_seconds) {
            Some(wait) => self.until.insert(crisis.to_owned(), Instant::now() + wait),
            None => self.until.remove(crisis),
        };
        Ok(())
    }

    fn forget(&mut self, crises: impl IntoIterator<Item = String>) {
        for c in crises {
            self.until.remove(&c);
        }
    }
}

/// How long full passes may leave a crisis unread after a pass that began
/// at `started` and ended by `now`: until the first tranche date after
/// `started` (a little late rather than early, the clock of the next pass
/// being the database's), at most [`QUIET_MAX`]; `None` if that date has
/// already come — a tranche fell due while the pass was reading.
fn quiet_for(
    activated: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
    schedules: &[(i32, i32)],
    day_seconds: f64,
) -> Option<Duration> {
    let Some(next) = activated.and_then(|a| next_tranche_after(a, started, schedules, day_seconds))
    else {
        return Some(QUIET_MAX);
    };
    let wait = (next - now).to_std().ok()?;
    Some((wait + Duration::from_millis(50)).min(QUIET_MAX))
}

/// When the next tranche of a crisis activated at `activated` falls due
/// after `now`. Tranche t of an entitlement is due (t − 1) × its interval
/// in days after activation, a day being `day_seconds`, as the instruction
/// pass reckons it; `schedules` holds each (interval in days, most
/// tranches) of its entitled entitlements. `None` if every tranche is due.
fn next_tranche_after(
    activated: DateTime<Utc>,
    now: DateTime<Utc>,
    schedules: &[(i32, i32)],
    day_seconds: f64,
) -> Option<DateTime<Utc>> {
    let elapsed = (now - activated).num_microseconds()? as f64 / 1e6;
    schedules
        .iter()
        .filter_map(|&(interval_days, tranches)| {
            let step = f64::from(interval_days) * day_seconds;
            if step <= 0.0 {
                return None;
            }
            // The first tranche index (t − 1) not yet due.
            let k = (elapsed.max(0.0) / step).floor() + 1.0;
            (k < f64::from(tranches))
                .then(|| activated + chrono::Duration::microseconds((k * step * 1e6) as i64))
        })
        .min()
}

/// One pass over all due work; returns instructions created or re-issued.
/// Committed chunks go to the relay through `handoff`.
async fn tick(
    store: &Store,
    config: &DisbursementConfig,
    handoff: &Handoff,
    quiet: &mut Quiet,
) -> Result<u64> {
    let mut changed = 0;
    for crisis in db::active_crises(store).await? {
        if quiet.skips(&crisis, Instant::now()) {
            continue;
        }
        changed += isolated(
            store,
            pass(store, config, handoff, quiet, &crisis).await,
            quiet,
            &crisis,
        )
        .await?;
    }
    Ok(changed + retries_and_deadlines(store, config, handoff).await?)
}

/// How long a crisis whose pass failed for a reason of its own is left
/// alone before it is tried again.
const FAILED_PAUSE: Duration = Duration::from_secs(60);

/// The outcome of one crisis's pass, kept to that crisis: a failure of its
/// own (its data breaks a constraint, say) is logged, counted, recorded on
/// the crisis for the dashboard, and tried again after [`FAILED_PAUSE`],
/// while every other crisis keeps paying; a transient failure (the
/// database away) is the whole pass's, as before. The next pass that
/// succeeds clears the crisis's last error.
async fn isolated(
    store: &Store,
    outcome: Result<u64>,
    quiet: &mut Quiet,
    crisis: &str,
) -> Result<u64> {
    match outcome {
        Ok(n) => {
            // One indexed update that finds nothing unless the crisis was
            // failing (also before a restart).
            if db::pass_recovered(store, crisis).await? {
                info!(crisis = %crisis, "A pass over this crisis succeeded again.");
            }
            Ok(n)
        }
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => {
            warn!(
                crisis = %crisis,
                error = %e,
                retry_s = FAILED_PAUSE.as_secs(),
                "A pass over this crisis failed; the other crises go on, and it is tried again later."
            );
            sumud_shared::metrics::Metrics::global()
                .crisis_pass_failures
                .get_or_create(&sumud_shared::metrics::CrisisLabels {
                    crisis: crisis.to_owned(),
                })
                .inc();
            quiet
                .until
                .insert(crisis.to_owned(), Instant::now() + FAILED_PAUSE);
            // Best effort: the record is for people; the pause holds anyway.
            if let Err(again) = db::pass_failed(store, crisis, &e.to_string()).await {
                warn!(crisis = %crisis, error = %again, "The failed pass could not be recorded on the crisis.");
            }
            Ok(0)
        }
    }
}

/// One pass over one crisis, after which it is quiet (see [`Quiet`]).
async fn pass(
    store: &Store,
    config: &DisbursementConfig,
    handoff: &Handoff,
    quiet: &mut Quiet,
    crisis: &str,
) -> Result<u64> {
    let started = Instant::now();
    // Before the pass, so no later than its snapshot: what falls due after
    // this moment is left to the next pass.
    let clock = db::clock(store).await?;
    let n = create::create_due(store, crisis, config, handoff).await?;
    if n > 0 {
        info!(
            crisis = %crisis,
            instructions = n,
            seconds = started.elapsed().as_secs_f64(),
            "Instructions created."
        );
    }
    quiet.after_pass(store, config, crisis, clock).await?;
    Ok(n)
}

/// Re-issues the retries now due and flags instructions past their
/// deadline; returns the attempts re-issued. Both are indexed updates of
/// the few rows concerned, so unlike reading what is due they need no rest
/// after a long pass: a retry waits for its backoff, not for the database.
/// The relay is nudged to read back the batches of re-issued attempts.
async fn retries_and_deadlines(
    store: &Store,
    config: &DisbursementConfig,
    handoff: &Handoff,
) -> Result<u64> {
    // First end the retries that must not go out (crisis closed,
    // entitlement cancelled): nothing is re-issued for them.
    let stopped = db::stop_retries(store).await?;
    if !stopped.failed.is_empty() {
        let crises: BTreeSet<&str> = stopped.failed.iter().map(|(_, c, _)| c.as_str()).collect();
        info!(
            instructions = stopped.failed.len(),
            crises = ?crises,
            "Scheduled retries ended: their crisis is closed or their entitlement cancelled; money released."
        );
    }
    if !stopped.held.is_empty() {
        let crises: BTreeSet<&str> = stopped.held.iter().map(|(_, c, _)| c.as_str()).collect();
        warn!(
            instructions = stopped.held.len(),
            crises = ?crises,
            "Scheduled inquiries held: their crisis is closed or their entitlement cancelled, and their outcome is unknown; money stays reserved until the provider answers."
        );
    }
    let reissued = db::reissue_due(store, config.deadline_secs).await?;
    if reissued > 0 {
        handoff.nudge();
    }
    let overdue = db::flag_overdue(store).await?;
    if overdue > 0 {
        warn!(
            instructions = overdue,
            "Instructions overdue: no final status before their deadline."
        );
    }
    Ok(reissued)
}

/// Crises whose state or entitlements changed since the scheduler last
/// looked, marked by the consumer-loop handler. The scheduler serves them
/// at once, one crisis at a time, so the first tranche of a new crisis does
/// not wait behind a pass over every other active crisis; full passes (later
/// tranches) keep their own, rested, cadence.
#[derive(Debug, Default)]
pub struct Due {
    dirty: Mutex<BTreeSet<String>>,
    released: Mutex<BTreeSet<String>>,
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

    /// Marks crises whose budget had money released (a failed or reversed
    /// payment): a pass the budget cut short may go on, so the next full
    /// pass reads them even if they were quiet.
    pub fn money_released(&self, crises: impl IntoIterator<Item = String>) {
        self.released.lock().expect("not poisoned").extend(crises);
    }

    fn take_released(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.released.lock().expect("not poisoned"))
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
    handoff: &Handoff,
    quiet: &mut Quiet,
    crises: &BTreeSet<String>,
) -> Result<u64> {
    let mut changed = 0;
    for crisis in crises {
        changed += isolated(
            store,
            pass(store, config, handoff, quiet, crisis).await,
            quiet,
            crisis,
        )
        .await?;
    }
    Ok(changed)
}

/// Runs until `shutdown`: changed crises at once, full passes every
/// `tick_ms` (or when asked) but never sooner than twice the last full pass's
/// duration after it — a pass reads every entitlement of every active
/// crisis, and the database must stay free for publishing what it created.
/// Retries and deadlines are served every `tick_ms` (and when asked) even
/// while passes rest. What is created goes to the relay through `handoff`.
pub async fn run(
    store: Store,
    config: DisbursementConfig,
    due: Arc<Due>,
    handoff: Handoff,
    shutdown: CancellationToken,
) -> Result<()> {
    let tick_every = Duration::from_millis(config.tick_ms);
    let mut last_full: Option<Instant> = None;
    let mut rest_until = Instant::now();
    let mut quiet = Quiet::default();
    while !shutdown.is_cancelled() {
        let (crises, requested) = due.take();
        // Changed crises are read now; those with money released, by the
        // next full pass.
        quiet.forget(crises.iter().cloned().chain(due.take_released()));
        let now = Instant::now();
        let timer = last_full.is_none_or(|t| now >= t + tick_every);
        if now >= rest_until && (requested || timer) {
            if let Err(e) = tick(&store, &config, &handoff, &mut quiet).await {
                warn!(error = %e, "Scheduler pass failed; will retry.");
            }
            let finished = Instant::now();
            rest_until = finished + (finished - now) * 2;
            last_full = Some(finished);
        } else {
            if requested {
                // Not yet: keep the request for when the rest is over.
                due.full.store(true, Ordering::Release);
            }
            if requested || timer {
                if let Err(e) = retries_and_deadlines(&store, &config, &handoff).await {
                    warn!(error = %e, "Re-issuing retries failed; will retry.");
                }
            }
            if !crises.is_empty() {
                if let Err(e) = targeted(&store, &config, &handoff, &mut quiet, &crises).await {
                    warn!(error = %e, "Scheduling changed crises failed; the next full pass covers them.");
                }
            }
        }
        let next_full = last_full.map_or(now, |t| t + tick_every).max(rest_until);
        // While passes rest, wake every tick for retries and deadlines.
        let next = next_full.min(Instant::now() + tick_every);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = due.notify.notified() => {}
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{next_tranche_after, quiet_for, QUIET_MAX};
    use chrono::{DateTime, Duration, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_next_tranche_is_the_first_whose_date_is_still_ahead() {
        let activated = at("2026-11-01T00:00:00Z");
        let day = 86_400.0;
        // Three tranches 30 days apart: due on day 0, 30 and 60.
        let next = |now| next_tranche_after(activated, now, &[(30, 3)], day);
        assert_eq!(next(activated), Some(activated + Duration::days(30)));
        assert_eq!(
            next(at("2026-11-20T00:00:00Z")),
            Some(activated + Duration::days(30))
        );
        // On the date itself the tranche is due: the next one is ahead.
        assert_eq!(
            next(activated + Duration::days(30)),
            Some(activated + Duration::days(60))
        );
        assert_eq!(next(activated + Duration::days(60)), None);
        assert_eq!(next(activated + Duration::days(400)), None);
    }

    #[test]
    fn the_soonest_schedule_decides_and_single_or_instant_schedules_never_wait() {
        let activated = at("2026-11-01T00:00:00Z");
        let now = activated + Duration::days(10);
        let both = next_tranche_after(activated, now, &[(30, 3), (7, 4)], 86_400.0);
        assert_eq!(both, Some(activated + Duration::days(14)));
        assert_eq!(
            next_tranche_after(activated, now, &[(30, 1), (0, 5)], 86_400.0),
            None
        );
        assert_eq!(next_tranche_after(activated, now, &[], 86_400.0), None);
        // Test schedules run days in fractions of a second.
        assert_eq!(
            next_tranche_after(activated, activated, &[(30, 2)], 0.05),
            Some(activated + Duration::milliseconds(1500))
        );
    }

    #[test]
    fn a_crisis_is_quiet_after_a_pass_until_the_tranche_after_the_pass_began() {
        let activated = at("2026-11-01T00:00:00Z");
        let day = 86_400.0;
        let started = activated + Duration::days(10);
        let now = started + Duration::seconds(3);
        // Next tranche on day 30: quiet, but never longer than QUIET_MAX.
        assert_eq!(
            quiet_for(Some(activated), started, now, &[(30, 3)], day),
            Some(QUIET_MAX)
        );
        // Due 20 s after the pass ended: quiet until then (and 50 ms).
        let soon = activated + Duration::days(30) - Duration::seconds(23);
        assert_eq!(
            quiet_for(
                Some(activated),
                soon,
                soon + Duration::seconds(3),
                &[(30, 3)],
                day
            ),
            Some(std::time::Duration::from_millis(20_050))
        );
        // Every tranche due, or no activation: nothing more can fall due.
        assert_eq!(
            quiet_for(Some(activated), started, now, &[(30, 1)], day),
            Some(QUIET_MAX)
        );
        assert_eq!(
            quiet_for(None, started, now, &[(30, 3)], day),
            Some(QUIET_MAX)
        );
    }

    #[test]
    fn a_tranche_that_fell_due_while_the_pass_read_keeps_the_crisis_awake() {
        let activated = at("2026-11-01T00:00:00Z");
        // Tranche 2 falls due 1 s into a 3 s pass: its snapshot missed it.
        let started = activated + Duration::days(30) - Duration::seconds(1);
        let now = started + Duration::seconds(3);
        assert_eq!(
            quiet_for(Some(activated), started, now, &[(30, 3)], 86_400.0),
            None
        );
    }
}
