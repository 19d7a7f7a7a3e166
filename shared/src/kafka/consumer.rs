//! THE consumer loop: receive → decode → validate → handle → dead-letter the
//! rejects → store offsets. Every service runs its input topics through here.
//!
//! Offsets: `enable.auto.offset.store=false`, and an offset is stored only
//! after the whole batch is durable — the handler's database transaction has
//! committed and every dead letter of the batch has been acknowledged by the
//! broker. Auto-commit then commits stored offsets in the background, and the
//! loop commits synchronously on shutdown. A crash at any point therefore
//! redelivers work (at-least-once), and handlers make redelivery harmless
//! (idempotent writes), which together give effectively-once processing.
//!
//! Pipelining: a background task receives and decodes the next batch (on
//! blocking threads, split across the cores for large batches) while the
//! handler works on the current one. Batches are still handled strictly one
//! after another, in partition order, and each batch's offsets are stored
//! only once that batch is durable; a prefetched batch whose turn never came
//! (shutdown) is simply received again by the next consumer.
//!
//! Failures: a retryable handler error (database down, deadlock) retries the
//! same batch with jittered backoff, forever, without storing offsets; a
//! permanent one re-runs the batch message by message to isolate the culprit,
//! which alone is dead-lettered with `handler_failed`.
//!
//! The parts, in the order a message meets them: `client` (the consumer's
//! configuration), `fetch` (receive and decode, a batch ahead), `handling`
//! (the handler per topic, then dead letters), `retry` (transient retries,
//! isolating poison), `deadletters`, `offsets`. This file holds the types a
//! service sees and the session that ties the parts together.

mod client;
mod deadletters;
mod fetch;
mod handling;
mod offsets;
mod retry;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub(crate) use self::client::GroupConsumer;
use self::deadletters::DeadLetterSink;
use self::fetch::{fetch, Accepted, Fetcher, Prepared, DECODE_INLINE_MAX};
use self::handling::by_topic;
use self::offsets::store_offsets;
pub use self::retry::retry_transient;
use crate::config::Settings;
use crate::envelope::{Envelope, Rejection};
use crate::kafka::health::ConsumerHealth;
use crate::kafka::producer::EventProducer;
use crate::kafka::upkeep::{close, watch};
use crate::metrics::{Metrics, ServiceLabels};
use crate::Result;

/// A decoded, schema-valid message with its Kafka coordinates.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Kafka key, if any.
    pub key: Option<Vec<u8>>,
    /// W3C trace context from the `traceparent` header (or, without one,
    /// the event's `traceparent` extension): the message's creation context.
    pub traceparent: Option<String>,
    /// The validated event.
    pub envelope: Envelope<Value>,
    /// The original bytes, kept for dead-lettering.
    pub raw: Arc<[u8]>,
}

/// What the handler decided about one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Processed (or harmlessly ignored as a redelivery).
    Done,
    /// Permanently unprocessable: dead-letter it with this reason.
    Reject(Rejection),
}

/// A service's business logic behind the loop.
pub trait Handler: Send + Sync {
    /// The CloudEvents types this handler accepts; anything else is
    /// dead-lettered as `unknown_event_type`.
    fn event_types(&self) -> &[&str];

    /// Handles a batch, in partition order, returning one verdict per message.
    /// Must be idempotent: after a crash the same batch comes again.
    fn handle(&self, batch: &[Incoming]) -> impl Future<Output = Result<Vec<Verdict>>> + Send;
}

/// The loop's own settings.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Name of the service, recorded in dead letters.
    pub service: String,
    /// Consumer group.
    pub group_id: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// Topics read here but validated (and dead-lettered) by the service that
    /// owns them; their rejects are skipped quietly so that one bad message
    /// yields one dead letter, not one per consumer. Only topics whose owner
    /// judges the same things belong here; `handler_failed` is dead-lettered
    /// whatever the topic.
    pub foreign_topics: Vec<String>,
    /// Membership and progress, shared with the readiness probe.
    pub health: Arc<ConsumerHealth>,
}

