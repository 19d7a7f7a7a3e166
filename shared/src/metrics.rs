//! Prometheus metrics of a process: one registry, filled by the consumer
//! loop and the producer (so every service reports the same families the
//! same way) and read by `/metrics` (`http.rs`). Names follow Prometheus
//! conventions (`_total`, `_seconds`, base units; money in
//! `_minor_units` of the label's currency); labels never carry household
//! or instruction ids — a crisis id is the finest grain.
//!
//! Figures that live in the database (crises, entitlements, instructions
//! and amounts by crisis and status) are gauges refreshed when scraped: a
//! service registers a refresher with [`on_scrape`], and `/metrics` runs
//! every refresher of the process before rendering.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A service and a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Service name.
    pub service: String,
    /// Topic name.
    pub topic: String,
}

/// A dead letter's origin and reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// Service that rejected the message.
    pub service: String,
    /// Topic it came from.
    pub topic: String,
    /// Reason code (`schema_invalid`, …).
    pub reason: String,
}

/// A consumed partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Service (consumer group) name.
    pub service: String,
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: String,
}

/// A produced-to topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProducedLabels {
    /// Topic name.
    pub topic: String,
}

/// A service alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service name.
    pub service: String,
}

/// A database pool's connections by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Service name.
    pub service: String,
    /// `idle` or `in_use`.
    pub state: String,
}

/// A crisis alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrisisLabels {
    /// Crisis id.
    pub crisis: String,
}

/// A crisis state alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `proposed`, `active` or `closed`.
    pub state: String,
}

/// A crisis and a status of its entitlements or instructions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrisisStatusLabels {
    /// Crisis id.
    pub crisis: String,
    /// Entitlement or instruction status.
    pub status: String,
}

/// An amount of a crisis in one currency and state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrisisAmountLabels {
    /// Crisis id.
    pub crisis: String,
    /// ISO 4217 currency of the minor units.
    pub currency: String,
    /// What the amount is (see the family's help).
    pub status: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric family of the process.
