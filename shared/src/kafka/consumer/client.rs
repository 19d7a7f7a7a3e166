//! The loop's Kafka consumer: how it is configured and subscribed, and
//! where it is destroyed. Offsets are stored by the loop only
//! (`enable.auto.offset.store=false`) and committed in the background; a
//! static member keeps its partitions through a restart.

use rdkafka::consumer::{Consumer, StreamConsumer};
use tracing::info;

use super::LoopConfig;
use crate::config::Settings;
use crate::kafka::health::HealthContext;
use crate::kafka::Detached;
use crate::Result;

/// librdkafka prefetch settings the loop uses unless the settings' passthrough
/// properties say otherwise.
const PREFETCH_DEFAULTS: &[(&str, &str)] = &[
    ("queued.max.messages.kbytes", "32768"),
    ("fetch.queue.backoff.ms", "100"),
];

/// The loop's consumer, destroyed on a thread of its own whoever lets go of
/// it last (`crate::kafka::Detached`): a service killed mid-rebalance once
/// left it to a blocking-pool thread, whose destroy never returned, and a
/// test runtime's shutdown waited for that thread forever. The graceful
/// close (`upkeep::close`) still destroys it itself and waits, within a
/// bound.
pub(crate) type GroupConsumer = Detached<StreamConsumer<HealthContext>>;

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
    Ok(Detached::new(consumer))
}
