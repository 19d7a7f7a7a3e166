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
use crate::{create, db};

/// The longest a crisis whose last pass found nothing due goes unread by
/// full passes when no tranche of it falls due sooner. What no event marks
/// (a household the registry restores, for one) waits at most this long.
const QUIET_MAX: Duration = Duration::from_secs(60);

/// Crises a full pass may skip, until when: reading what is due costs a
/// large crisis seconds of database time even when nothing is, and nothing
/// falls due between its tranche dates unless an event changes the crisis
/// (served at once, as changed) or money is released (see [`Due`]).
#[derive(Debug, Default)]
struct Quiet(HashMap<String, Instant>);

impl Quiet {
    fn skips(&self, crisis: &str, now: Instant) -> bool {
        self.0.get(crisis).is_some_and(|until| now < *until)
    }

    /// After a pass over `crisis` created `created`: quiet until its next
    /// tranche date (or [`QUIET_MAX`]) if it created nothing.
    async fn after_pass(
        &mut self,
        store: &Store,
        config: &DisbursementConfig,
        crisis: &str,
        created: u64,
    ) -> Result<()> {
        if created > 0 {
            self.0.remove(crisis);
            return Ok(());
        }
        let (activated, now, schedules) = db::tranche_schedule(store, crisis).await?;
        let wait = activated
            .and_then(|a| next_tranche_after(a, now, &schedules, config.day_seconds))
            .and_then(|next| (next - now).to_std().ok())
            // The clock of the next pass is the database's: a little late
            // rather than early.
            .map_or(QUIET_MAX, |w| {
                (w + Duration::from_millis(50)).min(QUIET_MAX)
            });
        self.0.insert(crisis.to_owned(), Instant::now() + wait);
        Ok(())
    }

    fn forget(&mut self, crises: impl IntoIterator<Item = String>) {
        for c in crises {
            self.0.remove(&c);
        }
    }
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
/// `publish` is nudged after each commit that created instructions.
async fn tick(
    store: &Store,
    config: &DisbursementConfig,
    publish: &Notify,
    quiet: &mut Quiet,
) -> Result<u64> {
    let mut changed = 0;
    for crisis in db::active_crises(store).await? {
        let started = Instant::now();
        if quiet.skips(&crisis, started) {
            continue;
        }
        let n = create::create_due(store, &crisis, config, publish).await?;
        if n > 0 {
            info!(
                crisis = %crisis,
                instructions = n,
                seconds = started.elapsed().as_secs_f64(),
                "Instructions created."
            );
        }
        quiet.after_pass(store, config, &crisis, n).await?;
        changed += n;
    }
    Ok(changed + retries_and_deadlines(store, config).await?)
}

/// Re-issues the retries now due and flags instructions past their
/// deadline; returns the attempts re-issued. Both are indexed updates of
/// the few rows concerned, so unlike reading what is due they need no rest
/// after a long pass: a retry waits for its backoff, not for the database.
async fn retries_and_deadlines(store: &Store, config: &DisbursementConfig) -> Result<u64> {
    let reissued = db::reissue_due(store, config.deadline_secs).await?;
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

/// When the scheduler's loop does what: full passes rest after themselves,
/// retries and deadlines do not.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    tick_every: Duration,
    /// When the last full pass finished.
    last_full: Option<Instant>,
    /// No full pass before this.
    rest_until: Instant,
}

/// What one turn of the loop does besides serving changed crises.
#[derive(Debug, PartialEq, Eq)]
struct Turn {
    /// A full pass (which also re-issues retries and flags deadlines).
    full_pass: bool,
    /// Only re-issue retries and flag deadlines (passes are resting).
    retries: bool,
}

impl Cadence {
    fn turn(&self, now: Instant, requested: bool) -> Turn {
        let timer = self.last_full.is_none_or(|t| now >= t + self.tick_every);
        let due = requested || timer;
        let full_pass = due && now >= self.rest_until;
        Turn {
            full_pass,
            retries: due && !full_pass,
        }
    }

    /// When to look again unless woken: the next full pass, or the next
    /// tick for retries while passes rest.
    fn next_wake(&self, now: Instant) -> Instant {
        let next_full = self
            .last_full
            .map_or(now, |t| t + self.tick_every)
            .max(self.rest_until);
        next_full.min(now + self.tick_every)
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
/// Retries and deadlines are served every `tick_ms` (and when asked) even
/// while passes rest. `publish` is nudged when new attempts await
/// publication.
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
    let mut quiet = Quiet::default();
    while !shutdown.is_cancelled() {
        let (crises, requested) = due.take();
        // Changed crises are read now; those with money released, by the
        // next full pass.
        quiet.forget(crises.iter().cloned().chain(due.take_released()));
        let now = Instant::now();
        let cadence = Cadence {
            tick_every,
            last_full,
            rest_until,
        };
        let turn = cadence.turn(now, requested);
        let mut changed = 0;
        if turn.full_pass {
            match tick(&store, &config, &publish, &mut quiet).await {
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
            if turn.retries {
                match retries_and_deadlines(&store, &config).await {
                    Ok(n) => changed += n,
                    Err(e) => warn!(error = %e, "Re-issuing retries failed; will retry."),
                }
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
        let cadence = Cadence {
            tick_every,
            last_full,
            rest_until,
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = due.notify.notified() => {}
            _ = tokio::time::sleep_until(cadence.next_wake(Instant::now()).into()) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{next_tranche_after, Cadence, Turn};
    use chrono::{DateTime, Duration, Utc};

    #[test]
    fn retries_are_served_every_tick_while_a_long_pass_rests() {
        let tick = std::time::Duration::from_millis(250);
        let t0 = std::time::Instant::now();
        // A pass that took 100 s finished at t0: no full pass for 200 s.
        let resting = Cadence {
            tick_every: tick,
            last_full: Some(t0),
            rest_until: t0 + std::time::Duration::from_secs(200),
        };
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let retries_only = Turn {
            full_pass: false,
            retries: true,
        };
        assert_eq!(resting.turn(at(300), false), retries_only);
        assert_eq!(resting.turn(at(100), true), retries_only);
        assert_eq!(
            resting.turn(at(100), false),
            Turn {
                full_pass: false,
                retries: false
            }
        );
        assert_eq!(resting.next_wake(at(300)), at(550));
        // The rest over, a full pass (retries included).
        assert_eq!(
            resting.turn(at(200_000), false),
            Turn {
                full_pass: true,
                retries: false
            }
        );
    }

    #[test]
    fn without_a_rest_the_next_wake_is_the_next_full_pass() {
        let tick = std::time::Duration::from_millis(250);
        let t0 = std::time::Instant::now();
        let fresh = Cadence {
            tick_every: tick,
            last_full: Some(t0),
            rest_until: t0 + std::time::Duration::from_millis(10),
        };
        assert_eq!(fresh.next_wake(t0), t0 + tick);
        let first = Cadence {
            tick_every: tick,
            last_full: None,
            rest_until: t0,
        };
        assert!(first.turn(t0, false).full_pass);
    }

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
}