/// Runs the loop until `shutdown` is cancelled, then commits stored offsets.
///
/// A consumer that has not joined its group within the health bound
/// (`SUMUD_CONSUMER_JOIN_SECS`) while the broker answers is closed and a new
/// one made in its place: librdkafka's group coordinator connection can
/// wedge after a broker restart so that the old consumer never joins again
/// (docs/reliability.md, "A consumer that never joins").
pub async fn run<H: Handler>(
    settings: &Settings,
    config: LoopConfig,
    handler: &H,
    producer: &EventProducer,
    shutdown: CancellationToken,
) -> Result<()> {
    loop {
        match session(settings, &config, handler, producer, &shutdown).await? {
            Ended::Shutdown => return Ok(()),
            Ended::Recreate => {
                config.health.recreated();
                Metrics::global()
                    .consumers_recreated
                    .get_or_create(&ServiceLabels {
                        service: config.service.clone(),
                    })
                    .inc();
                warn!(
                    service = %config.service,
                    group = %config.group_id,
                    bound_s = config.health.bounds().join_within.as_secs(),
                    "The consumer did not join its group within the bound although the broker answers; made a new one."
                );
            }
        }
    }
}

/// Why a consumer session ended.
enum Ended {
    /// Shutdown was requested (or the handler side stopped).
    Shutdown,
    /// The consumer never joined its group: make a new one.
    Recreate,
}

/// One consumer, from creation to close.
async fn session<H: Handler>(
    settings: &Settings,
    config: &LoopConfig,
    handler: &H,
    producer: &EventProducer,
    shutdown: &CancellationToken,
) -> Result<Ended> {
    let consumer = Arc::new(client::subscribed(settings, config)?);

    let deadletters = DeadLetterSink {
        producer,
        topic: settings.topics.deadletter.clone(),
        service: config.service.clone(),
        max_bytes: settings.limits.max_bytes,
    };
    // Capacity one, and the fetcher reserves the slot before it receives: at
    // most one batch waits decoded while the handler works on another.
    let (ready, mut batches) = mpsc::channel(1);
    let stop = shutdown.child_token();
    let _stop_fetcher_on_unwind = stop.clone().drop_guard();
    let fetcher = tokio::spawn(fetch(
        Fetcher {
            consumer: consumer.clone(),
            batch_max: settings.batch_max,
            batch_linger: settings.batch_linger,
            limits: settings.limits.clone(),
            accepted: Arc::new(Accepted {
                types: handler
                    .event_types()
                    .iter()
                    .map(|t| t.to_string())
                    .collect(),
                topics: settings.topics.clone(),
            }),
        },
        ready,
        stop.clone(),
    ));
    // The watch runs beside the handler, so a handler that never returns
    // still shows as a stall. `abandon` ends the session's waits: shutdown
    // cancels it (its parent), and so does the watch when this consumer
    // must be made anew.
    let abandon = shutdown.child_token();
    let watcher = tokio::spawn(watch(
        consumer.clone(),
        producer.clone(),
        config.service.clone(),
        config.health.clone(),
        stop.clone(),
        abandon.clone(),
    ));
    let metrics = Metrics::global();
    let ended = loop {
        let waiting = Instant::now();
        let prepared = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ended::Shutdown,
            _ = abandon.cancelled() => break Ended::Recreate,
            p = batches.recv() => match p {
                Some(p) => p,
                None => break Ended::Shutdown,
            },
        };
        let Prepared {
            positions,
            decoded,
            undecodable,
        } = prepared;
        debug!(
            size = decoded.len() + undecodable.len(),
            waited_ms = waiting.elapsed().as_secs_f64() * 1e3,
            "Next batch ready for the handler."
        );
        let started = Instant::now();
        let Some(handled) = handling::batch(
            handler,
            config,
            &deadletters,
            by_topic(decoded, undecodable),
            shutdown,
            &abandon,
        )
        .await
        else {
            // Shutting down or giving up on the consumer mid-retry or
            // mid-dead-letter: store nothing, the batch comes again
            // (handlers are idempotent under redelivery).
            break if shutdown.is_cancelled() {
                Ended::Shutdown
            } else {
                Ended::Recreate
            };
        };
        metrics
            .batch_seconds
            .get_or_create(&ServiceLabels {
                service: config.service.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        store_offsets(&consumer, &positions);
        // Freeing a large batch's JSON trees takes a while: do it off the
        // loop so the next batch is handled at once.
        if handled.iter().map(Vec::len).sum::<usize>() > DECODE_INLINE_MAX {
            tokio::task::spawn_blocking(move || drop(handled));
        }
    };
    stop.cancel();
    drop(batches);
    // The watch holds the consumer: the session is over only when nothing
    // uses it any more (an embedded broker may stop right after).
    let _ = watcher.await;
    if let Err(e) = fetcher.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    close(consumer, &config.group_id).await;
    Ok(ended)
}
