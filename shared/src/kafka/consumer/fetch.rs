//! Receiving and decoding, in a background task beside the handler: a
//! batch is gathered (first message, then whatever arrives within the
//! linger time), run through the decoding ladder (split across blocking
//! threads when large) and handed to the loop, at most one batch ahead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::GroupConsumer;
use super::offsets::highest_offsets;
use super::Incoming;
use crate::deadletter::Reason;
use crate::envelope::{decode, DecodeLimits, Rejection};
use crate::kafka::health::HealthContext;
use crate::schema::SchemaRegistry;

/// A received message before decoding.
pub(super) struct Raw {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) traceparent: Option<String>,
    pub(super) payload: Arc<[u8]>,
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
pub(super) struct Prepared {
    /// The highest offset of the batch per topic and partition, stored once
    /// the batch is durable.
    pub(super) positions: BTreeMap<(String, i32), i64>,
    /// The messages that passed the decoding ladder, in batch order.
    pub(super) decoded: Vec<Incoming>,
    /// The messages that did not, with the reason, in batch order.
    pub(super) undecodable: Vec<(Raw, Rejection)>,
}

/// What the background fetcher needs, owned.
pub(super) struct Fetcher {
    pub(super) consumer: Arc<GroupConsumer>,
    pub(super) batch_max: usize,
    pub(super) batch_linger: Duration,
    pub(super) limits: DecodeLimits,
    pub(super) accepted: Arc<Accepted>,
}

/// What the loop accepts: the handler's event types, each only on the
/// topic that carries it (`Topics::carries`). The type alone is the
/// sender's claim; a crisis event written to the tasks or status topic,
/// which field apps and providers may write, is not the control service's.
pub(super) struct Accepted {
    pub(super) types: Vec<String>,
    pub(super) topics: crate::topics::Topics,
}

/// Receives and decodes batches into `ready` until `stop` is cancelled or
/// the loop stops listening.
pub(super) async fn fetch(f: Fetcher, ready: mpsc::Sender<Prepared>, stop: CancellationToken) {
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
pub(super) const DECODE_INLINE_MAX: usize = 32;
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

/// A decoded message as received, for its dead letter.
pub(super) fn raw_of(inc: &Incoming) -> Raw {
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
