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

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::Settings;
use crate::deadletter::{cut_short, DeadLetter, Reason, MAX_FIELD_BYTES};
use crate::envelope::{decode, DecodeLimits, Envelope, Rejection};
use crate::events::deadletter::DEADLETTER_RECORDED;
use crate::kafka::health::{ConsumerHealth, HealthContext};
use crate::kafka::producer::{EventProducer, MAX_RECORD_BYTES};
use crate::kafka::upkeep::{close, watch};
use crate::metrics::{Metrics, ServiceLabels};
use crate::schema::SchemaRegistry;
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

/// A received message before decoding.
struct Raw {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    traceparent: Option<String>,
    payload: Arc<[u8]>,
}

impl Raw {
    fn from_message(m: &BorrowedMessage<'_>) -> Self {
        let traceparent = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == "traceparent")
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        });
        Raw {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            traceparent,
            payload: Arc::from(m.payload().unwrap_or_default()),
        }
    }
}

/// A received batch, decoded and waiting for the handler.
struct Prepared {
    /// The highest offset of the batch per topic and partition, stored once
    /// the batch is durable.
    positions: BTreeMap<(String, i32), i64>,
    /// The messages that passed the decoding ladder, in batch order.
    decoded: Vec<Incoming>,
    /// The messages that did not, with the reason, in batch order.
    undecodable: Vec<(Raw, Rejection)>,
}

/// librdkafka prefetch settings the loop uses unless the settings' passthrough
/// properties say otherwise.
const PREFETCH_DEFAULTS: &[(&str, &str)] = &[
    ("queued.max.messages.kbytes", "32768"),
    ("fetch.queue.backoff.ms", "100"),
];

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
    let mut client = super::client_config(settings);
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
    let consumer = Arc::new(consumer);

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
        // One handler call and one `process` span per topic of the batch
        // (see `spans.rs`): a span then names its hop and continues the
        // trace of that topic's first message, instead of whichever topic
        // the poll happened to return first. Per-partition order is kept;
        // Kafka orders nothing across topics, so neither do handlers.
        let handling = Instant::now();
        // Every topic's handler first, then every topic's dead letters: a
        // shutdown during a later topic's retries leaves nothing published
        // that the redelivered batch would publish again.
        let parts = by_topic(decoded, undecodable);
        let n = parts.len();
        let mut judged = Vec::with_capacity(n);
        config.health.handling(true);
        for part in parts {
            // While the handler works the fetcher does not poll, so the
            // consumer cannot rejoin its group: a handler stuck past the
            // join bound (a send waiting on a producer that lost the
            // broker) is dropped with the consumer, as a crash would drop
            // it, and the batch comes again to the new one.
            let given_up = async {
                abandon.cancelled().await;
                if shutdown.is_cancelled() {
                    // Shutdown lets the handler finish its call.
                    std::future::pending::<()>().await;
                }
            };
            let j = tokio::select! {
                j = handle_part(handler, config, part, &abandon) => j,
                _ = given_up => None,
            };
            match j {
                Some(j) => judged.push(j),
                None => break,
            }
        }
        config.health.handling(false);
        let mut handled = Vec::with_capacity(n);
        if judged.len() == n {
            for j in judged {
                match settle(j, config, &deadletters, &abandon).await {
                    Some(done) => handled.push(done),
                    None => break,
                }
            }
        }
        if handled.len() != n {
            // Shutting down or giving up on the consumer mid-retry or
            // mid-dead-letter: store nothing, the batch comes again
            // (handlers are idempotent under redelivery).
            break if shutdown.is_cancelled() {
                Ended::Shutdown
            } else {
                Ended::Recreate
            };
        }
        metrics
            .batch_seconds
            .get_or_create(&ServiceLabels {
                service: config.service.clone(),
            })
            .observe(handling.elapsed().as_secs_f64());
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

/// The messages of one topic out of a polled batch, in batch order.
struct Part {
    decoded: Vec<Incoming>,
    undecodable: Vec<(Raw, Rejection)>,
}

