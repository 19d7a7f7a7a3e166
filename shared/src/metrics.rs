//! Prometheus metrics of a process: one registry, filled by the consumer
//! loop and the producer (so every service reports the same families the
//! same way) and read by `/metrics` (`http.rs`). Names follow Prometheus
//! conventions (`_total`, `_seconds`, base units); labels never carry
//! household or instruction ids.

use std::sync::LazyLock;

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
    /// Database connections by state (set when scraped).
    pub db_connections: Family<PoolLabels, Gauge>,
    /// Rows waiting in a service's outbox (set when scraped).
    pub outbox_backlog: Family<ServiceLabels, Gauge>,
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
        let db_connections = Family::<PoolLabels, Gauge>::default();
        let outbox_backlog = Family::<ServiceLabels, Gauge>::default();
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
            "db_pool_connections",
            "Database pool connections by state",
            db_connections.clone(),
        );
        registry.register(
            "outbox_backlog_rows",
            "Rows in a service's outbox not yet acknowledged by Kafka",
            outbox_backlog.clone(),
        );
        Metrics {
            registry,
            consumed,
            dead_lettered,
            produced,
            batch_seconds,
            consumer_lag,
            db_connections,
            outbox_backlog,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_messages_appear_in_the_exposition_with_their_labels() {
        let m = Metrics::global();
        m.count_consumed("unit", "t.v1", 3);
        m.count_dead_letter("unit", "t.v1", "schema_invalid");
        m.batch_seconds
            .get_or_create(&ServiceLabels {
                service: "unit".into(),
            })
            .observe(0.004);
        let text = m.render();
        assert!(
            text.contains(r#"sumud_messages_consumed_total{service="unit",topic="t.v1"} 3"#),
            "{text}"
        );
        assert!(text.contains(
            r#"sumud_messages_dead_lettered_total{service="unit",topic="t.v1",reason="schema_invalid"} 1"#
        ));
        assert!(text.contains(r#"sumud_batch_processing_seconds_count{service="unit"} 1"#));
    }
}
