//! The loop's Kafka consumer: how it is configured and subscribed, and
//! where it is destroyed. Offsets are stored by the loop only
//! (`enable.auto.offset.store=false`) and committed in the background; a
//! static member keeps its partitions through a restart.

use std::ops::Deref;

use rdkafka::consumer::{Consumer, StreamConsumer};
use tracing::{info, warn};

use super::LoopConfig;
use crate::config::Settings;
use crate::kafka::health::HealthContext;
use crate::Result;

/// librdkafka prefetch settings the loop uses unless the settings' passthrough
/// properties say otherwise.
const PREFETCH_DEFAULTS: &[(&str, &str)] = &[
    ("queued.max.messages.kbytes", "32768"),
    ("fetch.queue.backoff.ms", "100"),
];

/// The loop's consumer, which librdkafka destroys on a thread of its own.
///
/// Why: destroying a group consumer waits on librdkafka's main thread (the
/// group leave, a rebalance being finished with an assign whose timeout is
/// infinite), and that wait has been seen never to end for a consumer
/// dropped mid-rebalance — a service killed while it joined. Whoever lets
/// go of it last (the loop, a fetch or lag report on the blocking pool, a
/// task aborted mid-flight) would be stuck there, and a runtime's shutdown,
/// which waits for its blocking threads, with it: a test process hung at
/// its end. The graceful close (`upkeep::close`) still destroys it itself
/// and waits, within a bound.
pub(crate) struct GroupConsumer(Option<StreamConsumer<HealthContext>>);

impl GroupConsumer {
    /// The consumer itself, for a caller that destroys it where it chooses.
    pub(crate) fn into_inner(mut self) -> Option<StreamConsumer<HealthContext>> {
        self.0.take()
    }
}

impl Deref for GroupConsumer {
    type Target = StreamConsumer<HealthContext>;

    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("only into_inner takes the consumer, and it consumes the wrapper")
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("sumud-consumer-drop".into())
            .spawn(move || drop(consumer));
        if let Err(e) = spawned {
            // Cannot happen short of the process's thread limit; the
            // consumer is then leaked rather than destroyed here.
            warn!(error = %e, "Could not start a thread to destroy a consumer; it is leaked.");
        }
    }
}

/// A consumer for `config`'s group, subscribed to its topics.
pub(super) fn subscribed(settings: &Settings, config: &LoopConfig) -> Result<GroupConsumer> {
    let mut client = crate::kafka::client_config(settings);
    // The loop keeps a decoded batch of its own in hand, so librdkafka's
    // prefetch queue need not be its default 64 MB; its back-off when that
    // queue is full is shortened to match. Passthrough settings win.
    for (property, value) in PREFETCH_DEFAULTS {
        if !settings.kafka_properties.contains_key(*property) {
            client.set(*property, *value);
        }
    }
    if let Some(instance) = &settings.instance_id {
        // A static member: the broker keeps its partitions for it through a
        // restart (up to the session timeout) instead of rebalancing twice
        // and leaving them unread meanwhile.
        client.set("group.instance.id", instance);
    }
    let consumer: StreamConsumer<HealthContext> = client
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "300000")
        .create_with_context(HealthContext {
            health: config.health.clone(),
        })?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    info!(service = %config.service, group = %config.group_id, topics = ?config.topics, "Consuming.");
    Ok(GroupConsumer(Some(consumer)))
}