/// Splits a batch by topic, topics in order of first appearance. A batch of
/// one topic (the usual case) is moved through untouched.
fn by_topic(decoded: Vec<Incoming>, undecodable: Vec<(Raw, Rejection)>) -> Vec<Part> {
    let mut order: Vec<String> = Vec::with_capacity(1);
    for t in decoded
        .iter()
        .map(|m| &m.topic)
        .chain(undecodable.iter().map(|(r, _)| &r.topic))
    {
        if !order.contains(t) {
            order.push(t.clone());
        }
    }
    if order.len() <= 1 {
        return vec![Part {
            decoded,
            undecodable,
        }];
    }
    let mut parts: Vec<Part> = order
        .iter()
        .map(|_| Part {
            decoded: Vec::new(),
            undecodable: Vec::new(),
        })
        .collect();
    let at = |t: &str| order.iter().position(|o| o == t).expect("topic listed");
    for m in decoded {
        let i = at(&m.topic);
        parts[i].decoded.push(m);
    }
    for (r, rej) in undecodable {
        let i = at(&r.topic);
        parts[i].undecodable.push((r, rej));
    }
    parts
}

/// One topic's part of a batch after its handler: the verdicts, and the
/// span its dead letters are published in.
struct Judged {
    part: Part,
    verdicts: Vec<Verdict>,
    span: tracing::Span,
}

/// Runs the handler (with retries) over one topic's part of a batch inside
/// its `process` span. `None` means shutdown came first and nothing of the
/// batch may be stored.
async fn handle_part<H: Handler>(
    handler: &H,
    config: &LoopConfig,
    part: Part,
    shutdown: &CancellationToken,
) -> Option<Judged> {
    let span = super::spans::process(
        &config.group_id,
        part.decoded
            .iter()
            .map(|m| super::spans::Consumed {
                topic: &m.topic,
                partition: m.partition,
                offset: m.offset,
                traceparent: m.traceparent.as_deref(),
            })
            .chain(
                part.undecodable
                    .iter()
                    .map(|(r, _)| super::spans::Consumed {
                        topic: &r.topic,
                        partition: r.partition,
                        offset: r.offset,
                        traceparent: r.traceparent.as_deref(),
                    }),
            ),
    );
    let verdicts = handle_with_retries(handler, &part.decoded, shutdown)
        .instrument(span.clone())
        .await?;
    Some(Judged {
        part,
        verdicts,
        span,
    })
}

/// Publishes a judged part's dead letters (in its span) and counts it.
/// Gives the messages back to be freed; `None` means shutdown came first.
async fn settle(
    judged: Judged,
    config: &LoopConfig,
    deadletters: &DeadLetterSink<'_>,
    shutdown: &CancellationToken,
) -> Option<Vec<Incoming>> {
    let Judged {
        part: Part {
            decoded,
            undecodable,
        },
        verdicts,
        span,
    } = judged;
    let mut rejects: Vec<(Raw, Option<&Envelope<Value>>, Rejection)> = Vec::new();
    for (inc, verdict) in decoded.iter().zip(verdicts) {
        if let Verdict::Reject(rej) = verdict {
            rejects.push((raw_of(inc), Some(&inc.envelope), rej));
        }
    }
    for (raw, rej) in undecodable {
        rejects.push((raw, None, rej));
    }
    rejects.retain(|(raw, _, rej)| {
        let foreign = owner_records(&config.foreign_topics, &raw.topic, rej.reason);
        if foreign {
            debug!(topic = %raw.topic, offset = raw.offset, reason = %rej.reason, "Skipped a message its owner dead-letters.");
        }
        !foreign
    });
    for (raw, envelope, rej) in &rejects {
        if !deadletters
            .publish(raw, *envelope, rej, shutdown)
            .instrument(span.clone())
            .await
        {
            return None;
        }
    }
    count_batch(&config.service, &decoded, &rejects);
    drop(rejects);
    Some(decoded)
}

