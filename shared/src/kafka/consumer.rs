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
//! Failures: a retryable handler error (database down, deadlock) retries the
//! same batch with jittered backoff, forever, without storing offsets; a
//! permanent one re-runs the batch message by message to isolate the culprit,
//! which alone is dead-lettered with `handler_failed`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use rand::Rng;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Settings;
use crate::deadletter::{DeadLetter, Reason};
use crate::envelope::{decode, Envelope, Rejection};
use crate::events::deadletter::DEADLETTER_RECORDED;
use crate::kafka::producer::EventProducer;
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
    /// W3C trace context from the `traceparent` header.
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
    /// yields one dead letter, not one per consumer.
    pub foreign_topics: Vec<String>,
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

/// Runs the loop until `shutdown` is cancelled, then commits stored offsets.
pub async fn run<H: Handler>(
    settings: &Settings,
    config: LoopConfig,
    handler: &H,
    producer: &EventProducer,
    shutdown: CancellationToken,
) -> Result<()> {
    let consumer: StreamConsumer = super::client_config(settings)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "300000")
        .create()?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    info!(service = %config.service, group = %config.group_id, topics = ?config.topics, "Consuming.");

    let deadletters = DeadLetterSink {
        producer,
        topic: settings.topics.deadletter.clone(),
        service: config.service.clone(),
        max_bytes: settings.limits.max_bytes,
    };
    loop {
        let Some(batch) = next_batch(&consumer, settings, &shutdown).await else {
            break;
        };
        let mut rejects: Vec<(Raw, Option<&Envelope<Value>>, Rejection)> = Vec::new();
        let now = Utc::now();
        let mut decoded: Vec<Incoming> = Vec::with_capacity(batch.len());
        let mut undecodable: Vec<(Raw, Rejection)> = Vec::new();
        for raw in batch.iter() {
            match decode(
                &raw.payload,
                handler.event_types(),
                SchemaRegistry::global(),
                &settings.limits,
                now,
            ) {
                Ok(envelope) => decoded.push(Incoming {
                    topic: raw.topic.clone(),
                    partition: raw.partition,
                    offset: raw.offset,
                    key: raw.key.clone(),
                    traceparent: raw.traceparent.clone(),
                    envelope,
                    raw: raw.payload.clone(),
                }),
                Err(rej) => undecodable.push((raw_clone(raw), rej)),
            }
        }
        let Some(verdicts) = handle_with_retries(handler, &decoded, &shutdown).await else {
            // Shutting down mid-retry: store nothing, the batch comes again.
            break;
        };
        for (inc, verdict) in decoded.iter().zip(verdicts) {
            if let Verdict::Reject(rej) = verdict {
                rejects.push((raw_of(inc), Some(&inc.envelope), rej));
            }
        }
        for (raw, rej) in undecodable {
            rejects.push((raw, None, rej));
        }
        rejects.retain(|(raw, _, rej)| {
            let foreign = config.foreign_topics.contains(&raw.topic);
            if foreign {
                debug!(topic = %raw.topic, offset = raw.offset, reason = %rej.reason, "Skipped a message its owner dead-letters.");
            }
            !foreign
        });
        for (raw, envelope, rej) in &rejects {
            if !deadletters.publish(raw, *envelope, rej, &shutdown).await {
                return commit_and_stop(&consumer);
            }
        }
        store_offsets(&consumer, &batch)?;
    }
    commit_and_stop(&consumer)
}

fn raw_clone(r: &Raw) -> Raw {
    Raw {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        key: r.key.clone(),
        traceparent: r.traceparent.clone(),
        payload: r.payload.clone(),
    }
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
    consumer: &StreamConsumer,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Option<Vec<Raw>> {
    let mut batch = Vec::new();
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
    let deadline = Instant::now() + settings.batch_linger;
    while batch.len() < settings.batch_max {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            m = consumer.recv() => match m {
                Ok(m) => batch.push(Raw::from_message(&m)),
                Err(e) => { warn!(error = %e, "Kafka receive failed."); break; }
            }
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

/// Calls `f` until it succeeds or fails permanently, sleeping with jittered
/// exponential backoff (100 ms doubling to 10 s) between transient failures.
/// `None` means shutdown was requested while waiting.
pub async fn retry_transient<T, F, Fut>(mut f: F, shutdown: &CancellationToken) -> Option<Result<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Err(e) if e.is_retryable() => {
                let jitter = rand::rng().random_range(0.5..1.5);
                let wait = delay.mul_f64(jitter);
                warn!(error = %e, wait_ms = wait.as_millis() as u64, "Transient failure; will retry.");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            other => return Some(other),
        }
    }
}

/// Stores, per partition, the highest offset of the batch. librdkafka's
/// `rd_kafka_offset_store` records `offset + 1`, the next one to read.
fn store_offsets(consumer: &StreamConsumer, batch: &[Raw]) -> Result<()> {
    let mut highest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for r in batch {
        let e = highest
            .entry((r.topic.as_str(), r.partition))
            .or_insert(r.offset);
        *e = (*e).max(r.offset);
    }
    for ((topic, partition), offset) in highest {
        if let Err(e) = consumer.store_offset(topic, partition, offset) {
            // After a rebalance the partition may belong to another member:
            // it will redeliver, and handlers are idempotent, so this is safe.
            warn!(topic, partition, offset, error = %e, "Could not store offset.");
        }
    }
    Ok(())
}

fn commit_and_stop(consumer: &StreamConsumer) -> Result<()> {
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is the usual cause.
        info!(error = %e, "Final offset commit skipped.");
    }
    info!("Consumer stopped.");
    Ok(())
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
        let original_id = envelope
            .map(|e| e.id.clone())
            .or_else(|| peek(&raw.payload, "id"));
        let original_type = envelope
            .map(|e| e.event_type.clone())
            .or_else(|| peek(&raw.payload, "type"));
        let kept = &raw.payload[..raw.payload.len().min(self.max_bytes / 2)];
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
                .and_then(|k| String::from_utf8(k.clone()).ok()),
            original_id,
            original_type,
            original_base64: base64::engine::general_purpose::STANDARD.encode(kept),
            original_size: raw.payload.len() as u64,
            original_truncated: kept.len() < raw.payload.len(),
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

/// Reads one top-level string attribute from a possibly invalid message.
fn peek(payload: &[u8], field: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get(field)?
        .as_str()
        .map(|s| s.chars().take(200).collect())
}
