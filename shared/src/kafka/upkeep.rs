//! The consumer's upkeep beside the loop (`consumer.rs`): every few seconds
//! its lag and progress go to the health and the lag gauge, and a consumer
//! that stayed outside its group past the bound is given up on; at the end
//! it is committed and closed on a thread of its own, within a bound, so
//! that librdkafka's wait on a group coordinator never holds a runtime
//! thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::Producer;
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::kafka::consumer::GroupConsumer;
use crate::kafka::health::{ConsumerHealth, HealthContext};
use crate::kafka::producer::EventProducer;
use crate::metrics::{Metrics, PartitionLabels, ServiceLabels};

/// How often the loop reports consumer lag and checks its membership.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// How long the watch waits for a broker's metadata answer.
const ASK_BROKER: Duration = Duration::from_secs(2);

/// How long closing a consumer (final commit, leaving the group) may take
/// before it is left to finish on its own thread.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);

/// Every [`LAG_EVERY`]: reports lag and progress to the health, and asks
/// for a new consumer (cancels `recreate`) when this one has stayed outside
/// its group past the bound while the broker answers. Whether it answers
/// is asked of the consumer and of the service's producer, either one
/// enough: a consumer whose own connections wedged may not get metadata
/// from a broker that serves every other client.
pub(crate) async fn watch(
    consumer: Arc<GroupConsumer>,
    producer: EventProducer,
    service: String,
    health: Arc<ConsumerHealth>,
    stop: CancellationToken,
    recreate: CancellationToken,
) {
    let mut tick = tokio::time::interval(LAG_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (c, s, h) = (consumer.clone(), service.clone(), health.clone());
        let p = producer.clone();
        // Watermarks and metadata are broker round trips: off the runtime.
        let give_up = tokio::task::spawn_blocking(move || {
            report_lag(&c, &s, &h);
            Metrics::global()
                .consumer_ready
                .get_or_create(&ServiceLabels { service: s })
                .set(i64::from(h.verdict(Instant::now()).is_ready()));
            let answers = |m: rdkafka::error::KafkaResult<rdkafka::metadata::Metadata>| {
                m.is_ok_and(|m| !m.brokers().is_empty())
            };
            h.should_recreate(Instant::now())
                && (answers(c.fetch_metadata(None, ASK_BROKER))
                    || answers(p.raw().client().fetch_metadata(None, ASK_BROKER)))
        })
        .await
        .unwrap_or(false);
        if give_up {
            recreate.cancel();
            return;
        }
    }
}

/// Commits what was stored and closes the consumer, on a thread of its own
/// and for at most [`CLOSE_WITHIN`]: librdkafka's close waits for the group
/// coordinator, which may never answer (a broker gone, or a coordinator
/// connection that wedged), and a runtime thread blocked there starves
/// every other task of the process.
pub(crate) async fn close(consumer: Arc<GroupConsumer>, group: &str) {
    let (done, closed) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("sumud-consumer-close".into())
        .spawn(move || {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                // Nothing stored since the last commit is the usual cause.
                info!(error = %e, "Final offset commit skipped.");
            }
            // Destroyed here, and waited for (an embedded broker may stop
            // right after), unless something else still holds it: then
            // whoever lets go last has it destroyed on a thread of its own.
            match Arc::try_unwrap(consumer) {
                Ok(owned) => drop(owned.into_inner()),
                Err(_) => warn!(
                    "The consumer is still shared at its close; its destroy is not waited for."
                ),
            }
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        warn!(error = %e, "Could not start a thread to close the consumer; it is leaked.");
        return;
    }
    match tokio::time::timeout(CLOSE_WITHIN, closed).await {
        Ok(_) => info!(group, "Consumer stopped."),
        Err(_) => warn!(
            group,
            within_s = CLOSE_WITHIN.as_secs(),
            "The consumer did not close in time (its group coordinator does not answer); it goes on closing in the background."
        ),
    }
}

/// Sets the lag gauge of every assigned partition (high watermark minus
/// the position the consumer has read to) and tells the health how far
/// the work is durable (the committed offsets, which follow the stored
/// ones within a second): a handler that never returns holds those still
/// while the reader runs ahead. Blocking: broker round trips.
fn report_lag(consumer: &StreamConsumer<HealthContext>, service: &str, health: &ConsumerHealth) {
    const ASK: Duration = Duration::from_secs(2);
    let (Ok(read), Ok(assigned)) = (consumer.position(), consumer.assignment()) else {
        health.unobserved();
        return;
    };
    let Ok(committed) = consumer.committed_offsets(assigned, ASK) else {
        health.unobserved();
        return;
    };
    let read: BTreeMap<(String, i32), Offset> = read
        .elements()
        .iter()
        .map(|e| ((e.topic().to_owned(), e.partition()), e.offset()))
        .collect();
    let metrics = Metrics::global();
    let (mut durable, mut waiting) = (0i64, 0i64);
    for e in committed.elements() {
        let Ok((low, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), ASK) else {
            health.unobserved();
            return;
        };
        // Nothing committed yet: everything from the log's start waits.
        let done = match e.offset() {
            Offset::Offset(o) => o.max(low),
            _ => low,
        };
        durable += done;
        waiting += (high - done).max(0);
        if let Some(Offset::Offset(position)) = read.get(&(e.topic().to_owned(), e.partition())) {
            metrics
                .consumer_lag
                .get_or_create(&PartitionLabels {
                    service: service.to_owned(),
                    topic: e.topic().to_owned(),
                    partition: e.partition().to_string(),
                })
                .set((high - position).max(0));
        }
    }
    health.observed(durable, waiting, Instant::now());
}