/// Counts a handled batch: consumed per topic (decoded messages and the
/// undecodable ones), dead letters per topic and reason.
fn count_batch(
    service: &str,
    decoded: &[Incoming],
    rejects: &[(Raw, Option<&Envelope<Value>>, Rejection)],
) {
    let metrics = Metrics::global();
    let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for m in decoded {
        *per_topic.entry(m.topic.as_str()).or_default() += 1;
    }
    for (raw, envelope, _) in rejects {
        if envelope.is_none() {
            *per_topic.entry(raw.topic.as_str()).or_default() += 1;
        }
    }
    for (topic, n) in per_topic {
        metrics.count_consumed(service, topic, n);
    }
    for (raw, _, rej) in rejects {
        metrics.count_dead_letter(service, &raw.topic, rej.reason.code());
    }
}

/// What the background fetcher needs, owned.
struct Fetcher {
    consumer: Arc<StreamConsumer<HealthContext>>,
    batch_max: usize,
    batch_linger: Duration,
    limits: DecodeLimits,
    accepted: Arc<Accepted>,
}

/// What the loop accepts: the handler's event types, each only on the
/// topic that carries it (`Topics::carries`). The type alone is the
/// sender's claim; a crisis event written to the tasks or status topic,
/// which field apps and providers may write, is not the control service's.
struct Accepted {
    types: Vec<String>,
    topics: crate::topics::Topics,
}

/// Receives and decodes batches into `ready` until `stop` is cancelled or
/// the loop stops listening.
async fn fetch(f: Fetcher, ready: mpsc::Sender<Prepared>, stop: CancellationToken) {
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => return,
            slot = ready.reserve() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let receiving = Instant::now();
        let Some(batch) = next_batch(&f.consumer, f.batch_max, f.batch_linger, &stop).await else {
            return;
        };
        let decoding = Instant::now();
        let size = batch.len();
        let Some(prepared) = prepare(batch, &f.accepted, &f.limits).await else {
            return;
        };
        debug!(
            size,
            receive_ms = (decoding - receiving).as_secs_f64() * 1e3,
            decode_ms = decoding.elapsed().as_secs_f64() * 1e3,
            "Batch received and decoded."
        );
        slot.send(prepared);
    }
}

/// Fewest messages per decoding thread; smaller batches decode in one piece.
const DECODE_CHUNK_MIN: usize = 256;
/// Batches this small decode inline, without a hop to a blocking thread.
const DECODE_INLINE_MAX: usize = 32;
/// Most threads one batch is decoded on.
const DECODE_THREADS_MAX: usize = 4;

