//! Offsets: the highest offset of each partition in a batch, stored only
//! once the whole batch is durable (auto-commit then commits it).

use std::collections::BTreeMap;

use rdkafka::consumer::{Consumer, StreamConsumer};
use tracing::warn;

use super::fetch::Raw;
use crate::kafka::health::HealthContext;

/// The highest offset of a batch per topic and partition.
pub(super) fn highest_offsets(batch: &[Raw]) -> BTreeMap<(String, i32), i64> {
    let mut highest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for r in batch {
        let e = highest
            .entry((r.topic.as_str(), r.partition))
            .or_insert(r.offset);
        *e = (*e).max(r.offset);
    }
    highest
        .into_iter()
        .map(|((topic, partition), offset)| ((topic.to_owned(), partition), offset))
        .collect()
}

/// Stores, per partition, the highest offset of a durable batch. librdkafka's
/// `rd_kafka_offset_store` records `offset + 1`, the next one to read.
pub(super) fn store_offsets(
    consumer: &StreamConsumer<HealthContext>,
    highest: &BTreeMap<(String, i32), i64>,
) {
    for ((topic, partition), offset) in highest {
        if let Err(e) = consumer.store_offset(topic, *partition, *offset) {
            // After a rebalance the partition may belong to another member:
            // it will redeliver, and handlers are idempotent, so this is safe.
            warn!(topic, partition, offset, error = %e, "Could not store offset.");
        }
    }
}
