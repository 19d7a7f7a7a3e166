//! Whether a service's consumer is really consuming: a member of its group
//! with an assignment (or told it has none), and moving through a non-empty
//! backlog. `/readyz` reports it, `/metrics` exports it, and the consumer
//! loop recreates a consumer that has not joined within a bound.
//!
//! Why this exists: a broker being reachable (the metadata probe) says
//! nothing about the group. A consumer whose coordinator connection wedged
//! after a broker restart answered "ready" for fourteen minutes while it
//! never joined its group (issue 25); readiness now says so, and the loop
//! heals it.
//!
//! The rebalance callback ([`HealthContext`]) records joins and revocations;
//! the loop's periodic lag report records positions and lag. Everything
//! else is pure arithmetic over those observations and the clock, so the
//! rules are unit-tested without a broker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use serde_json::{json, Value};
use tracing::{info, warn};

/// How long a consumer may stay outside its group, and how long it may sit
/// on a backlog without moving, before it is no longer healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Longest time from creation (or a revocation) to an assignment
    /// (`SUMUD_CONSUMER_JOIN_SECS`); past it the loop recreates the consumer.
    pub join_within: Duration,
    /// Longest time positions may stand still while lag is positive
    /// (`SUMUD_CONSUMER_STALL_SECS`); past it the service is not ready.
    pub stall_after: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            join_within: Duration::from_secs(120),
            stall_after: Duration::from_secs(120),
        }
    }
}

/// One consumer's membership and progress, shared by the loop, its
/// rebalance callback and the readiness probe.
#[derive(Debug)]
pub struct ConsumerHealth {
    group: String,
    bounds: Bounds,
    state: Mutex<State>,
}

#[derive(Debug, Clone)]
struct State {
    /// Since when the consumer has been outside its group (created, or its
    /// partitions revoked); `None` while it holds an assignment.
    outside_since: Option<Instant>,
    /// Partitions of the latest assignment.
    partitions: usize,
    /// The sum of positions at the last successful lag report, and since
    /// when it has not changed while lag was positive.
    positions: Option<i64>,
    stuck_since: Option<Instant>,
    /// Total lag at the last successful report.
    lag: i64,
    /// How often the loop recreated its consumer.
    recreated: u64,
    /// Since when the handler has been working on the current batch; a
    /// consumer outside its group with a handler busy this long is held
    /// out by the handler (the fetcher polls only between batches).
    handling_since: Option<Instant>,
}

impl State {
    /// Out of the group: no partitions, and no story of progress.
    fn leave(&mut self) {
        self.partitions = 0;
        self.positions = None;
        self.stuck_since = None;
    }
}

/// What the probe says about a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A member with `partitions` partitions (possibly none) that keeps up.
    Consuming {
        /// Partitions assigned.
        partitions: usize,
    },
    /// Not (or no longer) a member of its group, for this long.
    Joining(Duration),
    /// A member whose positions have not moved for this long with `lag`
    /// messages waiting.
    Stalled {
        /// How long nothing moved.
        for_: Duration,
        /// Messages waiting.
        lag: i64,
    },
}

impl Verdict {
    /// Whether a service with this consumer may say it is ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, Verdict::Consuming { .. })
    }
}

impl ConsumerHealth {
    /// A consumer of `group` that has just been created.
    pub fn new(group: impl Into<String>, bounds: Bounds) -> Arc<Self> {
        Arc::new(ConsumerHealth {
            group: group.into(),
            bounds,
            state: Mutex::new(State {
                outside_since: Some(Instant::now()),
                partitions: 0,
                positions: None,
                stuck_since: None,
                lag: 0,
                recreated: 0,
                handling_since: None,
            }),
        })
    }

    /// The consumer group watched.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The bounds in force.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain numbers behind: use them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group gave this consumer `partitions` partitions (0 is an answer
    /// too: more members than partitions).
    pub fn assigned(&self, partitions: usize) {
        let mut s = self.lock();
        s.outside_since = None;
        s.partitions = partitions;
        // A new assignment starts a new story of progress.
        s.positions = None;
        s.stuck_since = None;
    }