pub struct Metrics {
    registry: Registry,
    /// Messages taken from a topic by a service's consumer loop.
    pub consumed: Family<TopicLabels, Counter>,
    /// Messages set aside on the dead-letter topic, by reason.
    pub dead_lettered: Family<DeadLetterLabels, Counter>,
    /// Messages acknowledged by Kafka, by topic.
    pub produced: Family<ProducedLabels, Counter>,
    /// Time to handle one batch (decode excluded).
    pub batch_seconds: Histograms<ServiceLabels>,
    /// High watermark minus the consumer's position, per partition.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// 1 while a service's consumer is a member of its group that keeps
    /// up, 0 while it is joining or stalled (`/readyz` says which).
    pub consumer_ready: Family<ServiceLabels, Gauge>,
    /// Consumers made anew because the old one never joined its group.
    pub consumers_recreated: Family<ServiceLabels, Counter>,
    /// Disbursement passes over one crisis that failed for a reason of
    /// that crisis's own (the others went on).
    pub crisis_pass_failures: Family<CrisisLabels, Counter>,
    /// Database connections by state (set when scraped).
    pub db_connections: Family<PoolLabels, Gauge>,
    /// Rows waiting in a service's outbox (set when scraped).
    pub outbox_backlog: Family<ServiceLabels, Gauge>,
    /// Crises by state (eligibility's projection; set when scraped).
    pub crises: Family<StateLabels, Gauge>,
    /// Entitlements by crisis and status (set when scraped).
    pub entitlements: Family<CrisisStatusLabels, Gauge>,
    /// Budget held by entitlements, by crisis, currency and status (set when
    /// scraped; only `entitled` holds any).
    pub entitlements_committed: Family<CrisisAmountLabels, Gauge>,
    /// Instructions by crisis and status (set when scraped).
    pub instructions: Family<CrisisStatusLabels, Gauge>,
    /// Money per crisis and currency: `instructed` (every instruction),
    /// `paid` (succeeded), `failed` (failed or reversed) (set when scraped).
    pub payment_amounts: Family<CrisisAmountLabels, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sumud");
        let consumed = Family::<TopicLabels, Counter>::default();
        let dead_lettered = Family::<DeadLetterLabels, Counter>::default();
        let produced = Family::<ProducedLabels, Counter>::default();
        let batch_seconds: Histograms<ServiceLabels> =
            Family::new_with_constructor(latency_histogram);
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        let consumer_ready = Family::<ServiceLabels, Gauge>::default();
        let consumers_recreated = Family::<ServiceLabels, Counter>::default();
        let crisis_pass_failures = Family::<CrisisLabels, Counter>::default();
        let db_connections = Family::<PoolLabels, Gauge>::default();
        let outbox_backlog = Family::<ServiceLabels, Gauge>::default();
        let crises = Family::<StateLabels, Gauge>::default();
        let entitlements = Family::<CrisisStatusLabels, Gauge>::default();
        let entitlements_committed = Family::<CrisisAmountLabels, Gauge>::default();
        let instructions = Family::<CrisisStatusLabels, Gauge>::default();
        let payment_amounts = Family::<CrisisAmountLabels, Gauge>::default();
        registry.register(
            "messages_consumed",
            "Messages taken from a topic by a service's consumer loop",
            consumed.clone(),
        );
        registry.register(
            "messages_dead_lettered",
            "Messages set aside on the dead-letter topic, by reason code",
            dead_lettered.clone(),
        );
        registry.register(
            "messages_produced",
            "Messages acknowledged by Kafka, by topic",
            produced.clone(),
        );
        registry.register(
            "batch_processing_seconds",
            "Time a service's handler took for one batch",
            batch_seconds.clone(),
        );
        registry.register(
            "consumer_lag_messages",
            "High watermark minus the consumer's position, per partition",
            consumer_lag.clone(),
        );
        registry.register(
            "consumer_ready",
            "1 while a service's consumer is a member of its group that keeps up, 0 while joining or stalled",
            consumer_ready.clone(),
        );
        registry.register(
            "consumers_recreated",
            "Consumers made anew because the old one did not join its group in time",
            consumers_recreated.clone(),
        );
        registry.register(
            "crisis_pass_failures",
            "Disbursement passes over one crisis that failed for a reason of its own; the other crises went on",
            crisis_pass_failures.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by state",
            db_connections.clone(),
        );
        registry.register(
            "outbox_backlog_rows",
            "Rows in a service's outbox not yet acknowledged by Kafka",
            outbox_backlog.clone(),
        );
        registry.register("crises", "Crises by state", crises.clone());
        registry.register(
            "entitlements",
            "Entitlements by crisis and status",
            entitlements.clone(),
        );
        registry.register(
            "entitlements_committed_minor_units",
            "Crisis budget held by entitlements, in minor units of the currency",
            entitlements_committed.clone(),
        );
        registry.register(
            "instructions",
            "Payment instructions by crisis and status",
            instructions.clone(),
        );
        registry.register(
            "payment_amount_minor_units",
            "Money instructed, paid and failed per crisis, in minor units of the currency",
            payment_amounts.clone(),
        );
        Metrics {
            registry,
            consumed,
            dead_lettered,
            produced,
            batch_seconds,
            consumer_lag,
            consumer_ready,
            consumers_recreated,
            crisis_pass_failures,
            db_connections,
            outbox_backlog,
            crises,
            entitlements,
            entitlements_committed,
            instructions,
            payment_amounts,
        }
    }

    /// The process's metrics.
    pub fn global() -> &'static Metrics {
        &METRICS
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts consumed messages.
    pub fn count_consumed(&self, service: &str, topic: &str, n: u64) {
        self.consumed
            .get_or_create(&TopicLabels {
                service: service.to_owned(),
                topic: topic.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts one dead letter.
    pub fn count_dead_letter(&self, service: &str, topic: &str, reason: &str) {
        self.dead_lettered
            .get_or_create(&DeadLetterLabels {
                service: service.to_owned(),
                topic: topic.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// Every family registered above, as (name without the `sumud_` prefix,
/// OpenMetrics type): what dashboards and alert rules may query. A unit test
/// keeps it equal to what the registry exposes.
pub const FAMILIES: &[(&str, &str)] = &[
    ("messages_consumed", "counter"),
    ("messages_dead_lettered", "counter"),
    ("messages_produced", "counter"),
    ("batch_processing_seconds", "histogram"),
    ("consumer_lag_messages", "gauge"),
    ("consumer_ready", "gauge"),
    ("consumers_recreated", "counter"),
    ("crisis_pass_failures", "counter"),
    ("db_pool_connections", "gauge"),
    ("outbox_backlog_rows", "gauge"),
    ("crises", "gauge"),
    ("entitlements", "gauge"),
    ("entitlements_committed_minor_units", "gauge"),
    ("instructions", "gauge"),
    ("payment_amount_minor_units", "gauge"),
];

/// The sample names a query may use (`sumud_…_total` for counters,
/// `_bucket`/`_sum`/`_count` for histograms, the name for gauges).
pub fn sample_names() -> Vec<String> {
    let mut out = Vec::new();
    for (name, kind) in FAMILIES {
        match *kind {
            "counter" => out.push(format!("sumud_{name}_total")),
            "histogram" => {
                for s in ["bucket", "sum", "count"] {
                    out.push(format!("sumud_{name}_{s}"));
                }
            }
            _ => out.push(format!("sumud_{name}")),
        }
    }
    out
}

/// A refresher of database-backed gauges, run when `/metrics` is scraped.
pub type Refresher = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The refreshers of the process, each until its service stops.
static REFRESHERS: Mutex<Vec<(CancellationToken, Refresher)>> = Mutex::new(Vec::new());

/// How long a scrape waits for the refreshers.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(3);

/// Registers `refresh` to run on every scrape until `until` is cancelled (the
/// service's shutdown): several services in one process each keep theirs.
pub fn on_scrape<F, Fut>(until: CancellationToken, refresh: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let boxed: Refresher = Box::new(move || Box::pin(refresh()));
    REFRESHERS
        .lock()
        .expect("not poisoned")
        .push((until, boxed));
}

/// Runs every live refresher (at most [`REFRESH_TIMEOUT`]); called by
/// `/metrics` before rendering.
pub async fn refresh() {
    let pending: Vec<BoxFuture<'static, ()>> = {
        let mut all = REFRESHERS.lock().expect("not poisoned");
        all.retain(|(until, _)| !until.is_cancelled());
        all.iter().map(|(_, f)| f()).collect()
    };
    if pending.is_empty() {
        return;
    }
    let _ = tokio::time::timeout(REFRESH_TIMEOUT, futures::future::join_all(pending)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_messages_appear_in_the_exposition_with_their_labels() {
        let m = Metrics::global();
        m.count_consumed("metrics-test", "t.v1", 3);
        m.count_dead_letter("metrics-test", "t.v1", "schema_invalid");
        m.batch_seconds
            .get_or_create(&ServiceLabels {
                service: "metrics-test".into(),
            })
            .observe(0.004);
        let text = m.render();
        assert!(
            text.contains(
                r#"sumud_messages_consumed_total{service="metrics-test",topic="t.v1"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"sumud_messages_dead_lettered_total{service="metrics-test",topic="t.v1",reason="schema_invalid"} 1"#
        ));
        assert!(text.contains(r#"sumud_batch_processing_seconds_count{service="metrics-test"} 1"#));
    }

    #[test]
    fn the_list_of_families_is_what_the_registry_exposes() {
        let m = Metrics::global();
        let (crisis, status) = ("unit-crisis".to_owned(), "entitled".to_owned());
        let amount = CrisisAmountLabels {
            crisis: crisis.clone(),
            currency: "JOD".into(),
            status: status.clone(),
        };
        let by_status = CrisisStatusLabels { crisis, status };
        let service = ServiceLabels {
            service: "unit".into(),
        };
        m.count_consumed("unit", "t.v1", 1);
        m.count_dead_letter("unit", "t.v1", "not_json");
        m.produced
            .get_or_create(&ProducedLabels {
                topic: "t.v1".into(),
            })
            .inc();
        m.batch_seconds.get_or_create(&service).observe(0.1);
        m.consumer_lag
            .get_or_create(&PartitionLabels {
                service: "unit".into(),
                topic: "t.v1".into(),
                partition: "0".into(),
            })
            .set(0);
        m.db_connections
            .get_or_create(&PoolLabels {
                service: "unit".into(),
                state: "idle".into(),
            })
            .set(1);
        m.outbox_backlog.get_or_create(&service).set(0);
        m.consumer_ready.get_or_create(&service).set(1);
        m.consumers_recreated.get_or_create(&service).inc();
        m.crisis_pass_failures
            .get_or_create(&CrisisLabels {
                crisis: "unit-crisis".into(),
            })
            .inc();
        m.crises
            .get_or_create(&StateLabels {
                state: "active".into(),
            })
            .set(1);
        m.entitlements.get_or_create(&by_status).set(1);
        m.entitlements_committed.get_or_create(&amount).set(1);
        m.instructions.get_or_create(&by_status).set(1);
        m.payment_amounts.get_or_create(&amount).set(1);
        let exposed: std::collections::BTreeSet<(String, String)> = m
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE sumud_"))
            .map(|l| {
                let (name, kind) = l.split_once(' ').unwrap();
                (name.to_owned(), kind.to_owned())
            })
            .collect();
        let listed: std::collections::BTreeSet<(String, String)> = FAMILIES
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect();
        assert_eq!(exposed, listed);
        assert!(sample_names().contains(&"sumud_messages_consumed_total".to_owned()));
    }
}