/// Runs a batch through the decoding ladder, splitting large batches across
/// blocking threads. Order is kept. `None` only if the runtime is going away.
async fn prepare(
    batch: Vec<Raw>,
    accepted: &Arc<Accepted>,
    limits: &DecodeLimits,
) -> Option<Prepared> {
    let positions = highest_offsets(&batch);
    let now = Utc::now();
    let total = batch.len();
    if total <= DECODE_INLINE_MAX {
        let (decoded, undecodable) = decode_all(batch, accepted, limits, now);
        return Some(Prepared {
            positions,
            decoded,
            undecodable,
        });
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, DECODE_THREADS_MAX)
        .min(total / DECODE_CHUNK_MIN)
        .max(1);
    let per_thread = total.div_ceil(threads);
    let mut rest = batch.into_iter();
    let mut parts = Vec::with_capacity(threads);
    loop {
        let chunk: Vec<Raw> = rest.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        let accepted = accepted.clone();
        let limits = limits.clone();
        parts.push(tokio::task::spawn_blocking(move || {
            decode_all(chunk, &accepted, &limits, now)
        }));
    }
    let mut decoded = Vec::with_capacity(total);
    let mut undecodable = Vec::new();
    for part in parts {
        match part.await {
            Ok((d, u)) => {
                decoded.extend(d);
                undecodable.extend(u);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return None,
        }
    }
    Some(Prepared {
        positions,
        decoded,
        undecodable,
    })
}

/// The decoding ladder over messages, moving each into its outcome.
fn decode_all(
    batch: Vec<Raw>,
    accepted: &Accepted,
    limits: &DecodeLimits,
    now: DateTime<Utc>,
) -> (Vec<Incoming>, Vec<(Raw, Rejection)>) {
    let topics = &accepted.topics;
    let accepted: Vec<&str> = accepted.types.iter().map(String::as_str).collect();
    let mut decoded = Vec::with_capacity(batch.len());
    let mut undecodable = Vec::new();
    for raw in batch {
        match decode(
            &raw.payload,
            &accepted,
            SchemaRegistry::global(),
            limits,
            now,
        ) {
            Ok(envelope) if !topics.carries(&raw.topic, &envelope.event_type) => {
                let detail = format!(
                    "{} does not travel on {}: whoever wrote it there is not its producer",
                    envelope.event_type, raw.topic
                );
                undecodable.push((raw, Rejection::new(Reason::UntrustedSender, detail)));
            }
            Ok(envelope) => decoded.push(Incoming {
                topic: raw.topic,
                partition: raw.partition,
                offset: raw.offset,
                key: raw.key,
                // The header wins; the CloudEvents extension is the fallback
                // for bridges that strip Kafka headers.
                traceparent: raw.traceparent.or_else(|| envelope.traceparent.clone()),
                envelope,
                raw: raw.payload,
            }),
            Err(rej) => undecodable.push((raw, rej)),
        }
    }
    (decoded, undecodable)
}

fn raw_of(inc: &Incoming) -> Raw {
    Raw {
        topic: inc.topic.clone(),
        partition: inc.partition,
        offset: inc.offset,
        key: inc.key.clone(),
        traceparent: inc.traceparent.clone(),
        payload: inc.raw.clone(),
    }
}

/// Waits for the first message, then gathers more until the batch is full or
/// the linger time has passed. `None` means shutdown.
async fn next_batch(
    consumer: &StreamConsumer<HealthContext>,
    batch_max: usize,
    linger: Duration,
    shutdown: &CancellationToken,
) -> Option<Vec<Raw>> {
    let mut batch = Vec::with_capacity(batch_max.min(1024));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            m = consumer.recv() => match m {
                Ok(m) => { batch.push(Raw::from_message(&m)); break; }
                Err(e) => {
                    warn!(error = %e, "Kafka receive failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let linger = tokio::time::sleep(linger);
    tokio::pin!(linger);
    while batch.len() < batch_max {
        // Messages already waiting are taken before the linger time is
        // looked at, so a backlog fills whole batches.
        tokio::select! {
            biased;
            m = consumer.recv() => match m {
                Ok(m) => batch.push(Raw::from_message(&m)),
                Err(e) => { warn!(error = %e, "Kafka receive failed."); break; }
            },
            _ = &mut linger => break,
        }
    }
    Some(batch)
}

/// Runs the handler, retrying transient failures and isolating poison.
/// Returns `None` only when shutdown interrupts a retry.
async fn handle_with_retries<H: Handler>(
    handler: &H,
    batch: &[Incoming],
    shutdown: &CancellationToken,
) -> Option<Vec<Verdict>> {
    if batch.is_empty() {
        return Some(Vec::new());
    }
    match retry_transient(|| handler.handle(batch), shutdown).await? {
        Ok(v) if v.len() == batch.len() => Some(v),
        Ok(v) => {
            error!(
                expected = batch.len(),
                got = v.len(),
                "Handler returned the wrong number of verdicts; isolating."
            );
            isolate(handler, batch, shutdown).await
        }
        Err(e) => {
            warn!(error = %e, size = batch.len(), "Batch failed permanently; retrying message by message to isolate it.");
            isolate(handler, batch, shutdown).await
        }
    }
}

async fn isolate<H: Handler>(
    handler: &H,
    batch: &[Incoming],
    shutdown: &CancellationToken,
) -> Option<Vec<Verdict>> {
    let mut verdicts = Vec::with_capacity(batch.len());
    for one in batch.chunks(1) {
        let v = match retry_transient(|| handler.handle(one), shutdown).await? {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            Ok(_) => Verdict::Reject(Rejection::new(
                Reason::HandlerFailed,
                "handler returned no verdict",
            )),
            Err(e) => {
                error!(topic = %one[0].topic, partition = one[0].partition, offset = one[0].offset, error = %e, "Message failed permanently.");
                Verdict::Reject(Rejection::new(Reason::HandlerFailed, e.to_string()))
            }
        };
        verdicts.push(v);
    }
    Some(verdicts)
}

/// How long an ordering wait (`NotReady`) stays at debug level before each
/// further retry is logged as a warning.
const NOT_READY_QUIET: Duration = Duration::from_secs(30);

/// Calls `f` until it succeeds or fails permanently, sleeping with jittered
/// exponential backoff (100 ms doubling to 10 s) between transient failures.
/// `None` means shutdown was requested while waiting.
pub async fn retry_transient<T, F, Fut>(mut f: F, shutdown: &CancellationToken) -> Option<Result<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let started = std::time::Instant::now();
    loop {
        match f().await {
            Err(e) if e.is_retryable() => {
                let wait = backoff.next_wait();
                let waited = started.elapsed();
                if matches!(e, crate::Error::NotReady(_)) && waited < NOT_READY_QUIET {
                    // Expected ordering waits (another service not caught up yet).
                    debug!(error = %e, wait_ms = wait.as_millis() as u64, "Not ready; will retry.");
                } else if matches!(e, crate::Error::NotReady(_)) {
                    // Past the quiet spell the wait is news: the other service
                    // may be down or stuck, and this partition waits on it.
                    warn!(error = %e, waited_s = waited.as_secs(), wait_ms = wait.as_millis() as u64, "Still not ready; the partition waits on another service.");
                } else {
                    warn!(error = %e, wait_ms = wait.as_millis() as u64, "Transient failure; will retry.");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            other => return Some(other),
        }
    }
}

/// The highest offset of a batch per topic and partition.
fn highest_offsets(batch: &[Raw]) -> BTreeMap<(String, i32), i64> {
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
fn store_offsets(consumer: &StreamConsumer<HealthContext>, highest: &BTreeMap<(String, i32), i64>) {
    for ((topic, partition), offset) in highest {
        if let Err(e) = consumer.store_offset(topic, *partition, *offset) {
            // After a rebalance the partition may belong to another member:
            // it will redeliver, and handlers are idempotent, so this is safe.
            warn!(topic, partition, offset, error = %e, "Could not store offset.");
        }
    }
}

/// Publishes dead letters and waits for their acknowledgement.
struct DeadLetterSink<'a> {
    producer: &'a EventProducer,
    topic: String,
    service: String,
    max_bytes: usize,
}

impl DeadLetterSink<'_> {
    /// Returns false only if shutdown interrupted a retry: the offset must
    /// then not be stored, so the message is seen again after restart.
    async fn publish(
        &self,
        raw: &Raw,
        envelope: Option<&Envelope<Value>>,
        rej: &Rejection,
        shutdown: &CancellationToken,
    ) -> bool {
        let short = |s: String| cut_short(s, MAX_FIELD_BYTES);
        let original_id = envelope
            .map(|e| e.id.clone())
            .or_else(|| peek(&raw.payload, "id"))
            .map(short);
        let original_type = envelope
            .map(|e| e.event_type.clone())
            .or_else(|| peek(&raw.payload, "type"))
            .map(short);
        let (shown, personal_redacted) = crate::deadletter::withhold_personal(&raw.payload);
        // Half the decode limit, and never more than base64 (4 bytes per 3)
        // can carry in a record the producer may send, with room to spare
        // for the other fields (each at most MAX_FIELD_BYTES).
        let room = (MAX_RECORD_BYTES - 64 * 1024) / 4 * 3;
        let kept = &shown[..shown.len().min(self.max_bytes / 2).min(room)];
        let letter = DeadLetter {
            reason: rej.reason,
            detail: rej.detail.clone(),
            service: self.service.clone(),
            source_topic: raw.topic.clone(),
            source_partition: raw.partition,
            source_offset: raw.offset,
            source_key: raw
                .key
                .as_ref()
                .filter(|k| k.len() <= MAX_FIELD_BYTES)
                .and_then(|k| String::from_utf8(k.clone()).ok()),
            original_id,
            original_type,
            original_base64: base64::engine::general_purpose::STANDARD.encode(kept),
            original_size: raw.payload.len() as u64,
            original_truncated: kept.len() < shown.len(),
            personal_redacted,
        };
        warn!(
            reason = %rej.reason, topic = %raw.topic, partition = raw.partition, offset = raw.offset,
            detail = %rej.detail, "Message dead-lettered."
        );
        let mut event = Envelope::new(
            &format!("urn:sumud:{}", self.service),
            DEADLETTER_RECORDED,
            Some(format!("{}/{}/{}", raw.topic, raw.partition, raw.offset)),
            letter,
        );
        event.traceparent = raw.traceparent.clone();
        let key = format!("{}/{}", raw.topic, raw.partition);
        let sent =
            retry_transient(|| self.producer.send(&self.topic, &key, &event), shutdown).await;
        match sent {
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                error!(error = %e, "Dead letter could not be published.");
                false
            }
            None => false,
        }
    }
}

/// Whether a reject on `topic` is left to the topic's owner to dead-letter.
/// The owner rejects what it cannot decode or accept; a handler failing
/// here is this service's own story and is always told.
fn owner_records(foreign_topics: &[String], topic: &str, reason: Reason) -> bool {
    reason != Reason::HandlerFailed && foreign_topics.iter().any(|t| t == topic)
}

/// Reads one top-level string attribute from a possibly invalid message.
fn peek(payload: &[u8], field: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get(field)?
        .as_str()
        .map(|s| s.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_on_a_foreign_topic_are_left_to_its_owner_but_handler_failures_are_not() {
        let foreign = vec!["sumud.crisis.v1".to_string()];
        assert!(owner_records(&foreign, "sumud.crisis.v1", Reason::NotJson));
        assert!(owner_records(
            &foreign,
            "sumud.crisis.v1",
            Reason::SchemaInvalid
        ));
        assert!(!owner_records(
            &foreign,
            "sumud.crisis.v1",
            Reason::HandlerFailed
        ));
        assert!(!owner_records(
            &foreign,
            "sumud.entitlements.v1",
            Reason::NotJson
        ));
    }

    fn incoming(topic: &str, partition: i32, offset: i64) -> Incoming {
        Incoming {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            traceparent: None,
            envelope: Envelope::new("test", "t", None, Value::Null),
            raw: Arc::from(&b"{}"[..]),
        }
    }

    fn raw(topic: &str, partition: i32, offset: i64) -> (Raw, Rejection) {
        let raw = Raw {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            traceparent: None,
            payload: Arc::from(&b"x"[..]),
        };
        (raw, Rejection::new(Reason::NotJson, "test"))
    }

    fn positions(ms: &[Incoming]) -> Vec<(&str, i32, i64)> {
        ms.iter()
            .map(|m| (m.topic.as_str(), m.partition, m.offset))
            .collect()
    }

    #[test]
    fn a_batch_mixing_topics_is_handled_one_topic_at_a_time_in_partition_order() {
        let decoded = vec![
            incoming("registry", 0, 7),
            incoming("crisis", 1, 3),
            incoming("registry", 1, 2),
            incoming("registry", 0, 8),
            incoming("crisis", 1, 4),
        ];
        let undecodable = vec![raw("crisis", 2, 9), raw("status", 0, 1)];

        let parts = by_topic(decoded, undecodable);

        assert_eq!(parts.len(), 3, "one part per topic");
        assert_eq!(
            positions(&parts[0].decoded),
            [("registry", 0, 7), ("registry", 1, 2), ("registry", 0, 8)]
        );
        assert_eq!(
            positions(&parts[1].decoded),
            [("crisis", 1, 3), ("crisis", 1, 4)]
        );
        assert_eq!(parts[1].undecodable[0].0.offset, 9);
        assert!(parts[0].undecodable.is_empty());
        assert!(parts[2].decoded.is_empty());
        assert_eq!(parts[2].undecodable[0].0.topic, "status");
    }

    #[test]
    fn a_batch_of_one_topic_is_one_part() {
        let parts = by_topic(vec![incoming("a", 0, 1), incoming("a", 1, 1)], vec![]);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].decoded.len(), 2);
    }
}