    /// The group took the partitions back (a rebalance begins).
    pub fn revoked(&self) {
        let mut s = self.lock();
        s.outside_since.get_or_insert(Instant::now());
        s.leave();
    }

    /// A new consumer replaces the old one: outside the group again, with a
    /// bound of its own from now.
    pub fn recreated(&self) {
        let mut s = self.lock();
        s.recreated += 1;
        s.outside_since = Some(Instant::now());
        s.leave();
    }

    /// The handler took a batch (`true`) or is done with it (`false`).
    pub fn handling(&self, busy: bool) {
        self.lock().handling_since = busy.then(Instant::now);
    }

    /// A lag report: the sum of the consumer's positions over its assigned
    /// partitions and the total lag, seen `at`.
    pub fn observed(&self, positions: i64, lag: i64, at: Instant) {
        let mut s = self.lock();
        let moved = s.positions != Some(positions);
        s.positions = Some(positions);
        s.lag = lag;
        if lag <= 0 {
            s.stuck_since = None;
        } else if moved {
            // Standing here, with messages waiting, from now on.
            s.stuck_since = Some(at);
        } else {
            s.stuck_since.get_or_insert(at);
        }
    }

    /// A lag report failed (broker away): the next success starts afresh,
    /// so an outage does not count as a stall of the consumer's own.
    pub fn unobserved(&self) {
        let mut s = self.lock();
        s.positions = None;
        s.stuck_since = None;
    }

    /// How long the consumer has been outside its group, if it is.
    pub fn outside_for(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .outside_since
            .map(|t| now.saturating_duration_since(t))
    }

    /// Whether the loop should give up on this consumer and make another.
    pub fn should_recreate(&self, now: Instant) -> bool {
        self.outside_for(now)
            .is_some_and(|d| d > self.bounds.join_within)
    }

    /// How often the loop recreated its consumer.
    pub fn recreations(&self) -> u64 {
        self.lock().recreated
    }

    /// The verdict at `now`.
    pub fn verdict(&self, now: Instant) -> Verdict {
        let s = self.lock().clone();
        if let Some(t) = s.outside_since {
            return Verdict::Joining(now.saturating_duration_since(t));
        }
        if let Some(t) = s.stuck_since {
            let for_ = now.saturating_duration_since(t);
            if for_ > self.bounds.stall_after {
                return Verdict::Stalled { for_, lag: s.lag };
            }
        }
        Verdict::Consuming {
            partitions: s.partitions,
        }
    }

    /// The verdict as `/readyz` shows it: "ok" or what is wrong, with the
    /// group, partitions and lag.
    pub fn report(&self, now: Instant) -> (bool, Value) {
        let v = self.verdict(now);
        let (lag, recreated, handling) = {
            let s = self.lock();
            (
                s.lag,
                s.recreated,
                s.handling_since
                    .map(|t| now.saturating_duration_since(t).as_secs()),
            )
        };
        let status = match &v {
            Verdict::Consuming { .. } => "ok".to_owned(),
            Verdict::Joining(d) => format!(
                "not a member of group {} for {} s (the consumer is recreated after {} s)",
                self.group,
                d.as_secs(),
                self.bounds.join_within.as_secs()
            ),
            Verdict::Stalled { for_, lag } => format!(
                "no progress for {} s with {lag} messages waiting",
                for_.as_secs()
            ),
        };
        let partitions = match v {
            Verdict::Consuming { partitions } => partitions,
            _ => 0,
        };
        (
            v.is_ready(),
            json!({
                "status": status,
                "group": self.group,
                "partitions": partitions,
                "lag": lag,
                "recreated": recreated,
                "handling_s": handling,
            }),
        )
    }
}

/// The consumer's librdkafka context: records rebalances in the health.
pub struct HealthContext {
    /// Where joins and revocations are recorded.
    pub health: Arc<ConsumerHealth>,
}

impl ClientContext for HealthContext {}

