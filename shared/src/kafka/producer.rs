//! THE producer: every event leaves through here, with its key, the
//! CloudEvents content-type header and the W3C `traceparent` header. When
//! spans are exported each send has a `send {topic}` PRODUCER span (see
//! `spans.rs`), child of the event's stored context, and the header carries
//! that span's context, so the consumer's span is a child of the send.
//!
//! Idempotence is always on (`enable.idempotence=true`, `acks=all`), so a
//! broker-side retry never writes a message twice. Sends await the broker's
//! acknowledgement; callers that must not lose a message store offsets or
//! mark outbox rows only after that.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use tracing::Instrument;

use crate::config::Settings;
use crate::envelope::Envelope;
use crate::Result;

/// Content type of a structured-mode CloudEvent.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// Where an acknowledged message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Largest record the producer sends (librdkafka's `message.max.bytes`; the
/// broker script allows the same). Whatever a service writes must fit, dead
/// letters included.
pub const MAX_RECORD_BYTES: usize = 2_000_000;

/// A cheap-to-clone idempotent producer.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
}

impl EventProducer {
    /// Creates the producer.
    pub fn new(settings: &Settings) -> Result<Self> {
        let inner: FutureProducer = super::client_config(settings)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
            .set("message.timeout.ms", "120000")
            .create()?;
        Ok(EventProducer { inner })
    }

    /// Publishes an event and waits for the broker's acknowledgement.
    pub async fn send<T: Serialize>(
        &self,
        topic: &str,
        key: &str,
        event: &Envelope<T>,
    ) -> Result<Delivered> {
        self.send_raw(
            topic,
            Some(key.as_bytes()),
            &event.to_bytes(),
            event.traceparent.as_deref(),
        )
        .await
    }

    /// Publishes bytes as they are (used for dead letters and replays);
    /// `traceparent` is the message's stored context, parent of the send.
    pub async fn send_raw(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        traceparent: Option<&str>,
    ) -> Result<Delivered> {
        let span = super::spans::send(topic, 1, traceparent);
        let header = super::spans::header(&span, traceparent);
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .headers(headers(header.as_deref()));
        if let Some(k) = key {
            record = record.key(k);
        }
        let d = self
            .inner
            .send(record, Duration::from_secs(60))
            .instrument(span.clone())
            .await
            .map_err(|(e, _)| e)?;
        span.record(
            "messaging.destination.partition.id",
            d.partition.to_string(),
        );
        produced_counter(topic).inc();
        Ok(Delivered {
            partition: d.partition,
            offset: d.offset,
        })
    }

    /// Waits until everything queued has been acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.inner.flush(timeout)?;
        Ok(())
    }

    /// The underlying rdkafka producer, for bulk tools that pipeline sends.
    pub fn raw(&self) -> &FutureProducer {
        &self.inner
    }
}

impl EventProducer {
    /// Publishes many messages with up to `in_flight` unacknowledged at once,
    /// calling `on_ack` after each acknowledgement. Bulk tools (registry
    /// import, generators, benchmarks) use this; it fails on the first
    /// message the broker refuses for good.
    pub async fn send_many<I>(
        &self,
        topic: &str,
        messages: I,
        in_flight: usize,
        mut on_ack: impl FnMut(),
    ) -> Result<u64>
    where
        I: IntoIterator<Item = (String, Vec<u8>)>,
    {
        use futures::stream::{FuturesUnordered, StreamExt};
        let mut pending = FuturesUnordered::new();
        let mut sent = 0u64;
        for (key, payload) in messages {
            while pending.len() >= in_flight {
                if let Some(r) = pending.next().await {
                    ack(r)?;
                    on_ack();
                }
            }
            let producer = self.clone();
            let topic = topic.to_owned();
            pending.push(async move {
                producer
                    .send_raw(&topic, Some(key.as_bytes()), &payload, None)
                    .await
            });
            sent += 1;
        }
        while let Some(r) = pending.next().await {
            ack(r)?;
            on_ack();
        }
        Ok(sent)
    }
}

/// The headers of every message: content type and, if known, trace context.
fn headers(traceparent: Option<&str>) -> OwnedHeaders {
    let headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some(CLOUDEVENTS_JSON),
    });
    match traceparent {
        Some(tp) => headers.insert(Header {
            key: "traceparent",
            value: Some(tp),
        }),
        None => headers,
    }
}

fn ack(r: Result<Delivered>) -> Result<()> {
    r.map(|_| ())
}

/// An enqueued message's pending acknowledgement (counted as produced once
/// acknowledged).
pub struct Ack(
    rdkafka::producer::DeliveryFuture,
    prometheus_client::metrics::counter::Counter,
);

fn produced_counter(topic: &str) -> prometheus_client::metrics::counter::Counter {
    crate::metrics::Metrics::global()
        .produced
        .get_or_create(&crate::metrics::ProducedLabels {
            topic: topic.to_owned(),
        })
        .clone()
}

impl Ack {
    /// Waits for the broker's acknowledgement.
    pub async fn await_ack(self) -> Result<Delivered> {
        match self.0.await {
            Ok(Ok(d)) => {
                self.1.inc();
                Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                })
            }
            Ok(Err((e, _))) => Err(e.into()),
            Err(_) => Err(crate::Error::Other(
                "producer dropped before acknowledging".into(),
            )),
        }
    }
}

impl std::future::IntoFuture for Ack {
    type Output = Result<Delivered>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Delivered>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.await_ack())
    }
}

impl EventProducer {
    /// Puts a message on the producer's queue now (preserving call order per
    /// partition) and returns its pending acknowledgement. Waits while the
    /// local queue is full.
    pub async fn enqueue(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<Ack> {
        self.enqueue_traced(topic, key, payload, None).await
    }

    /// [`EventProducer::enqueue`] with a `traceparent` header (outbox
    /// relays: the context of their `send` span, or the stored one).
    pub async fn enqueue_traced(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        traceparent: Option<&str>,
    ) -> Result<Ack> {
        loop {
            let record = FutureRecord::<[u8], [u8]>::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers(traceparent));
            match self.inner.send_result(record) {
                Ok(f) => return Ok(Ack(f, produced_counter(topic))),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
}