impl ConsumerContext for HealthContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(group = %self.health.group, partitions = tpl.count(), "Joined the group.");
                self.health.assigned(tpl.count());
            }
            Rebalance::Revoke(tpl) => {
                info!(group = %self.health.group, partitions = tpl.count(), "Partitions revoked; rejoining.");
                self.health.revoked();
            }
            Rebalance::Error(e) => {
                warn!(group = %self.health.group, error = %e, "Rebalance failed.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            join_within: Duration::from_secs(120),
            stall_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_new_consumer_is_joining_until_assigned_even_an_empty_assignment() {
        let h = ConsumerHealth::new("g", bounds());
        let t0 = Instant::now();
        assert!(matches!(h.verdict(t0), Verdict::Joining(_)));
        assert!(!h.verdict(t0).is_ready());
        h.assigned(0);
        assert_eq!(h.verdict(t0), Verdict::Consuming { partitions: 0 });
    }

    #[test]
    fn a_consumer_outside_its_group_past_the_bound_is_recreated_and_starts_over() {
        let h = ConsumerHealth::new("g", bounds());
        let t0 = Instant::now();
        assert!(!h.should_recreate(t0 + Duration::from_secs(119)));
        assert!(h.should_recreate(t0 + Duration::from_secs(121)));
        h.recreated();
        assert_eq!(h.recreations(), 1);
        // The new consumer has a bound of its own, from its creation.
        let t1 = Instant::now();
        assert!(!h.should_recreate(t1 + Duration::from_secs(119)));
        assert!(h.should_recreate(t1 + Duration::from_secs(121)));
        h.assigned(3);
        assert!(!h.should_recreate(t0 + Duration::from_secs(500)));
        h.revoked();
        assert!(matches!(h.verdict(Instant::now()), Verdict::Joining(_)));
    }

    #[test]
    fn the_report_says_how_long_the_handler_has_held_its_batch() {
        let h = ConsumerHealth::new("g", bounds());
        let (_, idle) = h.report(Instant::now());
        assert!(idle["handling_s"].is_null(), "{idle}");
        h.handling(true);
        let (_, busy) = h.report(Instant::now() + Duration::from_secs(42));
        assert_eq!(busy["handling_s"], 42, "{busy}");
        h.handling(false);
        let (_, done) = h.report(Instant::now());
        assert!(done["handling_s"].is_null(), "{done}");
    }

    #[test]
    fn standing_positions_with_lag_stall_only_past_the_bound() {
        let h = ConsumerHealth::new("g", bounds());
        h.assigned(3);
        let t0 = Instant::now();
        h.observed(100, 50, t0);
        h.observed(100, 50, t0 + Duration::from_secs(30));
        assert!(h.verdict(t0 + Duration::from_secs(59)).is_ready());
        assert_eq!(
            h.verdict(t0 + Duration::from_secs(61)),
            Verdict::Stalled {
                for_: Duration::from_secs(61),
                lag: 50
            }
        );
        // Moving again heals it.
        h.observed(120, 30, t0 + Duration::from_secs(62));
        assert!(h.verdict(t0 + Duration::from_secs(100)).is_ready());
    }

    #[test]
    fn standing_positions_without_lag_are_idle_not_stalled() {
        let h = ConsumerHealth::new("g", bounds());
        h.assigned(3);
        let t0 = Instant::now();
        h.observed(100, 0, t0);
        h.observed(100, 0, t0 + Duration::from_secs(300));
        assert!(h.verdict(t0 + Duration::from_secs(600)).is_ready());
    }

    #[test]
    fn a_failed_report_restarts_the_stall_clock() {
        let h = ConsumerHealth::new("g", bounds());
        h.assigned(3);
        let t0 = Instant::now();
        h.observed(100, 50, t0);
        h.unobserved();
        h.observed(100, 50, t0 + Duration::from_secs(100));
        assert!(h.verdict(t0 + Duration::from_secs(120)).is_ready());
    }

    #[test]
    fn the_report_names_the_group_and_why() {
        let h = ConsumerHealth::new("sumud-registry", bounds());
        let (ready, body) = h.report(Instant::now());
        assert!(!ready);
        let status = body["status"].as_str().unwrap();
        assert!(
            status.contains("not a member of group sumud-registry"),
            "{status}"
        );
        h.assigned(2);
        let (ready, body) = h.report(Instant::now());
        assert!(ready);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["partitions"], 2);
    }
}
